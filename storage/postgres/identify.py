"""Discord's IDENTIFY pacing shared by every process on one PostgreSQL (`IdentifyGate`).

Discord allows `max_concurrency` IDENTIFYs per 5 s, one per rate-limit bucket
(shard_id % max_concurrency), for the whole bot: a process that starts its shards
while another does would get its sessions refused. One row per bucket holds the
earliest time of the bucket's next IDENTIFY; a single upsert reserves the next free
slot atomically (the row lock orders racing processes), then the caller sleeps until
its slot. Times come from the injected clock, which for PostgreSQL follows the
database's clock, so hosts with skewed clocks still agree on the slots.
"""

from __future__ import annotations

from bot.core.clock import Clock
from storage.postgres.db import PgDatabase

# The slot reserved is the later of "now" and the bucket's next free time; the row then
# moves one spacing past it. RETURNING gives back the reserved slot.
_RESERVE = """
INSERT INTO gateway_identify (bucket, next_at) VALUES ($1, $2::float8 + $3::float8)
ON CONFLICT (bucket) DO UPDATE
    SET next_at = GREATEST(gateway_identify.next_at, $2::float8) + $3::float8
RETURNING next_at - $3::float8
"""


class PgIdentifyGate:
    def __init__(self, db: PgDatabase, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def reserve(self, bucket: int, spacing: float) -> float:
        """Take the bucket's next slot (a `clock.now()` time) and return it."""
        slot = await self._db.fetchval(_RESERVE, bucket, self._clock.now(), spacing)
        return float(slot)

    async def wait_turn(self, bucket: int, spacing: float) -> None:
        slot = await self.reserve(bucket, spacing)
        await self._clock.sleep(slot - self._clock.now())

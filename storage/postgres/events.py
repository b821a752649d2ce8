"""Platform events already handled, shared by every process on one PostgreSQL database
(implements `bot.core.ports.SeenEvents`).

One INSERT decides: the primary key (platform, event_id) lets exactly one of any number
of concurrent inserts make the row, and RETURNING tells that one it won. Times are the
injected clock's (seen_at only ages rows out; it never orders anything).
"""

from __future__ import annotations

from bot.core.clock import Clock
from storage.postgres.db import PgDatabase
from storage.seen_rows import PruneTimer

_INSERT = (
    "INSERT INTO seen_events (platform, event_id, seen_at) VALUES ($1, $2, $3) "
    "ON CONFLICT (platform, event_id) DO NOTHING RETURNING 1"
)
_PRUNE = "DELETE FROM seen_events WHERE seen_at < $1"


class PostgresSeenEvents:
    def __init__(self, db: PgDatabase, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._prune = PruneTimer()

    async def first_time(self, platform: str, event_id: str) -> bool:
        now = self._clock.now()
        cutoff = self._prune.due(now)
        if cutoff is not None:
            # Every process prunes on its own timer; concurrent DELETEs of the same old
            # rows just find fewer of them.
            await self._db.execute(_PRUNE, cutoff)
        return await self._db.fetchval(_INSERT, platform, event_id, now) is not None

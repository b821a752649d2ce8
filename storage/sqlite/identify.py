"""IDENTIFY pacing for one process (`IdentifyGate`): with SQLite only one bot process
runs on a database, so the slots are kept in memory with the same rule as the
PostgreSQL gate (storage/postgres/identify.py): each bucket's next IDENTIFY is at
least `spacing` seconds after the previous one."""

from __future__ import annotations

from bot.core.clock import Clock


class LocalIdentifyGate:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._next_at: dict[int, float] = {}  # bucket -> earliest next IDENTIFY (now())

    def reserve(self, bucket: int, spacing: float) -> float:
        # No await between reading and writing: racing shards get distinct slots.
        slot = max(self._next_at.get(bucket, float("-inf")), self._clock.now())
        self._next_at[bucket] = slot + spacing
        return slot

    async def wait_turn(self, bucket: int, spacing: float) -> None:
        slot = self.reserve(bucket, spacing)
        await self._clock.sleep(slot - self._clock.now())

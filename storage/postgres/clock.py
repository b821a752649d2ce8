"""The database server's clock, for every process sharing one PostgreSQL database.

Leases, deadlines and quota periods are compared between processes on several hosts,
so they are all stamped with one clock: the server's. Reading it per call would cost a
round trip, so this clock keeps this host's time plus an offset measured against
`clock_timestamp()` (the sample with the shortest round trip, half of it taken off),
measured when the store opens and again with every heartbeat of the work share.
"""

from __future__ import annotations

import asyncio
import logging
import time

from storage.postgres.db import PgDatabase

log = logging.getLogger(__name__)

# Beyond this the hosts' clocks disagree enough to say so (the bot still runs on the
# server's clock, so nothing breaks; a host far off is worth fixing all the same).
SKEW_WARNING_SECONDS = 2.0
_SAMPLES = 3


class DatabaseClock:
    def __init__(self) -> None:
        self.offset = 0.0  # server minus this host, seconds
        self._warned = False

    def now(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def sync(self, db: PgDatabase) -> float:
        """Measure the offset again; returns it."""
        best: tuple[float, float] | None = None  # (round trip, offset)
        for _ in range(_SAMPLES):
            before = time.time()
            server = float(await db.fetchval("SELECT extract(epoch FROM clock_timestamp())"))
            after = time.time()
            sample = (after - before, server - (before + after) / 2)
            if best is None or sample[0] < best[0]:
                best = sample
        assert best is not None
        self.offset = best[1]
        if abs(self.offset) > SKEW_WARNING_SECONDS and not self._warned:
            self._warned = True
            log.warning(
                "this host's clock is %.1f s %s the database server's; the bot uses the "
                "server's, but keep hosts on NTP",
                abs(self.offset),
                "behind" if self.offset > 0 else "ahead of",
            )
        return self.offset

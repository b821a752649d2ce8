"""Platform events already handled, in SQLite (implements `bot.core.ports.SeenEvents`).

SQLite serves one bot process, but the table outlives it: an event Slack delivers
again after a restart (the in-memory filter is gone) is still handled once.
"""

from __future__ import annotations

import sqlite3

from bot.core.clock import Clock
from storage.seen_rows import PruneTimer
from storage.sqlite.db import Database

_INSERT = (
    "INSERT INTO seen_events (platform, event_id, seen_at) VALUES (?, ?, ?) "
    "ON CONFLICT (platform, event_id) DO NOTHING"
)
_PRUNE = "DELETE FROM seen_events WHERE seen_at < ?"


class SqliteSeenEvents:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._prune = PruneTimer()

    async def first_time(self, platform: str, event_id: str) -> bool:
        now = self._clock.now()
        cutoff = self._prune.due(now)

        def unit(conn: sqlite3.Connection) -> bool:
            if cutoff is not None:
                conn.execute(_PRUNE, (cutoff,))
            # rowcount: 1 when this insert made the row, 0 when it was already there.
            return conn.execute(_INSERT, (platform, event_id, now)).rowcount == 1

        return await self._db.atomic(unit)

"""Upkeep on PostgreSQL: the health probes, retention, and the one-process guard
(the twins of storage/sqlite/health.py, storage/sqlite/prune.py and storage/sqlite/lock.py)."""

from __future__ import annotations

import logging
import os
import re

import asyncpg

from bot.core.clock import Clock
from storage.errors import DatabaseInUse
from storage.job_rows import FINAL_STATES
from storage.postgres.db import PgDatabase, unavailable
from storage.retention import prune_in_batches

log = logging.getLogger(__name__)

_DELETE = (
    "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs "
    "WHERE state = ANY($1::text[]) AND created_at < $2 "
    "AND COALESCE(finished_at, updated_at) < $2 LIMIT $3)"
)
# pg_try_advisory_lock(class, key): shared by the bot processes, exclusive for
# `wanbot db copy`; held by a session for its life.
_PROCESS_LOCK = (0x7770, 1)  # "wp"
_APP_NAME = re.compile(r"^wanbot pid (\d+)$")


async def ping(db: PgDatabase) -> None:
    """Raises when the database cannot answer a query."""
    await db.fetchval("SELECT 1")


async def jobs_by_state(db: PgDatabase) -> dict[str, int]:
    rows = await db.fetch("SELECT state, COUNT(*) FROM jobs GROUP BY state")
    return {str(row[0]): int(row[1]) for row in rows}


# Beyond this, deadlines stamped by the bot and times read by the database disagree
# enough to notice (the leases of the multi-process work will use the database's clock).
SKEW_WARNING_SECONDS = 2.0


async def warn_on_clock_skew(db: PgDatabase, clock: Clock) -> float:
    """Log a warning when this host's clock and the database server's disagree; returns
    the difference (database minus host, seconds, the query's round trip included)."""
    before = clock.now()
    server = float(await db.fetchval("SELECT extract(epoch FROM clock_timestamp())"))
    after = clock.now()
    skew = server - (before + after) / 2
    if abs(skew) > SKEW_WARNING_SECONDS + (after - before):
        log.warning(
            "this host's clock is %.1f s %s the database server's: keep both on NTP "
            "(job deadlines are stamped with this host's clock)",
            abs(skew),
            "behind" if skew > 0 else "ahead of",
        )
    return skew


async def prune_jobs(db: PgDatabase, *, now: float, retention_days: int) -> int:
    """Delete the finished jobs older than `retention_days` (0 keeps everything), in
    short batches; the ledger stays (its rows do not reference jobs since 0004)."""

    async def delete_batch(cutoff: float, size: int) -> int:
        status = await db.execute(_DELETE, list(FINAL_STATES), cutoff, size)
        return int(status.split()[-1])  # "DELETE n"

    return await prune_in_batches(delete_batch, now=now, retention_days=retention_days)


class PgProcessLock:
    """A session advisory lock on its own connection, held while the bot runs and
    released by the server when that session ends, however the process ends.

    Bot processes take it shared (any number of them work one database together,
    sharing the jobs through leases); `wanbot db copy` takes it exclusively, so it
    never runs beside a bot, nor a bot beside it."""

    def __init__(self, url: str, display: str, *, shared: bool = False) -> None:
        self._url = url
        self._display = display
        self._shared = shared
        self._conn: asyncpg.Connection | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    async def acquire(self) -> None:
        if self._conn is not None:
            return
        async with unavailable(self._display):
            conn = await asyncpg.connect(
                self._url, server_settings={"application_name": f"wanbot pid {os.getpid()}"}
            )
        try:
            take = "pg_try_advisory_lock_shared" if self._shared else "pg_try_advisory_lock"
            got = await conn.fetchval(f"SELECT {take}($1, $2)", *_PROCESS_LOCK)
            if not got:
                raise DatabaseInUse(self._display, await _holder(conn))
        except BaseException:
            await conn.close()
            raise
        self._conn = conn

    async def release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()  # ends the session, and with it the lock


async def bot_holding(conn: asyncpg.Connection) -> int | None:
    """None when no bot holds the database; else the holder's PID (0 if unknown),
    from its session's application_name (the holder may run on another host)."""
    rows = await conn.fetch(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1 AND l.objid = $2 "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        *_PROCESS_LOCK,
    )
    if not rows:
        return None
    match = _APP_NAME.match(rows[0][0] or "")
    return int(match.group(1)) if match else 0


async def _holder(conn: asyncpg.Connection) -> int | None:
    return await bot_holding(conn) or None

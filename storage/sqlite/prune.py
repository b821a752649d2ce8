"""Retention: finished jobs older than JOB_RETENTION_DAYS are deleted; the ledger stays.

The ledger (and the per-day usage totals derived from it) is the money record and
is kept for ever; since migration 0004 its rows do not depend on their job row.
The batching is storage/retention.py's, shared with PostgreSQL.
"""

from __future__ import annotations

import sqlite3

from storage.retention import prune_in_batches
from storage.sqlite.db import Database

_FINAL = "('done', 'failed', 'cancelled')"
# created_at < cutoff first: the (state, created_at) index narrows the scan; a job
# that finished before the cutoff was also created before it.
_DELETE = (
    "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs "
    f"WHERE state IN {_FINAL} AND created_at < :cutoff "
    "AND COALESCE(finished_at, updated_at) < :cutoff LIMIT :batch)"
)


async def prune_jobs(db: Database, *, now: float, retention_days: int) -> int:
    """Delete the finished jobs older than `retention_days`; returns how many.
    `retention_days` 0 keeps everything."""

    async def delete_batch(cutoff: float, size: int) -> int:
        def batch(conn: sqlite3.Connection) -> int:
            return conn.execute(_DELETE, {"cutoff": cutoff, "batch": size}).rowcount

        return await db.atomic(batch)

    return await prune_in_batches(delete_batch, now=now, retention_days=retention_days)


def vacuum_sqlite(path: str) -> tuple[int, int]:
    """Rewrite the database file compactly (SQLite's VACUUM); (bytes before, after).

    Blocking, and it needs the database to itself and free disk space about its size:
    `wanbot db prune --vacuum` runs it with the bot stopped, never the running bot."""
    import contextlib
    import os

    before = os.path.getsize(path)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return before, os.path.getsize(path)

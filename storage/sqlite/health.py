"""What `/healthz` and `/metrics` read from SQLite."""

from __future__ import annotations

from storage.sqlite.db import Database


async def ping(db: Database) -> None:
    """Raises when the database cannot answer a query (closed, locked, gone)."""
    await db.fetchone("SELECT 1")


async def jobs_by_state(db: Database) -> dict[str, int]:
    rows = await db.fetchall("SELECT state, COUNT(*) FROM jobs GROUP BY state")
    return {str(row[0]): int(row[1]) for row in rows}

"""Database.atomic (grouped units of work) and the migration splitter."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from storage.job_rows import ACTIVE_STATES_SQL
from storage.sqlite.db import Database, _split_sql, load_migrations
from storage.sqlite.prune import _DELETE as PRUNE


async def test_concurrent_units_share_commits(db: Database) -> None:
    await db.conn.execute("CREATE TABLE t (x INTEGER)")
    statements: list[str] = []
    await db.conn.set_trace_callback(statements.append)

    def insert(value: int) -> Callable[[sqlite3.Connection], int]:
        def work(conn: sqlite3.Connection) -> int:
            conn.execute("INSERT INTO t VALUES (?)", (value,))
            return value * 2

        return work

    results = await asyncio.gather(*(db.atomic(insert(i)) for i in range(50)))
    await db.conn.set_trace_callback(None)
    assert results == [i * 2 for i in range(50)]
    row = await db.fetchone("SELECT COUNT(*), SUM(x) FROM t")
    assert row is not None and tuple(row) == (50, sum(range(50)))
    commits = statements.count("COMMIT")
    assert 1 <= commits < 50  # grouped


async def test_a_failing_unit_undoes_only_its_own_changes(db: Database) -> None:
    await db.conn.execute("CREATE TABLE t (x INTEGER)")

    class Refused(Exception):
        pass

    def good(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES (1)")

    def bad(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES (2)")
        raise Refused("no")

    outcomes = await asyncio.gather(
        db.atomic(good), db.atomic(bad), db.atomic(good), return_exceptions=True
    )
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], Refused)
    rows = await db.fetchall("SELECT x FROM t")
    assert [r[0] for r in rows] == [1, 1]
    assert not db.conn.in_transaction


async def test_units_accepted_before_close_are_committed(tmp_path: Path) -> None:
    path = tmp_path / "close.sqlite3"
    database = Database(path)
    await database.open()
    await database.conn.execute("CREATE TABLE t (x INTEGER)")

    def work(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES (1)")

    pending = [asyncio.ensure_future(database.atomic(work)) for _ in range(5)]
    await asyncio.sleep(0)  # the units are queued, the group not yet done
    await database.close()
    await asyncio.gather(*pending)
    async with Database(path) as again:
        row = await again.fetchone("SELECT COUNT(*) FROM t")
        assert row is not None and row[0] == 5


def test_split_keeps_trigger_bodies_whole() -> None:
    sql = """
-- a comment; with a semicolon
CREATE TABLE a (x INTEGER); -- trailing
CREATE TRIGGER t AFTER INSERT ON a
BEGIN
    INSERT INTO a VALUES (1);
    INSERT INTO a VALUES (2);
END;
CREATE INDEX i ON a (x);
"""
    parts = _split_sql(sql)
    assert len(parts) == 3
    assert parts[1].startswith("CREATE TRIGGER") and parts[1].endswith("END;")


async def test_schema_has_the_quota_tables_and_triggers(db: Database) -> None:
    assert await db.user_version() == len(load_migrations()) >= 2
    rows = await db.fetchall("SELECT type, name FROM sqlite_master")
    names = {(r[0], r[1]) for r in rows}
    for table in (
        "jobs",
        "ledger",
        "usage_daily",
        "guild_daily",
        "quota_limits",
        "grants",
        "blocks",
        "server_budgets",
        "guild_config",
    ):
        assert ("table", table) in names
    for trigger in ("jobs_reserve", "jobs_settle", "ledger_totals", "ledger_no_update"):
        assert ("trigger", trigger) in names
    for index in ("jobs_state", "jobs_task", "jobs_user_created"):
        assert ("index", index) in names


async def test_the_job_queries_use_their_indexes(db: Database) -> None:
    # A user's history by user id and time (migration 0008: no platform in the
    # index); the jobs active at start-up, the daily prune and the /metrics count.
    async def plan(sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> str:
        rows = await db.fetchall("EXPLAIN QUERY PLAN " + sql, params)
        return " | ".join(str(row[3]) for row in rows)

    history = (
        "SELECT id FROM jobs WHERE platform = ? AND user_id = ? "
        "ORDER BY created_at DESC, id DESC LIMIT 10"
    )
    assert "INDEX jobs_user_created (user_id=?)" in await plan(history, ("discord", "u1"))
    active = f"SELECT id FROM jobs WHERE state IN {ACTIVE_STATES_SQL} ORDER BY created_at, id"
    assert "INDEX jobs_state (state=?)" in await plan(active)
    assert "INDEX jobs_state (state=? AND created_at<?)" in await plan(
        PRUNE, {"cutoff": 1.0, "batch": 5}
    )
    assert "COVERING INDEX jobs_state" in await plan(
        "SELECT state, COUNT(*) FROM jobs GROUP BY state"
    )

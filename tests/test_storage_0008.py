"""Migration 0008 on an install with data, on both backends: the callback tokens of
final jobs are cleared (a callback is accepted only for an active job), everything
else is kept, and the jobs settle and read as before."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bot.core.clock import FakeClock
from bot.core.models import JobState
from storage.postgres.db import _SCHEMA_TABLE_SQL, SCHEMA_TABLE, PgDatabase, load_pg_migrations
from storage.sqlite.db import Database, _split_sql, load_migrations
from tests.pg import PgCluster, fresh_name
from tests.store_backends import Backend
from tests.test_job_store import ledger, store_for

BEFORE = 7  # the schema this migration starts from

# Jobs as 0007's store wrote them: tokens on an active job and on three final ones.
_SEED = [
    "INSERT INTO jobs (id, platform, user_id, scope_id, requester, provider, request, state, "
    "reserved, created_at, updated_at, admitted_at, delivery, callback_token, task_id) VALUES "
    "('r1', 'discord', 'u1', 'g1', '{\"role_ids\":[\"r\"],\"display_name\":\"Ann\"}', "
    "'mock', '{\"prompt\":\"a\",\"count\":3}', 'queued', 3, {t}, {t}, {t}, "
    "'{\"status_message_id\":\"5\"}', 'tok-r1', NULL), "
    "('d1', 'discord', 'u1', 'g1', '{}', 'mock', '{\"prompt\":\"b\",\"count\":2}', 'queued', "
    "2, {t}, {t}, {t}, '{}', 'tok-d1', NULL), "
    "('f1', 'discord', 'u2', 'g1', '{}', 'mock', '{\"prompt\":\"c\"}', 'queued', "
    "1, {t}, {t}, {t}, '{}', 'tok-f1', NULL), "
    "('c1', 'console', 'local', 'direct', '{}', 'mock', '{\"prompt\":\"d\"}', 'queued', "
    "1, {t}, {t}, {t}, '{}', 'tok-c1', NULL)",
    "UPDATE jobs SET state = 'running', task_id = 'task-r1' WHERE id = 'r1'",
    "UPDATE jobs SET state = 'done', delivered = reserved WHERE id = 'd1'",
    "UPDATE jobs SET state = 'failed' WHERE id = 'f1'",
    "UPDATE jobs SET state = 'cancelled' WHERE id = 'c1'",
]
_COLUMNS = "id, state, requester, request, delivery, task_id, reserved, delivered, created_at"


def _sqlite_at(path: Path, now: float) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for _, _, sql in load_migrations()[:BEFORE]:
            for statement in _split_sql(sql):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version={BEFORE}")
        for statement in _SEED:
            conn.execute(statement.replace("{t}", repr(now)))
    finally:
        conn.close()


async def _postgres_at(url: str, now: float) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(_SCHEMA_TABLE_SQL)
        for version, name, sql in load_pg_migrations()[:BEFORE]:
            await conn.execute(sql)
            await conn.execute(
                f"INSERT INTO {SCHEMA_TABLE} (version, name) VALUES ($1, $2)", version, name
            )
        for statement in _SEED:
            await conn.execute(statement.replace("{t}", repr(now)))
    finally:
        await conn.close()


Rows = list[tuple[object, ...]]
# What the migration must keep (jobs, ledger, totals), then the tokens.
_QUERIES = (
    f"SELECT {_COLUMNS} FROM jobs ORDER BY id",
    "SELECT job_id, kind, images, platform FROM ledger ORDER BY job_id, kind",
    "SELECT platform, guild_id, user_id, day, used, charged FROM usage_daily "
    "ORDER BY platform, guild_id, user_id, day",
    "SELECT id, callback_token FROM jobs ORDER BY id",
)


async def _read_unmigrated(backend: Backend) -> tuple[Rows, ...]:
    """_QUERIES' answers from a database not opened by the store (so not migrated)."""
    if isinstance(backend.db, PgDatabase):
        conn = await asyncpg.connect(backend.location)
        try:
            answers = [await conn.fetch(sql) for sql in _QUERIES]
        finally:
            await conn.close()
        return tuple([tuple(r) for r in rows] for rows in answers)

    def read() -> tuple[Rows, ...]:
        conn = sqlite3.connect(backend.location)
        try:
            return tuple([tuple(r) for r in conn.execute(sql).fetchall()] for sql in _QUERIES)
        finally:
            conn.close()

    return await asyncio.to_thread(read)


@pytest.fixture(params=["sqlite", "postgres"])
async def at_0007(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[tuple[Backend, tuple[Rows, ...]]]:
    """A database at schema 0007 holding jobs, what it held, then opened (migrated)."""
    cluster: PgCluster | None = None
    if request.param == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        name = fresh_name("old")
        location = await cluster.create_database(name, template="template0")
        await _postgres_at(location, clock.now())
        backend = Backend("postgres", location, PgDatabase(location))
    else:
        location = str(tmp_path / "old.sqlite3")
        await asyncio.to_thread(_sqlite_at, Path(location), clock.now())
        backend = Backend("sqlite", location, Database(Path(location)))
    try:
        before = await _read_unmigrated(backend)
        await backend.db.open()  # migrates
        yield backend, before
    finally:
        await backend.db.close()
        if cluster is not None:
            await cluster.drop_database(name)


async def test_migration_0008_clears_only_final_tokens_and_keeps_the_rest(
    at_0007: tuple[Backend, tuple[Rows, ...]], clock: FakeClock
) -> None:
    backend, (jobs, money, totals, tokens) = at_0007
    assert tokens == [("c1", "tok-c1"), ("d1", "tok-d1"), ("f1", "tok-f1"), ("r1", "tok-r1")]
    after = await backend.fetchall("SELECT id, callback_token FROM jobs ORDER BY id")
    assert [tuple(r) for r in after] == [("c1", None), ("d1", None), ("f1", None), ("r1", "tok-r1")]
    # Every other column, the ledger and the totals are as they were.
    for query, rows in zip(_QUERIES, (jobs, money, totals), strict=False):
        assert [tuple(r) for r in await backend.fetchall(query)] == rows, query

    store = store_for(backend, clock)
    running = await store.get("r1")
    assert running is not None and running.callback_token == "tok-r1"
    # An old row reads as it was written: its role ids and name, its count.
    assert (running.requester.role_ids, running.requester.display_name) == (["r"], "Ann")
    assert running.request.count == 3 and running.delivery == {"status_message_id": "5"}
    found = await store.find_by_task("mock", "task-r1")
    assert found is not None and found.id == "r1"
    # The job admitted before the migration settles as before, and loses its token.
    done = await store.finish("r1", JobState.DONE, delivered=2)
    assert done.callback_token is None
    assert await ledger(backend, "r1") == [("reserve", 3), ("charge", 2), ("refund", 1)]
    if isinstance(backend.db, Database):
        assert [tuple(r) for r in await backend.fetchall("PRAGMA quick_check")] == [("ok",)]

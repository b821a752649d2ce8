"""PostgreSQL migrations: numbered as SQLite's, the same schema, safe to race.

The store contract itself runs on both backends in test_job_store.py and
test_quota_admin.py; this file is about the schema and how it is applied.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import asyncpg
import pytest

from storage.postgres.db import (
    SCHEMA_TABLE,
    PgDatabase,
    load_pg_migrations,
    redact_url,
    url_passwords,
)
from storage.sqlite.db import Database, load_migrations
from tests.pg import missing

# A small set of types both schemas are compared in.
_SQLITE_TYPES = {"INTEGER": "integer", "TEXT": "text", "REAL": "real", "BOOLEAN": "bool"}
_PG_TYPES = {
    "integer": "integer",
    "bigint": "integer",
    "smallint": "integer",
    "text": "text",
    "character varying": "text",
    "jsonb": "text",
    "double precision": "real",
    "real": "real",
    "boolean": "bool",
    "timestamp with time zone": "timestamp",
    "timestamp without time zone": "timestamp",
}
Columns = dict[str, list[tuple[str, str, bool]]]  # table: [(column, type, not null)]


async def sqlite_schema(db: Database) -> tuple[Columns, set[str], set[str], set[tuple[str, ...]]]:
    tables = [
        r[0]
        for r in await db.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    columns: Columns = {}
    keys: set[tuple[str, ...]] = set()
    for table in tables:
        info = await db.fetchall(f'PRAGMA table_info("{table}")')
        columns[table] = [
            (r["name"], _SQLITE_TYPES[r["type"].upper()], bool(r["notnull"] or r["pk"]))
            for r in info
        ]
        primary = tuple(r["name"] for r in sorted(info, key=lambda r: r["pk"]) if r["pk"])
        if primary:
            keys.add((table, "pk", *primary))
        for index in await db.fetchall(f'PRAGMA index_list("{table}")'):
            if index["origin"] == "u":
                cols = await db.fetchall(f'PRAGMA index_info("{index["name"]}")')
                keys.add((table, "unique", *(c["name"] for c in cols)))
    indexes = {
        r[0]
        for r in await db.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        )
    }
    triggers = {
        r[0] for r in await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'trigger'")
    }
    return columns, indexes, triggers, keys


async def pg_schema(db: PgDatabase) -> tuple[Columns, set[str], set[str], set[tuple[str, ...]]]:
    columns: Columns = {}
    for r in await db.fetch(
        "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name <> $1 "
        "ORDER BY table_name, ordinal_position",
        SCHEMA_TABLE,
    ):
        columns.setdefault(r["table_name"], []).append(
            (r["column_name"], _PG_TYPES[r["data_type"]], r["is_nullable"] == "NO")
        )
    indexes = {
        r[0]
        for r in await db.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint)"
        )
    }
    triggers = {
        r[0] for r in await db.fetch("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
    }
    keys: set[tuple[str, ...]] = set()
    for r in await db.fetch(
        "SELECT c.conrelid::regclass::text AS t, c.contype::text AS contype, "
        "array_agg(a.attname ORDER BY k.n) AS cols "
        "FROM pg_constraint c, unnest(c.conkey) WITH ORDINALITY AS k(attnum, n), pg_attribute a "
        "WHERE c.contype IN ('p', 'u') AND a.attrelid = c.conrelid AND a.attnum = k.attnum "
        "AND c.connamespace = current_schema()::regnamespace AND c.conrelid::regclass::text <> $1 "
        "GROUP BY c.oid, c.conrelid, c.contype",
        SCHEMA_TABLE,
    ):
        keys.add((r["t"], "pk" if r["contype"] == "p" else "unique", *r["cols"]))
    return columns, indexes, triggers, keys


def test_migrations_are_numbered_and_named_alike() -> None:
    sqlite = [name for _, name, _ in load_migrations()]
    postgres = [name for _, name, _ in load_pg_migrations()]
    assert postgres == sqlite, "every SQLite migration needs its storage/postgres twin"


async def test_the_two_schemas_match_table_by_table_column_by_column(
    db: Database, pg_url: str
) -> None:
    async with PgDatabase(pg_url) as pg:
        columns, indexes, triggers, keys = await sqlite_schema(db)
        pg_columns, pg_indexes, pg_triggers, pg_keys = await pg_schema(pg)
        assert await pg.schema_version() == await db.user_version() == len(load_migrations())
    assert sorted(pg_columns) == sorted(columns)  # the same tables
    for table, cols in columns.items():
        assert pg_columns[table] == cols, table  # names, order, types, NOT NULL
    assert pg_indexes == indexes
    assert pg_keys == keys  # primary keys and UNIQUE constraints
    assert triggers <= pg_triggers  # every money rule has its twin (PostgreSQL adds one)
    assert pg_triggers - triggers == {"ledger_no_truncate"}


async def test_five_concurrent_migrators_apply_each_migration_once(pg_empty_url: str) -> None:
    # Five pools, each its own sessions: the advisory lock is what orders them.
    databases = [PgDatabase(pg_empty_url) for _ in range(5)]
    for db in databases:
        await db.open(migrate=False)
    try:
        applied = await asyncio.gather(*(db.migrate() for db in databases))
        expected = [name for _, name, _ in load_pg_migrations()]
        assert sorted(applied, key=len) == [[]] * 4 + [expected]
        rows = await databases[0].fetch(f"SELECT version, name FROM {SCHEMA_TABLE} ORDER BY 1")
        assert [r["name"] for r in rows] == expected
        assert await databases[0].migrate() == []
    finally:
        for db in databases:
            await db.close()


@pytest.mark.slow  # starts five real `wanbot db migrate` processes
async def test_five_processes_migrate_at_once(pg_empty_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DISCORD_"))}
    env["DATABASE_URL"] = pg_empty_url
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "db",
            "migrate",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(5)
    ]
    outputs = [await proc.communicate() for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 5, outputs
    lines = [out.decode().strip() for out, _ in outputs]
    latest = len(load_pg_migrations())
    assert sum("applied 0001_initial.sql" in line for line in lines) == 1, lines
    assert sum(f"up to date, schema version {latest}" in line for line in lines) == 4, lines
    conn = await asyncpg.connect(pg_empty_url)
    try:
        assert await conn.fetchval(f"SELECT COUNT(*) FROM {SCHEMA_TABLE}") == latest
    finally:
        await conn.close()


def test_urls_are_shown_without_their_password() -> None:
    shown = redact_url("postgresql://bot:s3cr%40t@db.example:5432/wanbot?sslmode=require")
    assert shown == "postgresql://bot:***@db.example:5432/wanbot?sslmode=require"
    assert redact_url("postgresql://bot@/wanbot?host=/run") == "postgresql://bot@/wanbot?host=/run"
    # libpq also takes the password as a parameter; a password may be percent-encoded.
    query = "postgresql:///wanbot?host=/run&password=pa%26ss&user=bot"
    assert redact_url(query) == "postgresql:///wanbot?host=/run&password=***&user=bot"
    assert url_passwords(query) == ["pa&ss"]
    assert url_passwords("postgresql://bot:s3cr%40t@h/db") == ["s3cr%40t", "s3cr@t"]
    with pytest.raises(ValueError):
        PgDatabase("sqlite:///x.db")


def test_without_postgresql_ci_fails_and_a_laptop_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required under CI=true"):
        missing("no pg_ctl")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        missing("no pg_ctl")

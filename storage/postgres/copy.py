"""Moving an SQLite install to PostgreSQL: every table, row for row, then counted.

Both sides are first migrated to the same schema version (the migrations are numbered
alike and a test keeps the schemas equal), so every SQLite table and column has its
PostgreSQL twin. The copy runs in one PostgreSQL transaction with the tables' own
triggers off: the rows already carry their consequences (reserve, charge and refund
rows, the daily totals), so nothing may be derived twice. Nothing is committed unless
every table's count matches, and the ledger's image sums per kind too.

Both databases are held with the one-bot-per-database lock, so no bot writes to
either while they are copied; the target must be empty.

The state of running processes (migration 0009: job leases, worker heartbeats, Discord
IDENTIFY pacing) is not copied: it describes processes that are gone, and SQLite never
writes it. seen_events is copied (a day of rows at most): a Slack retry that arrives
just after the move is still recognised.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from storage.postgres.db import SCHEMA_TABLE, PgDatabase, load_pg_migrations
from storage.postgres.ops import PgProcessLock
from storage.sqlite.backup import read_only_uri
from storage.sqlite.db import Database, load_migrations
from storage.sqlite.lock import ProcessLock

_CHUNK = 5000
_KEYED = {"meta": "key"}  # already has rows on a fresh database: upserted, not COPY'd
_PROCESS_STATE = frozenset({"job_leases", "workers", "gateway_identify"})  # not copied


class CopyError(Exception):
    """The copy was refused or did not verify; nothing was committed."""


@dataclass(frozen=True)
class TableCount:
    table: str
    source: int
    target: int


async def copy_sqlite_to_postgres(source: Path, target_url: str) -> list[TableCount]:
    if not await asyncio.to_thread(source.is_file):
        raise CopyError(f"no SQLite database at {source}")
    source_lock = ProcessLock(source)
    await asyncio.to_thread(source_lock.acquire)
    try:
        sqlite_db = Database(source)
        await sqlite_db.open()  # brings an older file to the current schema, as a start would
        await sqlite_db.close()
        target = PgDatabase(target_url)
        target_lock = PgProcessLock(target.url, target.display)
        await target_lock.acquire()
        try:
            await target.open()
            try:
                return await _copy(source, target)
            finally:
                await target.close()
        finally:
            await target_lock.release()
    finally:
        source_lock.release()


async def _copy(source: Path, target: PgDatabase) -> list[TableCount]:
    version, pg_version = len(load_migrations()), await target.schema_version()
    if pg_version != len(load_pg_migrations()) or pg_version != version:
        raise CopyError(
            f"schema versions differ: SQLite {version}, PostgreSQL {pg_version}; "
            "upgrade wanbot where it is older"
        )
    reader = _SqliteReader(source)
    try:
        every = await asyncio.to_thread(reader.tables)
        tables = [t for t in every if t not in _PROCESS_STATE]
        async with target.transaction() as conn:
            # Reading SQLite between statements may leave this transaction idle for a
            # while; it is the only one on a database no bot is using.
            await conn.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
            await _check_target(conn, every)
            for table in tables:
                await conn.execute(f'ALTER TABLE "{table}" DISABLE TRIGGER USER')
            counts = []
            for table in tables:
                await _copy_table(conn, reader, table)
                counts.append(
                    TableCount(
                        table,
                        await asyncio.to_thread(reader.count, table),
                        int(await conn.fetchval(f'SELECT COUNT(*) FROM "{table}"')),
                    )
                )
            for table in tables:
                await conn.execute(f'ALTER TABLE "{table}" ENABLE TRIGGER USER')
            await _advance_identities(conn)
            _verify(counts)
            await _verify_ledger(conn, reader)
    finally:
        await asyncio.to_thread(reader.close)
    return counts


async def _check_target(conn: asyncpg.Connection, tables: list[str]) -> None:
    present = {
        r[0]
        for r in await conn.fetch(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        )
    }
    missing = [t for t in tables if t not in present]
    if missing:
        raise CopyError(f"PostgreSQL has no table {', '.join(missing)}: schemas differ")
    used = [
        t
        for t in tables
        if t not in _KEYED and await conn.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{t}")')
    ]
    if used:
        raise CopyError(
            f"the PostgreSQL database is not empty ({', '.join(used)} have rows); "
            "copy into a new database"
        )


async def _copy_table(conn: asyncpg.Connection, reader: _SqliteReader, table: str) -> None:
    types = {
        r[0]: r[1]
        for r in await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = $1",
            table,
        )
    }
    columns = await asyncio.to_thread(reader.columns, table)
    unknown = [c for c in columns if c not in types]
    if unknown:
        raise CopyError(f"PostgreSQL's {table} has no column {', '.join(unknown)}")
    convert = [_converter(types[c]) for c in columns]
    rows = reader.rows(table, columns)
    while True:
        chunk = await asyncio.to_thread(next, rows, None)
        if chunk is None:
            return
        records = [tuple(f(v) for f, v in zip(convert, row, strict=True)) for row in chunk]
        if table in _KEYED:
            key = _KEYED[table]
            updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
            slots = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
            await conn.executemany(
                f'INSERT INTO "{table}" ({", ".join(columns)}) VALUES ({slots}) '
                f"ON CONFLICT ({key}) DO UPDATE SET {updates}",
                records,
            )
        else:
            await conn.copy_records_to_table(table, records=records, columns=columns)


async def _advance_identities(conn: asyncpg.Connection) -> None:
    """Identity columns continue after the copied ids (explicit ids do not move them)."""
    for table, column in await conn.fetch(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND is_identity = 'YES' AND table_name <> $1",
        SCHEMA_TABLE,
    ):
        await conn.execute(
            f"SELECT setval(pg_get_serial_sequence('\"{table}\"', '{column}'), "
            f'COALESCE(MAX("{column}"), 0) + 1, false) FROM "{table}"'
        )


def _verify(counts: list[TableCount]) -> None:
    wrong = [c for c in counts if c.source != c.target]
    if wrong:
        detail = ", ".join(f"{c.table} {c.source} -> {c.target}" for c in wrong)
        raise CopyError(f"row counts differ after the copy ({detail}); nothing was committed")


async def _verify_ledger(conn: asyncpg.Connection, reader: _SqliteReader) -> None:
    sql = "SELECT kind, SUM(images) FROM ledger GROUP BY kind ORDER BY kind"
    source = await asyncio.to_thread(reader.query, sql)
    target = [(r[0], int(r[1])) for r in await conn.fetch(sql)]
    if source != target:
        raise CopyError(f"ledger sums differ ({source} -> {target}); nothing was committed")


def _converter(pg_type: str) -> Callable[[Any], Any]:
    # SQLite keeps what it was given; COPY's binary format wants the column's own type.
    base: Callable[[Any], Any] = {
        "double precision": float,
        "real": float,
        "integer": int,
        "bigint": int,
        "smallint": int,
        "boolean": bool,
        "text": str,
    }.get(pg_type, lambda v: v)
    return lambda v: None if v is None else base(v)


class _SqliteReader:
    """Reads the source in one read transaction (one consistent snapshot), on worker
    threads, one call at a time."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(
            read_only_uri(path), uri=True, check_same_thread=False, isolation_level=None
        )
        self._conn.execute("BEGIN")

    def tables(self) -> list[str]:
        names = [
            r[0]
            for r in self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        # Referenced tables first, in case a foreign key remains.
        parents = {
            n: {r[2] for r in self._conn.execute(f'PRAGMA foreign_key_list("{n}")')} for n in names
        }
        ordered: list[str] = []
        while len(ordered) < len(names):
            ready = [n for n in names if n not in ordered and parents[n] <= {*ordered, n}]
            if not ready:
                raise CopyError("the SQLite tables' foreign keys form a cycle")
            ordered += ready
        return ordered

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self._conn.execute(f'PRAGMA table_info("{table}")')]

    def rows(self, table: str, columns: list[str]) -> Iterator[list[tuple[Any, ...]]]:
        names = ", ".join(f'"{c}"' for c in columns)
        cursor = self._conn.execute(f'SELECT {names} FROM "{table}"')
        while chunk := cursor.fetchmany(_CHUNK):
            yield chunk

    def count(self, table: str) -> int:
        return int(self._conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._conn.execute(sql)]

    def close(self) -> None:
        self._conn.close()

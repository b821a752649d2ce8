"""The one owner of the aiosqlite connection.

A single connection (SQLite allows one writer anyway) with WAL, foreign keys
and a busy timeout. Transactions are serialised by an asyncio lock so that
concurrent coroutines never interleave statements on the shared connection.

Every aiosqlite call is a hop to the connection's thread and back (~50-100 us),
and every COMMIT writes the WAL; `atomic()` runs a whole unit of work in one hop
and groups the units that arrive together into one commit, which is what makes
thousands of quota reservations per second possible.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from storage.migration_files import load_migration_files

log = logging.getLogger(__name__)
T = TypeVar("T")
Work = Callable[[sqlite3.Connection], Any]
_MAX_GROUP = 256  # units per transaction


def load_migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) for every bundled migration, in order."""
    return load_migration_files("storage.sqlite.migrations")


class Database:
    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 5000) -> None:
        self.path = str(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._pending: list[tuple[Work, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        self._conn = await aiosqlite.connect(self.path, isolation_level=None)
        self._conn.row_factory = aiosqlite.Row
        await self._conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit (e.g. "submitting", before the provider is called) survives
        # power loss too, not only a crash of the process; grouped commits share the fsync.
        await self._conn.execute("PRAGMA synchronous=FULL")
        await self._conn.execute("PRAGMA foreign_keys=ON")
        await self._conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        await self.migrate()

    async def close(self) -> None:
        if self._flusher is not None:
            await self._flusher  # units already accepted are committed first
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def __aenter__(self) -> Database:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def user_version(self) -> int:
        async with self.conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def migrate(self) -> list[str]:
        """Apply pending migrations in one transaction. Returns the files applied."""
        migrations = load_migrations()
        async with self._lock:
            current = await self.user_version()
            pending = [m for m in migrations if m[0] > current]
            if not pending:
                return []
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                for version, name, sql in pending:
                    for statement in _split_sql(sql):
                        await self.conn.execute(statement)
                    log.info("applied migration %s", name)
                    latest = version
                await self.conn.execute(f"PRAGMA user_version={latest}")
                await self.conn.execute("COMMIT")
            except BaseException:
                await self.conn.execute("ROLLBACK")
                raise
        return [name for _, name, _ in pending]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction taken with BEGIN IMMEDIATE (the write lock up front, so
        check-then-insert sequences cannot race), committed on success."""
        if self._pending or (self._flusher is not None and not self._flusher.done()):
            await self.atomic(_nothing)  # let units queued earlier commit first (FIFO)
        async with self._lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                await self.conn.execute("ROLLBACK")
                raise
            else:
                await self.conn.execute("COMMIT")

    async def atomic(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work(conn)` in a write transaction and return its result, or raise its
        exception with its changes undone.

        `work` runs on the connection's own thread (one hop, however many statements),
        so it must be synchronous, quick and touch nothing but `conn` (pure functions
        are fine). Units that arrive while a group is running form the next group: one
        BEGIN IMMEDIATE ... COMMIT for all of them, each in its own SAVEPOINT so that
        one failing undoes only its own changes. This returns after the COMMIT.
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((work, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush(), name="sqlite-atomic"
            )
        return await future

    async def _flush(self) -> None:
        while self._pending:
            # Capped, so that one group's latency (and its hold on the lock) stays short.
            taken, self._pending = self._pending[:_MAX_GROUP], self._pending[_MAX_GROUP:]
            group = [(work, fut) for work, fut in taken if not fut.cancelled()]
            if not group:
                continue
            try:
                async with self._lock:
                    conn = self.conn
                    # aiosqlite has no public "run this callable on the connection's
                    # thread"; _execute is what all its public methods use.
                    outcomes = await conn._execute(
                        _run_group, conn._conn, [work for work, _ in group]
                    )
            except asyncio.CancelledError:
                # Shutting down: the group's outcome is unknown to its callers.
                for _, fut in group + self._pending:
                    fut.cancel()
                self._pending = []
                raise
            except Exception as exc:  # the group as a whole failed (e.g. its COMMIT)
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), (ok, value) in zip(group, outcomes, strict=True):
                if fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

    # Reads (and single statements) queue behind the units already waiting, so that
    # a read issued after a write by another coroutine sees that write.
    async def fetchall(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[aiosqlite.Row]:
        def run(conn: sqlite3.Connection) -> list[aiosqlite.Row]:
            # fetchall: a DML statement with RETURNING must run to completion.
            return conn.execute(sql, params).fetchall()

        return await self.atomic(run)

    async def fetchone(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> aiosqlite.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None


def _nothing(conn: sqlite3.Connection) -> None:
    return None


def _run_group(conn: sqlite3.Connection, units: list[Work]) -> list[tuple[bool, Any]]:
    # On the connection's thread: one transaction, one savepoint per unit.
    outcomes: list[tuple[bool, Any]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for work in units:
            conn.execute("SAVEPOINT unit")
            try:
                value = work(conn)
            except Exception as exc:
                conn.execute("ROLLBACK TO unit")
                conn.execute("RELEASE unit")
                outcomes.append((False, exc))
            else:
                conn.execute("RELEASE unit")
                outcomes.append((True, value))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


def _split_sql(sql: str) -> list[str]:
    # A statement ends where SQLite says it is complete, so trigger bodies (whose
    # inner statements end in ';') stay whole.
    statements, current = [], ""
    for line in sql.splitlines(keepends=True):
        if not current and (not line.strip() or line.lstrip().startswith("--")):
            continue
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements

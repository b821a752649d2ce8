"""The one owner of the asyncpg pool, and the schema migrations.

Unlike SQLite, PostgreSQL runs transactions concurrently: each store operation takes
a pooled connection for one statement or one short transaction, and correctness under
concurrency comes from row locks, compare-and-set updates and advisory locks (see
storage/postgres/jobs.py), not from serialising every write in this process.

Migrations are storage/postgres/migrations/NNNN_*.sql, numbered as the SQLite ones
(storage/sqlite/migrations/); the applied versions are kept in `wanbot_schema` (PostgreSQL's
stand-in for SQLite's `PRAGMA user_version`). They run in one transaction under a
transaction-level advisory lock, so any number of processes may start at once: the
first applies them, the others wait for its commit and find nothing left to do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import asyncpg

from storage.errors import DatabaseUnavailable
from storage.migration_files import load_migration_files

log = logging.getLogger(__name__)

# pg_advisory_xact_lock key for migrations ("wanbot" in ASCII): one per database.
MIGRATION_LOCK = 0x77616E626F74
SCHEMA_TABLE = "wanbot_schema"
POOL_SIZE = 10
# A process paused (SIGSTOP, a VM freeze) between two statements of a transaction,
# its connection still open, keeps that transaction's locks until it resumes, and a
# job row locked so is skipped by every other process's claim and takeover (`SKIP
# LOCKED`): the server ends any transaction idle this long, and its session with it.
# Set on every pooled session rather than per transaction: no extra round trip, and
# no transaction forgets it. A statement running long is not idle; nothing of ours
# waits on the client inside a transaction (`wanbot db copy` lifts it for its own).
IDLE_TRANSACTION_SECONDS = 5.0

_SCHEMA_TABLE_SQL = f"""
CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """The URL without its password (user:PASSWORD@ or ?password=), for messages."""
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)
        user = netloc[0].split(":", 1)[0]
        parts = parts._replace(netloc=f"{user}:***@{netloc[1]}")
    if "password=" in parts.query:
        query = [
            (key, "***" if key == "password" else value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
        parts = parts._replace(query=urlencode(query, safe="/*"))
    # By hand: urlunsplit drops an empty host ("postgresql:///db" -> "postgresql:/db").
    shown = f"{parts.scheme}://{parts.netloc}{parts.path}"
    shown += f"?{parts.query}" if parts.query else ""
    return shown + (f"#{parts.fragment}" if parts.fragment else "")


def url_passwords(url: str) -> list[str]:
    """Every password the URL carries, to be redacted from logs."""
    parts = urlsplit(url)
    found = [value for key, value in parse_qsl(parts.query) if key == "password"]
    if parts.password:
        found += [parts.password, unquote(parts.password)]  # as written, and decoded
    return found


@asynccontextmanager
async def unavailable(display: str) -> AsyncIterator[None]:
    """Connection failures as DatabaseUnavailable, with the URL shown redacted."""
    try:
        yield
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DatabaseUnavailable(f"cannot connect to {display}: {exc}") from exc


def load_pg_migrations(package: str = "storage.postgres.migrations") -> list[tuple[int, str, str]]:
    """(version, file name, SQL) for every bundled PostgreSQL migration, in order."""
    return load_migration_files(package)


class PgDatabase:
    """A pool on one PostgreSQL database. `url` may hold a password: never log nor
    show it (use `display`, which has it replaced)."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = POOL_SIZE,
        idle_transaction_seconds: float = IDLE_TRANSACTION_SECONDS,
    ) -> None:
        if not is_postgres_url(url):
            raise ValueError("a PostgreSQL URL starts with postgresql://")
        self.url = url
        self.display = redact_url(url)
        self._pool_size = pool_size
        self._idle_transaction_ms = max(1, round(idle_transaction_seconds * 1000))
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("database is not open")
        return self._pool

    async def open(self, *, migrate: bool = True) -> None:
        """Connect and (unless told not to) apply pending migrations. Raises
        DatabaseUnavailable when the server cannot be reached or refuses us."""
        async with unavailable(self.display):
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self._pool_size,
                server_settings={
                    "timezone": "UTC",
                    # Named, so an operator (or pg_stat_activity) tells whose session it is.
                    "application_name": f"wanbot {os.getpid()}",
                    "idle_in_transaction_session_timeout": f"{self._idle_transaction_ms}ms",
                },
            )
        if not migrate:
            return
        try:
            await self.migrate()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def __aenter__(self) -> PgDatabase:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def schema_version(self) -> int:
        """The highest migration applied (0 on an empty database)."""
        async with self.pool.acquire() as conn:
            exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", SCHEMA_TABLE)
            if not exists:
                return 0
            return int(await conn.fetchval(f"SELECT COALESCE(MAX(version), 0) FROM {SCHEMA_TABLE}"))

    async def migrate(self) -> list[str]:
        """Apply pending migrations in one transaction. Returns the files applied
        (none when another process got there first)."""
        migrations = load_pg_migrations()
        async with self.pool.acquire() as conn, conn.transaction():
            # Held until COMMIT; whoever waited here reads the versions afterwards,
            # in a statement that starts after the winner's commit.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(_SCHEMA_TABLE_SQL)
            applied = {r[0] for r in await conn.fetch(f"SELECT version FROM {SCHEMA_TABLE}")}
            pending = [m for m in migrations if m[0] not in applied]
            for version, name, sql in pending:
                # No arguments: the simple query protocol runs the whole file, with
                # its several statements and $$-quoted function bodies.
                await conn.execute(sql)
                await conn.execute(
                    f"INSERT INTO {SCHEMA_TABLE} (version, name) VALUES ($1, $2)", version, name
                )
                log.info("applied migration %s", name)
        return [name for _, name, _ in pending]

    @asynccontextmanager
    async def transaction(self, **options: Any) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection inside a transaction, committed on success."""
        async with self.pool.acquire() as conn, conn.transaction(**options):
            yield conn

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return list(await self.pool.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.pool.fetchrow(sql, *args)
        return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.pool.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        return str(await self.pool.execute(sql, *args))

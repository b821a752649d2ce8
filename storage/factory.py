"""The one place that picks the storage backend from settings.

DATABASE_URL=postgresql://... selects PostgreSQL (storage/postgres/); unset, SQLite
at DATABASE_PATH. Both give the same ports (JobStore, QuotaAdmin). Building does no
I/O; `await store.open()` connects and applies pending migrations.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.core.clock import Clock, SystemClock
from bot.core.ports import IdentifyGate, JobStore, QuotaAdmin, SeenEvents, WorkShare
from bot.core.quota import QuotaDefaults
from storage.postgres import ops as pg_ops
from storage.postgres.clock import DatabaseClock
from storage.postgres.db import PgDatabase
from storage.postgres.events import PostgresSeenEvents
from storage.postgres.ops import PgProcessLock
from storage.sqlite import health, prune
from storage.sqlite.db import Database
from storage.sqlite.events import SqliteSeenEvents
from storage.sqlite.lock import ProcessLock

if TYPE_CHECKING:
    from bot.settings import Settings


@dataclass
class Store:
    backend: str  # "sqlite" or "postgresql"
    where: str  # the file, or the URL without its password: safe to show
    db: Database | PgDatabase
    jobs: JobStore
    quotas: QuotaAdmin
    # SQLite: one bot per database. PostgreSQL: taken shared by every bot process
    # (they share the jobs: `share`), exclusively by `wanbot db copy`.
    lock: ProcessLock | PgProcessLock
    clock: Clock | None = None  # the store's clock, compared with PostgreSQL's at open
    share: WorkShare | None = None  # PostgreSQL: the jobs shared with other processes

    @functools.cached_property
    def seen_events(self) -> SeenEvents:
        """Platform events already handled (Slack's de-duplication across processes and
        restarts), on this store's database."""
        clock = self.clock or SystemClock()
        if isinstance(self.db, PgDatabase):
            return PostgresSeenEvents(self.db, clock)
        return SqliteSeenEvents(self.db, clock)

    async def open(self, *, exclusive: bool = True) -> None:
        """Connect and migrate. `exclusive`: first take the one-bot-per-database lock
        (raises storage.errors.DatabaseInUse naming the holder's PID)."""
        if exclusive:
            await self._acquire()
        try:
            await self.db.open()
        except BaseException:
            await self._release()
            raise
        if isinstance(self.db, PgDatabase):
            if isinstance(self.clock, DatabaseClock):
                await self.clock.sync(self.db)  # from here on, the server's time
            elif isinstance(self.clock, SystemClock):
                await pg_ops.warn_on_clock_skew(self.db, self.clock)

    async def close(self) -> None:
        try:
            await self.db.close()
        finally:
            await self._release()

    async def ping(self) -> None:
        """Raises when the database cannot answer (for /healthz)."""
        if isinstance(self.db, PgDatabase):
            await pg_ops.ping(self.db)
        else:
            await health.ping(self.db)

    async def jobs_by_state(self) -> dict[str, int]:
        if isinstance(self.db, PgDatabase):
            return await pg_ops.jobs_by_state(self.db)
        return await health.jobs_by_state(self.db)

    async def prune_jobs(self, *, now: float, retention_days: int) -> int:
        """Delete finished jobs older than `retention_days`; the ledger stays."""
        if isinstance(self.db, PgDatabase):
            return await pg_ops.prune_jobs(self.db, now=now, retention_days=retention_days)
        return await prune.prune_jobs(self.db, now=now, retention_days=retention_days)

    async def _acquire(self) -> None:
        if isinstance(self.lock, PgProcessLock):
            await self.lock.acquire()
        else:
            await asyncio.to_thread(self.lock.acquire)

    async def _release(self) -> None:
        if isinstance(self.lock, PgProcessLock):
            await self.lock.release()
        else:
            self.lock.release()


def database_url(settings: Settings) -> str | None:
    secret = settings.database_url
    return secret.get_secret_value() if secret is not None else None


def open_database(
    settings: Settings, database_path: str | Path | None = None
) -> Database | PgDatabase:
    """The configured database, not yet opened. An explicit `database_path` (tests,
    tools) means SQLite at that path whatever DATABASE_URL says."""
    url = database_url(settings)
    if database_path is None and url is not None:
        return PgDatabase(url)
    return Database(database_path if database_path is not None else settings.database_path)


def default_clock(settings: Settings, database_path: str | Path | None = None) -> Clock:
    """PostgreSQL: the database server's clock, which every process sharing it stamps
    leases, deadlines and quota periods with. SQLite: this host's."""
    if database_path is None and database_url(settings) is not None:
        return DatabaseClock()
    return SystemClock()


def build_store(
    settings: Settings,
    *,
    clock: Clock,
    defaults: QuotaDefaults,
    price_per_image_usd: float,
    database_path: str | Path | None = None,
) -> Store:
    db = open_database(settings, database_path)
    if isinstance(db, PgDatabase):
        from storage.postgres.jobs import PostgresJobStore
        from storage.postgres.quotas import PostgresQuotaAdmin
        from storage.postgres.share import PgWorkShare

        return Store(
            "postgresql",
            db.display,
            db,
            PostgresJobStore(db, clock, defaults, price_per_image_usd),
            PostgresQuotaAdmin(db, clock, defaults, price_per_image_usd),
            PgProcessLock(db.url, db.display, shared=True),
            clock,
            PgWorkShare(db, clock, lease_seconds=settings.lease_seconds),
        )
    from storage.sqlite.jobs import SqliteJobStore
    from storage.sqlite.quotas import SqliteQuotaAdmin

    return Store(
        "sqlite",
        db.path,
        db,
        SqliteJobStore(db, clock, defaults, price_per_image_usd),
        SqliteQuotaAdmin(db, clock, defaults, price_per_image_usd),
        ProcessLock(db.path),
        clock,
    )


def build_identify_gate(store: Store, clock: Clock) -> IdentifyGate:
    """Discord's IDENTIFY pacing: through the database when several processes may share
    it (PostgreSQL), in memory for SQLite's one process."""
    if isinstance(store.db, PgDatabase):
        from storage.postgres.identify import PgIdentifyGate

        return PgIdentifyGate(store.db, clock)
    from storage.sqlite.identify import LocalIdentifyGate

    return LocalIdentifyGate(clock)

"""The `backend` fixture: the store contract tests run once per storage backend.

A Backend builds the JobStore and QuotaAdmin of one backend on a fresh database and
answers raw SQL written with `?` placeholders (SQL the two dialects share), so the
tests can look at the ledger and tables directly on both.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.core.clock import Clock
from bot.core.models import Space
from bot.core.ports import JobStore, QuotaAdmin
from bot.core.quota import QuotaDefaults
from storage.postgres.db import PgDatabase
from storage.postgres.jobs import PostgresJobStore
from storage.postgres.quotas import PostgresQuotaAdmin
from storage.sqlite.db import Database
from storage.sqlite.jobs import SqliteJobStore
from storage.sqlite.quotas import SqliteQuotaAdmin
from tests.pg import PgCluster, fresh_name

_QMARK = re.compile(r"\?")


def space(guild: str, platform: str = "discord") -> Space:
    """The quota space of a server (a Discord one unless told): what QuotaAdmin keys on."""
    return Space(platform=platform, id=guild)


@dataclass
class Backend:
    name: str  # "sqlite" or "postgres"
    location: str  # a file path or a PostgreSQL URL
    db: Database | PgDatabase

    def jobs(self, clock: Clock, defaults: QuotaDefaults) -> JobStore:
        if isinstance(self.db, PgDatabase):
            return PostgresJobStore(self.db, clock, defaults)
        return SqliteJobStore(self.db, clock, defaults)

    def quotas(self, clock: Clock, defaults: QuotaDefaults, price: float) -> QuotaAdmin:
        if isinstance(self.db, PgDatabase):
            return PostgresQuotaAdmin(self.db, clock, defaults, price)
        return SqliteQuotaAdmin(self.db, clock, defaults, price)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        if isinstance(self.db, PgDatabase):
            counter = iter(range(1, len(params) + 1))
            return await self.db.fetch(_QMARK.sub(lambda _: f"${next(counter)}", sql), *params)
        return list(await self.db.fetchall(sql, params))

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def reopen(self) -> None:
        """Close and open again on the same data, as a restart would."""
        await self.db.close()
        self.db = _open_db(self.name, self.location)
        await self.db.open()


def _open_db(name: str, location: str) -> Database | PgDatabase:
    return PgDatabase(location) if name == "postgres" else Database(Path(location))


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    cluster: PgCluster | None = None
    if request.param == "postgres":
        # Only the PostgreSQL runs start (or skip on) the cluster.
        cluster = request.getfixturevalue("pg_cluster")
        name = fresh_name("test")
        location = await cluster.create_database(name)
    else:
        location = str(tmp_path / "wanbot.sqlite3")
    item = Backend(request.param, location, _open_db(request.param, location))
    try:
        await item.db.open()
        yield item
    finally:
        await item.db.close()
        if cluster is not None:
            await cluster.drop_database(name)

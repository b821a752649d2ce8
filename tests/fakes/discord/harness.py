"""Run the real WanBot (real discord.py) against the fake Discord, with the real engine,
SQLite storage and the mock provider, all on one FakeClock.

Time only moves when a test says so: `drive` advances the clock from timer to timer,
letting every request to the fake and every database call finish before each step,
so a 20-minute job runs in well under a second and no timer is jumped over.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from bot.core.clock import FakeClock
from bot.core.download import SafeDownloader
from bot.core.engine import EngineConfig, JobEngine
from bot.core.models import Job
from bot.core.providers.mock import FailureHook, MockProvider
from bot.core.quota import QuotaDefaults
from bot.core.tasks import TaskGroup
from bot.discord.bot import WanBot
from bot.discord.endpoints import endpoints
from storage.db import Database
from storage.jobs import SqliteJobStore
from storage.quotas import SqliteQuotaAdmin
from tests.fakes.discord.server import FakeDiscord

T = TypeVar("T")


class CountingStore:
    """The real job store, counting calls in flight (they run in SQLite's thread)."""

    def __init__(self, inner: SqliteJobStore) -> None:
        self.inner = inner
        self.in_flight = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not asyncio.iscoroutinefunction(attr):
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.in_flight += 1
            try:
                return await attr(*args, **kwargs)
            finally:
                self.in_flight -= 1

        return counted


@dataclass
class LocalRuntime:
    """What bot.runtime.Runtime provides to the Discord front end, built for tests."""

    engine: JobEngine
    quotas: SqliteQuotaAdmin
    jobs: Any  # CountingStore over SqliteJobStore
    provider: MockProvider
    downloader: SafeDownloader
    clock: FakeClock
    tasks: TaskGroup = field(default_factory=lambda: TaskGroup("runtime"))

    async def start(self) -> None:
        await self.engine.start()

    async def close(self) -> None:
        await self.engine.close()
        await self.tasks.close()


def build_runtime(
    db: Database,
    clock: FakeClock,
    session: aiohttp.ClientSession,
    *,
    latency: float = 5.0,
    defaults: QuotaDefaults | None = None,
    deadline: float = 3600.0,
    failure_hook: FailureHook | None = None,
) -> LocalRuntime:
    defaults = defaults or QuotaDefaults(default_limit=100, max_running=10, max_queued=10)
    downloader = SafeDownloader(session, ["127.0.0.1"])
    provider = MockProvider(clock, latency, downloader=downloader, failure_hook=failure_hook)
    store = CountingStore(SqliteJobStore(db, clock, defaults))
    engine = JobEngine(
        store,  # type: ignore[arg-type]
        provider,
        clock=clock,
        config=EngineConfig(deadline_seconds=deadline, retry_base_delay=1.0),
    )
    return LocalRuntime(
        engine=engine,
        quotas=SqliteQuotaAdmin(db, clock, defaults, 0.05),
        jobs=store,
        provider=provider,
        downloader=downloader,
        clock=clock,
    )


@dataclass
class Running:
    fake: FakeDiscord
    bot: WanBot
    rt: LocalRuntime
    clock: FakeClock

    async def settle(self, turns: int = 30, timeout: float = 5.0) -> None:
        """Until nothing is in flight (fake Discord requests, store calls) for a while."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        calm = 0
        while calm < turns:
            await asyncio.sleep(0)
            busy = self.fake.in_flight or self.rt.jobs.in_flight
            calm = 0 if busy else calm + 1
            if loop.time() > end:
                raise AssertionError("requests still in flight")

    async def drive(self, check: Callable[[], T | None], *, limit: float = 7200.0) -> T:
        """Advance fake time timer by timer until `check()` returns something truthy."""
        start = self.clock.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                # Real work (HTTP, SQLite) may be under way: give it a bounded chance.
                return await self.fake.wait_until(check, timeout=0.02)
            await self.settle()
            value = check()
            if value:
                return value
            delay = self.clock.next_deadline()
            if delay is None or self.clock.monotonic() - start > limit:
                raise AssertionError(
                    f"stuck after {self.clock.monotonic() - start:.1f} fake seconds"
                )
            await self.clock.advance(max(delay, 0.0))

    async def job(self, job_id: str) -> Job:
        job = await self.rt.jobs.get(job_id)
        assert job is not None
        return job

    async def latest_job(self) -> Job:
        rows = await self.rt.jobs.inner._db.fetchall(
            "SELECT id FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT 1"
        )
        assert rows, "no job was stored"
        return await self.job(rows[0][0])


@contextlib.asynccontextmanager
async def running_bot(
    fake: FakeDiscord,
    db_path: Path,
    clock: FakeClock,
    **runtime_options: Any,
) -> AsyncIterator[Running]:
    """A logged-in, connected, ready WanBot over a fresh runtime on `db_path`."""
    db = Database(db_path)
    await db.open()
    session = aiohttp.ClientSession()
    rt = build_runtime(db, clock, session, **runtime_options)
    with endpoints(fake.api_base, fake.gateway_url):
        bot = WanBot(rt, guild_ready_timeout=0.05)
        connect: asyncio.Task[None] | None = None
        try:
            await bot.login("fake-bot-token")
            rt.engine.register_delivery("discord", bot.delivery)
            await rt.start()
            connect = asyncio.create_task(bot.connect(reconnect=False))
            await asyncio.wait_for(bot.wait_until_ready(), timeout=5.0)
            yield Running(fake, bot, rt, clock)
        finally:
            await rt.close()
            await bot.close()
            if connect is not None:
                with contextlib.suppress(Exception):
                    await connect
            await session.close()
            await db.close()

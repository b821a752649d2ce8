"""The real job engine and SQLite store driving a real HTTP provider adapter against its
fake server (tests/fakes/providers.py), on the fake clock: for money and blame tests.

The adapter's own status retries are off (one attempt): retries then all go through
the engine's timers, so "nothing in flight" means the engine waits on the fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
from pydantic import SecretStr

from bot.core.clock import FakeClock
from bot.core.download import SafeDownloader
from bot.core.engine import JobEngine
from bot.core.models import Job
from bot.core.ports import ImageProvider
from bot.core.providers import RetryPolicy, Timeouts, build_provider
from storage.sqlite.db import Database
from tests.engine_doubles import RecordingPort, TrackedStore, ledger, make_engine, make_store
from tests.fakes.providers import FakeApixo, FakeDashscope, FakeEvolink, FakeProviderServer

PROVIDERS = ("apixo", "evolink", "dashscope")
FAKES: dict[str, type[FakeProviderServer]] = {
    "apixo": FakeApixo,
    "evolink": FakeEvolink,
    "dashscope": FakeDashscope,
}
# Short real-time limits: the fake's hangs end in a client timeout quickly.
FAST = Timeouts(submit=0.3, status=0.3, connect=0.3)


def new_fake(name: str) -> FakeProviderServer:
    if name == "evolink":
        return FakeEvolink(require_https_callback=False)
    return FAKES[name]()


def http_provider(
    name: str, fake: FakeProviderServer, session: aiohttp.ClientSession, clock: FakeClock
) -> ImageProvider:
    return build_provider(
        name,
        clock=clock,
        session=session,
        api_key=SecretStr(fake.api_key),
        base_url=fake.base_url,
        files_url=fake.origin,
        downloader=SafeDownloader(session, ["127.0.0.1"], max_bytes=1_000_000, timeout=2),
        timeouts=FAST,
        retry=RetryPolicy(attempts=1),
    )


@dataclass
class World:
    name: str
    fake: FakeProviderServer
    provider: ImageProvider
    engine: JobEngine
    store: TrackedStore
    port: RecordingPort
    clock: FakeClock
    db: Database

    async def idle(self, timeout: float = 10.0) -> None:
        """Until neither the engine (HTTP calls, deliveries) nor the store has had
        anything in flight for a while (real time)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        calm = 0
        while calm < 30:
            await asyncio.sleep(0 if calm else 0.001)
            busy = self.engine.in_flight or self.store.in_flight
            calm = 0 if busy else calm + 1
            if loop.time() > end:
                raise AssertionError("engine work still in flight")

    async def until(self, check: Callable[[], bool], *, limit: float = 3600.0) -> None:
        """Advance fake time, timer by timer, until `check()` holds."""
        start = self.clock.monotonic()
        while True:
            await self.idle()
            if check():
                return
            delay = self.clock.next_deadline()
            if delay is None or self.clock.monotonic() - start > limit:
                raise AssertionError(f"stuck after {self.clock.monotonic() - start:.1f} s")
            await self.clock.advance(max(delay, 0.0))

    async def final(self, job_id: str, *, limit: float = 3600.0) -> Job:
        """Advance fake time until the job is final; returns it as stored."""
        start = self.clock.monotonic()
        while True:
            await self.idle()
            job = await self.store.get(job_id)
            assert job is not None
            if job.state.final:
                await self.idle()  # the failure notice goes out after the settle
                return job
            delay = self.clock.next_deadline()
            if delay is None or self.clock.monotonic() - start > limit:
                raise AssertionError(f"job {job_id} stuck in {job.state.value}")
            await self.clock.advance(max(delay, 0.0))

    async def ledger(self, job_id: str) -> dict[str, int]:
        return await ledger(self.db, job_id)


@contextlib.asynccontextmanager
async def provider_world(
    name: str,
    db: Database,
    clock: FakeClock,
    *,
    fake: FakeProviderServer | None = None,
    started: bool = True,
    **engine_config: object,
) -> AsyncIterator[World]:
    """A started engine on `name`'s adapter and fake (pass a fake to keep it unstarted
    with `started=False`: the adapter then points at its chosen, closed port)."""
    fake = fake or new_fake(name)
    if started:
        await fake.start()
    else:
        fake.origin = f"http://127.0.0.1:{fake.listen_port}"
    async with aiohttp.ClientSession() as session:
        provider = http_provider(name, fake, session, clock)
        store = make_store(db, clock)
        port = RecordingPort()
        engine = make_engine(store, provider, clock, port, **engine_config)  # type: ignore[arg-type]
        await engine.start()
        try:
            yield World(name, fake, provider, engine, store, port, clock, db)
        finally:
            await engine.close()
            await fake.close()

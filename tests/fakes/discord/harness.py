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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from bot.core.clock import FakeClock
from bot.core.download import SafeDownloader
from bot.core.models import Job
from bot.core.providers.mock import FailureHook, MockProvider
from bot.discord.bot import WanBot
from bot.discord.endpoints import endpoints
from bot.runtime import Runtime
from bot.settings import Settings
from tests.fakes.discord.server import FakeDiscord

T = TypeVar("T")


class Busy:
    """Counts calls in flight to the store and the provider (real work off the clock)."""

    def __init__(self) -> None:
        self.count = 0


class BotRequests:
    """Counts the bot's REST calls in flight from discord.py's side, so waits between
    tries that discord.py makes in real time (rate limits, 5xx) count as work: fake
    time must not jump over them. Requests the fake hangs on purpose are not work:
    compare with `FakeDiscord.hanging`."""

    def __init__(self, bot: WanBot, on_done: Callable[[], None] | None = None) -> None:
        self.count = 0
        real = bot.http.request

        async def request(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            try:
                return await real(*args, **kwargs)
            finally:
                self.count -= 1
                if on_done is not None:
                    on_done()

        bot.http.request = request  # type: ignore[method-assign]


def count_pool_work(pool: ThreadPoolExecutor, busy: Busy) -> None:
    """Count work submitted to `pool` as busy until its result is back on the loop (the
    same pool object stays in use, so whoever holds it keeps working)."""
    loop = asyncio.get_running_loop()
    real_submit = pool.submit

    def done() -> None:
        busy.count -= 1

    def submit(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        busy.count += 1
        future = real_submit(fn, *args, **kwargs)
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(done))
        return future

    pool.submit = submit  # type: ignore[method-assign]


class Counting:
    """Wraps an object; its coroutine methods count as busy while they run."""

    def __init__(self, inner: Any, busy: Busy) -> None:
        self.inner = inner
        self._busy = busy

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not asyncio.iscoroutinefunction(attr):
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self._busy.count += 1
            try:
                return await attr(*args, **kwargs)
            finally:
                self._busy.count -= 1

        return counted


def settings_for_tests(db_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_path": db_path,
        "wan_provider": "mock",
        "download_allowed_hosts": ["127.0.0.1"],
        "job_deadline_seconds": 3600.0,
        "default_user_limit": 100,
        "max_running_jobs_per_user": 10,
        "max_queued_jobs_per_user": 10,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def build_runtime(
    settings: Settings,
    clock: FakeClock,
    session: aiohttp.ClientSession,
    *,
    latency: float = 5.0,
    failure_hook: FailureHook | None = None,
    long_side: int = 512,
    mock: MockProvider | None = None,
) -> tuple[Runtime, Busy, MockProvider]:
    """The real Runtime on the fake clock with the mock provider; store and provider
    calls are counted so the test knows when real work is in flight."""
    busy = Busy()
    downloader = SafeDownloader(session, settings.download_allowed_hosts)
    if mock is None:  # pass the previous one to keep its tasks across a "restart"
        mock = MockProvider(
            clock, latency, downloader=downloader, failure_hook=failure_hook, long_side=long_side
        )
    rt = Runtime(settings, clock=clock, provider=Counting(mock, busy), http=session)  # type: ignore[arg-type]
    # Pillow work is real work too: fake time must not jump over it (delivery timers).
    count_pool_work(rt.image_executor, busy)
    store = Counting(rt.jobs, busy)
    rt.jobs = store  # type: ignore[assignment]
    rt.engine.store = store  # type: ignore[assignment]
    return rt, busy, mock


@dataclass
class Running:
    fake: FakeDiscord
    bot: WanBot
    rt: Runtime
    clock: FakeClock
    busy: Busy
    mock: MockProvider
    bot_requests: BotRequests | None = None
    connect: asyncio.Task[None] | None = None  # the gateway connection (bot.connect)

    async def settle(self, turns: int = 30, timeout: float = 5.0) -> None:
        """Until nothing is in flight (fake Discord requests, store and provider calls)
        for a while."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        calm = 0
        while calm < turns:
            await asyncio.sleep(0)
            busy = self.fake.in_flight or self.busy.count or self._bot_waiting()
            calm = 0 if busy else calm + 1
            if loop.time() > end:
                raise AssertionError("requests still in flight")

    def _bot_waiting(self) -> bool:
        """discord.py between tries (a real-time wait), not a request hung on purpose."""
        return self.bot_requests is not None and self.bot_requests.count > self.fake.hanging

    async def drive(
        self, check: Callable[[], T | None], *, limit: float = 7200.0, timeout: float = 10.0
    ) -> T:
        """Advance fake time timer by timer until `check()` returns something truthy
        (at most `limit` fake seconds and `timeout` real ones)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        start = self.clock.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                # Real work (HTTP, SQLite, Pillow) may be under way: give it a chance.
                return await self.fake.wait_until(check, timeout=0.02)
            await self.settle()
            value = check()
            if value:
                return value
            delay = self.clock.next_deadline()
            spent = self.clock.monotonic() - start
            if spent > limit or loop.time() > give_up:
                raise AssertionError(f"stuck after {spent:.1f} fake seconds")
            if delay is not None:
                await self.clock.advance(max(delay, 0.0))

    def result_messages(self, job_id: str | None = None) -> list[dict[str, Any]]:
        """Messages with result images, identified by the job nonce the bot sets."""
        prefix = f"wb{job_id}" if job_id else "wb"
        return [
            m
            for m in self.fake.messages.values()
            if m["author"]["id"] == self.fake.bot.id
            and str(m.get("nonce") or "").startswith(prefix)
            and m["attachments"]
        ]

    async def wait_results(self, job_id: str | None = None) -> list[dict[str, Any]]:
        return await self.drive(lambda: self.result_messages(job_id) or None)

    async def finish(self) -> None:
        """Run until the engine has no job in flight and all work has settled."""
        await self.drive(lambda: self.rt.engine.active_count == 0)
        await self.settle()

    async def job(self, job_id: str) -> Job:
        job = await self.rt.jobs.get(job_id)
        assert job is not None
        return job

    async def latest_job(self) -> Job:
        rows = await self.rt.db.fetchall(
            "SELECT id FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT 1"
        )
        assert rows, "no job was stored"
        return await self.job(rows[0][0])


@contextlib.asynccontextmanager
async def running_bot(
    fake: FakeDiscord,
    db_path: Path,
    clock: FakeClock,
    *,
    settings: dict[str, Any] | None = None,
    make_bot: Callable[..., WanBot] = WanBot,
    wait_ready: bool = True,
    **runtime_options: Any,
) -> AsyncIterator[Running]:
    """A logged-in, connected, ready WanBot over a fresh Runtime on `db_path`.
    `make_bot(rt, **options)` builds it (a sharded bot: `bot.discord.shards.build_bot`
    with its arguments bound); without `wait_ready`, the test waits for it itself."""
    async with aiohttp.ClientSession() as session:
        config = settings_for_tests(db_path, **(settings or {}))
        rt, busy, mock = build_runtime(config, clock, session, **runtime_options)
        with endpoints(fake.api_base, fake.gateway_url):
            bot = make_bot(rt, guild_ready_timeout=0.05, metrics=rt.metrics)
            bot_requests = BotRequests(bot)
            connect: asyncio.Task[None] | None = None
            try:
                await bot.login("fake-bot-token")
                rt.engine.register_delivery("discord", bot.delivery)
                await rt.start()
                connect = asyncio.create_task(bot.connect(reconnect=False))
                if wait_ready:
                    await asyncio.wait_for(bot.wait_until_ready(), timeout=5.0)
                yield Running(fake, bot, rt, clock, busy, mock, bot_requests, connect)
            finally:
                await rt.close()
                await bot.close()
                if connect is not None:
                    with contextlib.suppress(Exception):
                        await connect

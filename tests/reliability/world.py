"""An in-process world built like production: the real WanBot (discord.py) against the
fake Discord, and the production `Runtime` (engine, SQLite, SafeDownloader, provider
adapter built from settings) against the fake APIXO server, all on one FakeClock.

Time only moves when a test drives it: `World.drive(check)` waits until nothing is in
flight (requests to the fakes, HTTP calls of the runtime, SQLite calls, Pillow work in
the executor), then advances the clock to the next timer, until `check()` holds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from bot.core.clock import FakeClock
from bot.core.download import SafeDownloader
from bot.core.models import Job
from bot.core.ports import ImageProvider
from bot.core.providers.apixo import ApixoProvider
from bot.core.providers.base import RetryPolicy, Timeouts
from bot.discord.bot import WanBot
from bot.discord.endpoints import endpoints
from bot.runtime import Runtime
from bot.settings import Settings
from tests.fakes.discord import FakeDiscord
from tests.fakes.discord.harness import BotRequests, Busy, Counting
from tests.fakes.providers import FakeApixo

T = TypeVar("T")
DISCORD_TOKEN = "test.discord.token"


def world_settings(tmp_path: Path, apixo: FakeApixo, **overrides: Any) -> Settings:
    """Production settings pointed at the fakes, with limits high enough that only
    what a test sets on purpose refuses anything."""
    values: dict[str, Any] = {
        "discord_token": DISCORD_TOKEN,
        "wan_provider": "apixo",
        "apixo_api_key": apixo.api_key,
        "apixo_base_url": apixo.base_url,
        "database_path": tmp_path / "wanbot.sqlite3",
        "download_allowed_hosts": ["127.0.0.1"],
        "default_user_limit": 10_000,
        "max_running_jobs_per_user": 500,
        "max_queued_jobs_per_user": 500,
        "provider_concurrency": 8,
        "job_deadline_seconds": 1800.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


class Quiet:
    """Set whenever a counter of work in flight goes down, so a settle can wait for it."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def poke(self) -> None:
        self.event.set()


class PokingBusy(Busy):
    """harness.Busy (store and quota calls in flight) that pokes on every finish."""

    def __init__(self, quiet: Quiet) -> None:
        self._quiet = quiet
        self._count = 0

    @property  # type: ignore[override]
    def count(self) -> int:
        return self._count

    @count.setter
    def count(self, value: int) -> None:
        if value < self._count:
            self._quiet.poke()
        self._count = value


class CountingExecutor(ThreadPoolExecutor):
    """The loop's default executor (DNS) and the runtime's image pool (Pillow work),
    counting work in flight. The count goes down on the loop, just before the awaiting
    task gets its result."""

    def __init__(self, loop: asyncio.AbstractEventLoop, quiet: Quiet) -> None:
        super().__init__(max_workers=4, thread_name_prefix="world")
        self.in_flight = 0
        self._loop = loop
        self._quiet = quiet

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        self.in_flight += 1
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future[Any]) -> None:
        self._loop.call_soon_threadsafe(self._finished)

    def count_work_of(self, pool: ThreadPoolExecutor) -> None:
        """Count the work of another pool here too."""
        real_submit = pool.submit

        def submit(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
            self.in_flight += 1
            future = real_submit(fn, *args, **kwargs)
            future.add_done_callback(self._done)
            return future

        pool.submit = submit  # type: ignore[method-assign]

    def _finished(self) -> None:
        self.in_flight -= 1
        self._quiet.poke()


class HttpCounter:
    """Counts the runtime's HTTP calls in flight (provider API, downloads)."""

    def __init__(self, quiet: Quiet) -> None:
        self.in_flight = 0
        self._quiet = quiet
        self.config = aiohttp.TraceConfig()
        self.config.on_request_start.append(self._start)
        self.config.on_request_end.append(self._end)
        self.config.on_request_exception.append(self._end)

    async def _start(self, *_: Any) -> None:
        self.in_flight += 1

    async def _end(self, *_: Any) -> None:
        self.in_flight -= 1
        self._quiet.poke()


def fast_apixo(
    settings: Settings,
    clock: FakeClock,
    session: aiohttp.ClientSession,
    *,
    timeout: float = 0.5,
    downloader: SafeDownloader | None = None,
) -> ApixoProvider:
    """The APIXO adapter as the runtime builds it, but with short real-time timeouts,
    for tests where the fake provider hangs on purpose."""
    assert settings.apixo_api_key is not None
    return ApixoProvider(
        session,
        settings.apixo_api_key,
        settings.apixo_base_url,
        clock,
        timeouts=Timeouts(submit=timeout, status=timeout, connect=timeout),
        retry=RetryPolicy(),
        downloader=downloader
        or SafeDownloader(session, settings.download_allowed_hosts, settings.download_max_bytes),
    )


@dataclass
class World:
    fake: FakeDiscord
    apixo: FakeApixo
    bot: WanBot
    rt: Runtime
    clock: FakeClock
    settings: Settings
    store: Any  # the runtime's job store, counted (harness.Counting)
    store_busy: Busy
    http: HttpCounter
    executor: CountingExecutor
    quiet: Quiet
    bot_requests: BotRequests

    @property
    def busy(self) -> bool:
        return bool(
            self.fake.in_flight
            or self.store_busy.count
            or self.http.in_flight
            or self.executor.in_flight
            # discord.py between tries (a real-time wait), not a request hung on purpose
            or self.bot_requests.count > self.fake.hanging
        )

    async def settle(
        self, turns: int = 100, quiet_for: float = 0.01, timeout: float = 20.0
    ) -> None:
        """Until nothing has been in flight for `turns` loop turns and `quiet_for` real
        seconds in a row.

        Every wait for work done elsewhere (SQLite's and the executor's threads, the
        fakes' handlers) is counted, but the steps between two of them (task wake-ups,
        gathers, opening a connection) take loop turns of their own: the calm must
        outlast such a chain, or fake time would jump while real work is under way
        and expire interaction tokens or deadlines that real time never would. 10 ms
        of calm: on a loaded machine (two cores, other test runs) 2 ms was outlasted
        by such a chain often enough to fail the bad-input corpus run."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        calm, calm_since = 0, loop.time()
        while calm < turns or loop.time() - calm_since < quiet_for:
            if self.busy:
                calm = 0
                self.quiet.event.clear()
                # Woken by any counter going down; the fake Discord's own count is
                # re-checked at least every 10 ms.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.quiet.event.wait(), timeout=0.01)
            else:
                if calm == 0:
                    calm_since = loop.time()
                calm += 1
                await asyncio.sleep(0)
            if loop.time() > end:
                raise AssertionError("work still in flight after the settle timeout")

    async def drive(
        self,
        check: Callable[[], Awaitable[T | None] | T | None],
        *,
        limit: float = 7200.0,
        timeout: float = 60.0,
    ) -> T:
        """Advance fake time timer by timer until `check()` returns something truthy."""
        loop = asyncio.get_running_loop()
        start = self.clock.monotonic()
        end = loop.time() + timeout
        while True:
            value = None
            for _ in range(2):  # a second look before moving time: cheap, and safer
                await self.settle()
                value = check()
                if asyncio.iscoroutine(value):
                    value = await value
                if value:
                    return value  # type: ignore[return-value]
            if self.clock.monotonic() - start > limit or loop.time() > end:
                raise AssertionError(
                    f"condition not met after {self.clock.monotonic() - start:.1f} fake s"
                )
            delay = self.clock.next_deadline()
            if delay is None:
                # Nothing scheduled on the clock: something real (a gateway event, a
                # discord.py rate-limit sleep) is under way. Wait for the fake to change.
                with contextlib.suppress(TimeoutError):
                    await self.fake.wait_until(lambda: False, timeout=0.01)
                continue
            await self.clock.advance(max(delay, 0.0))

    async def job(self, job_id: str) -> Job:
        job = await self.store.get(job_id)
        assert job is not None, f"no job {job_id}"
        return job

    async def jobs(self) -> list[Job]:
        rows = await self.rt.db.fetchall("SELECT id FROM jobs ORDER BY created_at, rowid")
        return [await self.job(row[0]) for row in rows]

    async def all_final(self) -> list[Job] | None:
        jobs = await self.jobs()
        return jobs if jobs and all(job.state.final for job in jobs) else None

    async def rows(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await self.rt.db.fetchall(sql, params)]


@contextlib.asynccontextmanager
async def running_world(
    fake: FakeDiscord,
    apixo: FakeApixo,
    settings: Settings,
    clock: FakeClock,
    *,
    provider: Callable[[aiohttp.ClientSession], ImageProvider] | None = None,
    downloader: Callable[[aiohttp.ClientSession], SafeDownloader] | None = None,
    token: str = DISCORD_TOKEN,
) -> AsyncIterator[World]:
    """A connected, ready WanBot over a production Runtime built from `settings`.

    `provider` / `downloader` replace what the runtime would build (e.g. short
    timeouts, a scripted DNS resolver); everything else is the production wiring.
    """
    loop = asyncio.get_running_loop()
    quiet = Quiet()
    executor = CountingExecutor(loop, quiet)
    loop.set_default_executor(executor)
    counter = HttpCounter(quiet)
    # As bot.core.http.make_http_session builds it, plus the in-flight counter.
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=100, limit_per_host=30),
        trust_env=False,
        trace_configs=[counter.config],
    )
    rt = Runtime(
        settings,
        clock=clock,
        http=session,
        provider=provider(session) if provider is not None else None,
    )
    if downloader is not None:
        rt.downloader = downloader(session)
    # Pillow work runs in the runtime's own pool: count it too, or fake time jumps
    # over a repair still running and a job "times out" in the middle of it. The pool
    # itself stays (parts of the runtime hold it, e.g. the memory trimmer).
    executor.count_work_of(rt.image_executor)
    # Every database call of the engine and the front end goes through these two.
    store_busy = PokingBusy(quiet)
    store = Counting(rt.jobs, store_busy)
    rt.jobs = store  # type: ignore[assignment]
    rt.engine.store = store  # type: ignore[assignment]
    rt.quotas = Counting(rt.quotas, store_busy)  # type: ignore[assignment]
    # Input downloads too: the HTTP counter sees a request only until its headers
    # arrive, and a large image's body takes longer than a settle's calm.
    rt.downloader = Counting(rt.downloader, store_busy)  # type: ignore[assignment]
    connect: asyncio.Task[None] | None = None
    with endpoints(fake.api_base, fake.gateway_url):
        bot = WanBot(rt, guild_ready_timeout=0.05)  # type: ignore[arg-type]
        bot_requests = BotRequests(bot, quiet.poke)
        try:
            await bot.login(token)
            rt.engine.register_delivery("discord", bot.delivery)
            await rt.start()
            connect = asyncio.create_task(bot.connect(reconnect=False))
            await asyncio.wait_for(bot.wait_until_ready(), timeout=10.0)
            yield World(
                fake,
                apixo,
                bot,
                rt,
                clock,
                settings,
                store,
                store_busy,
                counter,
                executor,
                quiet,
                bot_requests,
            )
        finally:
            await rt.close()
            await bot.close()
            if connect is not None:
                with contextlib.suppress(Exception):
                    await connect
            await session.close()
            executor.shutdown(wait=True)


@contextlib.asynccontextmanager
async def open_world(
    tmp_path: Path,
    clock: FakeClock,
    *,
    complete_after: int | None = 2,
    discord_options: dict[str, Any] | None = None,
    provider: Callable[[Settings, aiohttp.ClientSession], ImageProvider] | None = None,
    downloader: Callable[[Settings, aiohttp.ClientSession], SafeDownloader] | None = None,
    token: str = DISCORD_TOKEN,
    api_key: str = "test-key",
    **settings: Any,
) -> AsyncIterator[World]:
    """The fakes (Discord, APIXO) and a running world over them, for one test.

    APIXO tasks complete on their own at the `complete_after`-th status query
    (None: only when the test says so)."""
    async with (
        FakeDiscord(clock=clock, **(discord_options or {})) as fake,
        FakeApixo(api_key=api_key, complete_after=complete_after) as apixo,
    ):
        config = world_settings(tmp_path, apixo, **settings)
        async with running_world(
            fake,
            apixo,
            config,
            clock,
            provider=(lambda session: provider(config, session)) if provider else None,
            downloader=(lambda session: downloader(config, session)) if downloader else None,
            token=token,
        ) as world:
            yield world
        assert fake.errors == [], f"the fake Discord hit its own bugs: {fake.errors}"

"""Run the real Slack front end (real Bolt over Socket Mode, real slack_sdk) against the
fake Slack, with the real Runtime (engine, SQLite, quotas) and the mock provider, all
on one FakeClock. Time only moves when a test drives it: `drive(check)` waits until
nothing is in flight (Slack Web API calls of the bot, the front end's work after each
ack, store and provider calls, Pillow work), then advances the clock to the next timer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from bot.core.clock import FakeClock
from bot.core.models import Job
from bot.core.ports import SeenEvents
from bot.core.providers.mock import FailureHook, MockProvider
from bot.runtime import Runtime
from bot.slack.bot import SlackBot
from tests.fakes.discord.harness import Busy, build_runtime, settings_for_tests
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack, SlackChannel, SlackUser

T = TypeVar("T")


def count_calls(client: Any, busy: Busy) -> None:
    """The bot's Slack Web API calls (and upload POSTs) count as work in flight."""
    for name in ("api_call", "_upload_file"):
        real = getattr(client, name)

        async def counted(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            busy.count += 1
            try:
                return await _real(*args, **kwargs)
            finally:
                busy.count -= 1

        setattr(client, name, counted)


def keep_results_downloadable(mock: MockProvider) -> None:
    """Real providers serve result URLs for hours; the mock forgets them once fetched."""
    real = mock.download_result
    cache: dict[str, Any] = {}

    async def download_result(url: str, index: int) -> Any:
        if url not in cache:
            cache[url] = await real(url, index)
        return cache[url]

    mock.download_result = download_result  # type: ignore[method-assign]


@dataclass
class SlackRun:
    slack: FakeSlack
    bot: SlackBot
    rt: Runtime
    clock: FakeClock
    busy: Busy
    mock: MockProvider
    hung_before: int = 0  # calls the fake was already hanging when this run began

    def busy_now(self) -> bool:
        # Calls the fake hangs on purpose (hang_next) are not work in flight.
        hanging = len(self.slack.hung) - self.hung_before
        return bool(self.busy.count - hanging or len(self.bot.front.tasks))

    async def settle(self, turns: int = 30, timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        calm = 0
        while calm < turns:
            await asyncio.sleep(0)
            calm = 0 if self.busy_now() else calm + 1
            if loop.time() > end:
                raise AssertionError("work still in flight")

    async def drive(
        self, check: Callable[[], T | None], *, limit: float = 7200.0, timeout: float = 20.0
    ) -> T:
        """Advance fake time timer by timer until `check()` is truthy."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        start = self.clock.monotonic()
        while True:
            await self.settle()
            value = check()
            if value:
                return value
            delay = self.clock.next_deadline()
            spent = self.clock.monotonic() - start
            if spent > limit or loop.time() > give_up:
                raise AssertionError(f"stuck after {spent:.1f} fake seconds")
            if delay is None:
                await asyncio.sleep(0.005)  # real I/O not counted anywhere: let it land
            else:
                await self.clock.advance(max(delay, 0.0))

    async def jobs_of(self, user_id: str, platform: str = "slack") -> list[Job]:
        """The user's jobs, newest first."""
        return await self.rt.jobs.user_jobs(platform, user_id, limit=100)

    async def drive_jobs(self, user_id: str, count: int) -> list[Job]:
        """Until the user has `count` jobs; newest first."""
        found: list[Job] = []

        async def enough() -> bool:
            found[:] = await self.jobs_of(user_id)
            return len(found) >= count

        await self.drive_async(enough)
        return found

    async def drive_done(self, job_id: str) -> Job:
        """Until the job is final, then until its last status edit is over."""
        final: list[Job] = []

        async def done() -> bool:
            final[:] = [await self.job(job_id)]
            return final[0].state.final

        await self.drive_async(done)
        await self.settle()
        return await self.job(job_id)

    async def drive_async(
        self, check: Callable[[], Awaitable[bool]], *, timeout: float = 20.0
    ) -> None:
        """`drive` for a check that must await (the store)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        while True:
            await self.settle()
            if await check():
                return
            if loop.time() > give_up:
                raise AssertionError("the awaited condition never held")
            delay = self.clock.next_deadline()
            if delay is None:
                await asyncio.sleep(0.005)  # real I/O not counted anywhere: let it land
            else:
                await self.clock.advance(max(delay, 0.0))

    async def job(self, job_id: str) -> Job:
        job = await self.rt.jobs.get(job_id)
        assert job is not None
        return job


@contextlib.asynccontextmanager
async def running_slack(
    tmp_path: Path,
    clock: FakeClock,
    slack: FakeSlack,
    *,
    mock: MockProvider | None = None,
    latency: float = 5.0,
    failure_hook: FailureHook | None = None,
    seen_events: SeenEvents | None = None,
    **overrides: Any,
) -> AsyncIterator[SlackRun]:
    """`mock`: the previous run's provider, to keep its tasks across a restart.
    `seen_events`: instead of the runtime's own (one shared by several runs)."""
    settings = settings_for_tests(
        tmp_path / "wanbot.sqlite3",
        slack_bot_token=BOT_TOKEN,
        slack_app_token=APP_TOKEN,
        slack_api_base_url=slack.api_base,
        **overrides,
    )
    async with aiohttp.ClientSession() as session:
        rt, busy, mock = build_runtime(
            settings, clock, session, latency=latency, mock=mock, failure_hook=failure_hook
        )
        bot = SlackBot(
            settings,
            rt.chat,
            http=session,
            provider=rt.provider,
            media=rt.media,
            clock=clock,
            seen_events=seen_events or rt.store.seen_events,
        )
        count_calls(bot.client, busy)
        rt.alert_sinks.add(bot.alerts)  # as bot/fronts.py wires it
        try:
            await rt.start()
            await bot.connect()
            await slack.wait_connected()
            yield SlackRun(slack, bot, rt, clock, busy, mock, len(slack.hung))
        finally:
            await rt.engine.close()
            await bot.close()
            await rt.close()


# -- fixtures (import them into a test module) and helpers


@pytest.fixture
async def slack(clock: FakeClock) -> AsyncIterator[FakeSlack]:
    async with FakeSlack(clock=clock) as server:
        yield server


@pytest.fixture
def member(slack: FakeSlack) -> SlackUser:
    return slack.add_user("alice")


@pytest.fixture
def general(slack: FakeSlack, member: SlackUser) -> SlackChannel:
    return slack.add_channel("general")


@pytest.fixture
async def run(tmp_path: Path, clock: FakeClock, slack: FakeSlack) -> AsyncIterator[SlackRun]:
    async with running_slack(tmp_path, clock, slack) as running:
        yield running


def results(slack: FakeSlack) -> list[Any]:
    """Result files the bot uploaded, in upload order."""
    return [f for f in slack.world.files.values() if f.user == slack.bot_user_id and f.uploaded]


def action_ids(message: dict[str, Any]) -> list[str]:
    return [
        e["action_id"]
        for b in message.get("blocks") or []
        if b.get("type") == "actions"
        for e in b["elements"]
    ]


def has_buttons(message: dict[str, Any]) -> bool:
    return bool(action_ids(message))


def header(message: dict[str, Any]) -> str:
    for block in message.get("blocks") or []:
        if block.get("type") == "header":
            return str(block["text"]["text"])
    return ""

"""Slack events handled once across processes and restarts: real Bolt apps over Socket
Mode against one fake Slack; the database's SeenEvents settles who handles a post.

A "process" here is a complete bot (Runtime, SlackBot, its own Socket Mode connection
and database pool). Two of them on one PostgreSQL database start one job for a post
whose events each reach both. To also follow that job to its result on fake time, the
second pair keeps its jobs on SQLite files of their own and shares only SeenEvents on
PostgreSQL: the harness counts job-store calls as work in flight, not the work share's
wake-ups, so fake time must not run on while jobs are shared.
"""

# ruff: noqa: F811 (the harness's fixtures are imported, then named as arguments)

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.core.clock import FakeClock
from bot.core.models import JobState
from storage.postgres.db import PgDatabase
from storage.postgres.events import PostgresSeenEvents
from tests.fakes.slack import FakeSlack, SlackChannel, SlackUser
from tests.image_corpus import solid
from tests.slack_harness import (  # noqa: F401 (fixtures)
    SlackRun,
    general,
    header,
    member,
    results,
    running_slack,
    slack,
)


async def settle_all(runs: list[SlackRun], turns: int = 30, timeout: float = 10.0) -> None:
    """Until nothing is in flight in any of the runs at once."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    calm = 0
    while calm < turns:
        await asyncio.sleep(0)
        calm = 0 if any(r.busy_now() for r in runs) else calm + 1
        if loop.time() > end:
            raise AssertionError("work still in flight")


async def drive_all(
    runs: list[SlackRun], clock: FakeClock, check: Callable[[], bool], timeout: float = 20.0
) -> None:
    """Advance the shared fake clock timer by timer until `check()` holds."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    while True:
        await settle_all(runs)
        if check():
            return
        if loop.time() > give_up:
            raise AssertionError("the condition never held")
        delay = clock.next_deadline()
        if delay is None:
            await asyncio.sleep(0.005)  # real I/O not counted anywhere: let it land
        else:
            await clock.advance(max(delay, 0.0))


@contextlib.asynccontextmanager
async def two_on_postgresql(
    tmp_path: Path, clock: FakeClock, slack: FakeSlack, pg_url: str
) -> AsyncIterator[tuple[SlackRun, SlackRun]]:
    async with running_slack(tmp_path / "a", clock, slack, database_url=pg_url) as a:
        await slack.wait_sockets(1)
        # One provider for both, as in production: a job submitted by one process may
        # be watched by the other.
        async with running_slack(
            tmp_path / "b", clock, slack, mock=a.mock, database_url=pg_url
        ) as b:
            await slack.wait_sockets(2)  # socket 0 is a's, socket 1 is b's
            yield a, b


async def test_two_bots_on_one_postgresql_start_one_job(
    tmp_path: Path,
    clock: FakeClock,
    slack: FakeSlack,
    pg_url: str,
    general: SlackChannel,
    member: SlackUser,
) -> None:
    # Whole bots on one database, jobs shared: the post is admitted and announced once.
    # Fake time stands still (see the module doc); the next test finishes its job.
    async with two_on_postgresql(tmp_path, clock, slack, pg_url) as (a, b):
        assert (a.rt.store.backend, b.rt.store.backend) == ("postgresql", "postgresql")
        mention, plain = await slack.mention(member, general, "a red fox", to=(0, 1))
        again = [await slack.redeliver(mention, to=1), await slack.redeliver(plain, to=0)]
        for envelope in (mention, plain, *again):
            await slack.acked(envelope)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 20
        while not await a.jobs_of(member.id):
            assert loop.time() < give_up, "no job was started"
            await settle_all([a, b])
        await settle_all([a, b])
        assert len(await a.jobs_of(member.id)) == 1
        posted = [c for c in slack.calls_of("chat.postMessage") if c.args.get("channel")]
        assert len(posted) == 1, posted


@contextlib.asynccontextmanager
async def two_processes(
    tmp_path: Path, clock: FakeClock, slack: FakeSlack, pg_url: str
) -> AsyncIterator[tuple[SlackRun, SlackRun]]:
    async with (
        PgDatabase(pg_url) as pool_a,
        PgDatabase(pg_url) as pool_b,
        running_slack(
            tmp_path / "a", clock, slack, seen_events=PostgresSeenEvents(pool_a, clock)
        ) as a,
    ):
        await slack.wait_sockets(1)
        async with running_slack(
            tmp_path / "b", clock, slack, seen_events=PostgresSeenEvents(pool_b, clock)
        ) as b:
            await slack.wait_sockets(2)  # socket 0 is a's, socket 1 is b's
            yield a, b


async def test_two_processes_get_every_event_of_a_post_and_make_one_job(
    tmp_path: Path,
    clock: FakeClock,
    slack: FakeSlack,
    pg_url: str,
    general: SlackChannel,
    member: SlackUser,
) -> None:
    photo = slack.add_file(member, "cat.png", solid((640, 480)), size=(640, 480))
    async with two_processes(tmp_path, clock, slack, pg_url) as (a, b):
        # The post's two events land at different processes, then Slack retries each
        # at the other: each process sees both events, each event reaches both.
        mention, plain = await slack.mention(
            member, general, "make it snowy", files=[photo], to=(0, 1)
        )
        again = [
            await slack.redeliver(mention, to=1),
            await slack.redeliver(plain, to=0),
        ]
        for envelope in (mention, plain, *again):
            await slack.acked(envelope)
        await drive_all([a, b], clock, lambda: bool(results(slack)))
        jobs = await a.jobs_of(member.id) + await b.jobs_of(member.id)
        [job] = jobs
        owner = a if await a.rt.jobs.get(job.id) else b
        done = await owner.drive_done(job.id)
        await settle_all([a, b])
        assert done.state is JobState.DONE and done.delivered == 1
        assert len(await a.jobs_of(member.id) + await b.jobs_of(member.id)) == 1
    assert len(results(slack)) == 1
    # One status card, in the post's thread; one result upload.
    posted = slack.bot_messages(general.id)
    assert len([m for m in posted if header(m).startswith("✅")]) == 1
    assert {m.get("thread_ts") for m in posted} == {mention.payload["event"]["ts"]}
    assert len(slack.calls_of("files.completeUploadExternal")) == 1


async def test_two_processes_each_handle_their_own_posts(
    tmp_path: Path,
    clock: FakeClock,
    slack: FakeSlack,
    pg_url: str,
    general: SlackChannel,
    member: SlackUser,
) -> None:
    async with two_processes(tmp_path, clock, slack, pg_url) as (a, b):
        # Different posts are different keys: both processes work, one job per post.
        for to in (0, 1, 0):
            for envelope in await slack.mention(member, general, "a lighthouse", to=(to, to)):
                await slack.acked(envelope)
        await drive_all([a, b], clock, lambda: len(results(slack)) == 3)
        assert (len(await a.jobs_of(member.id)), len(await b.jobs_of(member.id))) == (2, 1)


async def test_an_event_again_after_a_restart_is_still_handled_once(
    tmp_path: Path, clock: FakeClock, slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    # SQLite, one process: the memory of the first run is gone, the table is not.
    async with running_slack(tmp_path, clock, slack) as first:
        mention, plain = await slack.mention(member, general, "a red fox")
        await slack.acked(mention)
        await slack.acked(plain)
        [job] = await first.drive_jobs(member.id, 1)
        await first.drive_done(job.id)
        mock = first.mock
    posted = len(slack.bot_messages(general.id))
    async with running_slack(tmp_path, clock, slack, mock=mock) as second:
        again = [await slack.redeliver(mention), await slack.redeliver(plain)]
        for envelope in again:
            await slack.acked(envelope)
        await second.settle()
        assert [j.id for j in await second.jobs_of(member.id)] == [job.id]
    assert len(slack.bot_messages(general.id)) == posted
    assert len(results(slack)) == 1


class BrokenSeenEvents:
    """A database that cannot answer."""

    def __init__(self) -> None:
        self.calls = 0

    async def first_time(self, platform: str, event_id: str) -> bool:
        self.calls += 1
        raise OSError("connection refused")


async def test_a_database_fault_handles_the_post_and_says_so(
    tmp_path: Path,
    clock: FakeClock,
    slack: FakeSlack,
    general: SlackChannel,
    member: SlackUser,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = BrokenSeenEvents()
    async with running_slack(tmp_path, clock, slack, seen_events=broken) as run:
        mention, plain = await slack.mention(member, general, "a red fox")
        await slack.acked(mention)
        await slack.acked(plain)
        await slack.acked(await slack.redeliver(mention))
        with caplog.at_level(logging.WARNING, logger="bot.slack.app"):
            await run.drive(lambda: results(slack))
        assert len(await run.jobs_of(member.id)) == 1
    # This process's memory filtered the event's twin and its retry: one question asked.
    assert broken.calls == 1
    [line] = [r.getMessage() for r in caplog.records if r.name == "bot.slack.app"]
    assert "could not check Slack post" in line and "connection refused" in line

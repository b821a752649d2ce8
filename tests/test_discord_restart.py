"""Restarts: a job in flight is delivered exactly once by the next process, through the
channel (the old interaction token is gone), and buttons keep working."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.core.clock import FakeClock
from bot.core.models import JobState
from bot.core.providers.mock import MockProvider
from tests.engine_doubles import PostThenHang
from tests.fakes.discord import FakeDiscord, FakeUser
from tests.fakes.discord.harness import running_bot


async def test_a_job_in_flight_is_delivered_once_after_a_restart(
    fake: FakeDiscord, clock: FakeClock, tmp_path: Path, alice: FakeUser
) -> None:
    db = tmp_path / "wanbot.sqlite3"
    async with running_bot(fake, db, clock, latency=120) as first:
        interaction = await fake.slash("imagine", alice, {"prompt": "a ship at sea"})
        await first.drive(lambda: first.busy.count == 0 and first.mock.task_count == 1)
        job = await first.latest_job()
        assert job.state is JobState.RUNNING
        mock = first.mock
    restart_seq = fake.last_seq
    async with running_bot(fake, db, clock, mock=mock) as second:
        [message] = await second.wait_results(job.id)
        await second.finish()
        done = await second.job(job.id)
        assert done.state is JobState.DONE and done.delivered == 1
        assert message["channel_id"] == interaction.original_message_id  # its thread
        after = [r for r in fake.requests if r.seq > restart_seq]
        assert not any(r.path.startswith("/webhooks/") for r in after)  # token not reused
        # It was still running at the restart, so it cannot have been posted: no look-up.
        assert not [r for r in after if r.matches("GET", r"/channels/\d+/messages")]
        status_edits = [r for r in after if r.matches("PATCH", r"/channels/\d+/messages/\d+")]
        assert status_edits and status_edits[-1].ok
        assert len(second.result_messages()) == 1


def keep_results_downloadable(mock: MockProvider) -> None:
    """Real providers serve result URLs for hours; the mock forgets them once fetched."""
    real = mock.download_result
    cache: dict[str, Any] = {}

    async def download_result(url: str, index: int) -> Any:
        if url not in cache:
            cache[url] = await real(url, index)
        return cache[url]

    mock.download_result = download_result  # type: ignore[method-assign]


@pytest.mark.parametrize("downtime", [0.0, 20 * 60.0], ids=["at-once", "after-the-nonce-window"])
async def test_a_crash_after_posting_does_not_post_twice(
    fake: FakeDiscord, clock: FakeClock, tmp_path: Path, alice: FakeUser, downtime: float
) -> None:
    # Discord dedupes nonces for a few minutes only: after a longer downtime the
    # results must be found in the thread, not posted again.
    db = tmp_path / "wanbot.sqlite3"
    async with running_bot(fake, db, clock) as first:
        keep_results_downloadable(first.mock)
        hang = PostThenHang(first.bot.delivery)  # the process dies before recording it
        await fake.slash("imagine", alice, {"prompt": "a tower", "count": 2})
        await first.drive(lambda: hang.posted.is_set())
        job = await first.latest_job()
        assert job.state is JobState.DELIVERING
        mock = first.mock
        hang.crash()  # gone without recording (no grace period to wait)
    assert len(fake.threads()) == 1
    await clock.advance(downtime)
    async with running_bot(fake, db, clock, mock=mock) as second:
        await second.finish()
        done = await second.job(job.id)
    assert done.state is JobState.DONE and done.delivered == 2
    [message] = [m for m in fake.messages.values() if m["attachments"] and m["author"]["bot"]]
    assert done.delivery["result_message_ids"] == [message["id"]]
    assert done.delivery["thread_id"] == message["channel_id"]
    assert len(fake.threads()) == 1
    posts = fake.find_requests("POST", rf"/channels/{message['channel_id']}/messages")
    assert len(posts) == 1 and posts[0].json["nonce"] == f"wb{job.id}0"
    [lookup] = fake.find_requests("GET", rf"/channels/{message['channel_id']}/messages")
    assert lookup.query["after"] == message["channel_id"]  # after the status (thread id)


async def test_buttons_posted_before_a_restart_still_work(
    fake: FakeDiscord, clock: FakeClock, tmp_path: Path, alice: FakeUser
) -> None:
    db = tmp_path / "wanbot.sqlite3"
    async with running_bot(fake, db, clock) as first:
        await fake.slash("imagine", alice, {"prompt": "a bridge"})
        [message] = await first.wait_results()
        await first.finish()
        job = await first.latest_job()
    async with running_bot(fake, db, clock) as second:
        reroll = await fake.click(alice, message["id"], f"wanbot:reroll:{job.id}")
        await fake.wait_callback(reroll)
        await second.drive(lambda: len(second.result_messages()) == 2)
        await second.finish()
        again = await second.latest_job()
        assert again.parent_job_id == job.id and again.state is JobState.DONE

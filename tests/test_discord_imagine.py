"""/imagine end to end: the real discord.py client, the fake Discord, the real engine,
storage and the mock provider, on a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core.clock import FakeClock
from bot.core.models import JobState
from tests.fakes.discord import FakeDiscord
from tests.fakes.discord.harness import Running, running_bot


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(clock=clock) as server:
        yield server


@pytest.fixture
async def run(fake: FakeDiscord, clock: FakeClock, tmp_path: Path) -> AsyncIterator[Running]:
    async with running_bot(fake, tmp_path / "wanbot.sqlite3", clock) as running:
        yield running


async def test_imagine_delivers_attachments_in_a_thread(run: Running, fake: FakeDiscord) -> None:
    alice = fake.add_user("alice")
    interaction = await fake.slash("imagine", alice, {"prompt": "a red fox in snow", "count": 2})
    await fake.wait_callback(interaction)
    assert interaction.callback_type == 5  # deferred, public
    assert interaction.ack_real_seconds is not None and interaction.ack_real_seconds < 3.0

    def results() -> list[dict] | None:
        found = [
            m for m in fake.messages.values() if m["attachments"] and m["author"]["bot"]
            and m.get("nonce", "").startswith("wb")
        ]
        return found or None

    [message] = await run.drive(results)
    job = await run.latest_job()
    assert len(message["attachments"]) == 2
    assert message["channel_id"] == interaction.original_message_id  # thread on the status
    thread = fake.channels[message["channel_id"]]
    assert thread.is_thread and thread.parent_id == fake.general.id
    assert all(e["image"]["url"].startswith(fake.base_url) for e in message["embeds"])
    ids = FakeDiscord.custom_ids(message)
    assert f"wanbot:reroll:{job.id}" in ids and f"wanbot:edit:{job.id}:1" in ids
    final = await run.drive(lambda: None)

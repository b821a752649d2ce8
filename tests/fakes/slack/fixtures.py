"""Pytest fixtures for the fake Slack, shared by every Slack test file (import them)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.slack.server import FakeSlack
from tests.fakes.slack.world import SlackChannel, SlackUser


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    """A fake Slack on 127.0.0.1 (real time; pass a FakeClock to FakeSlack for triggers)."""
    async with FakeSlack() as server:
        yield server


# Named apart from the root conftest's Discord fixtures (alice, bob), which would win.
@pytest.fixture
def member(slack: FakeSlack) -> SlackUser:
    """A workspace member (not an admin)."""
    return slack.add_user("alice")


@pytest.fixture
def general(slack: FakeSlack, member: SlackUser) -> SlackChannel:
    """#general with `member` and the bot in it."""
    return slack.add_channel("general")

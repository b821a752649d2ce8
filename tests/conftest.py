"""Shared fixtures. Every test touches only loopback and temporary files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.core.clock import FakeClock
from bot.core.http import make_http_session
from storage.db import Database
from tests.fakes.discord import FakeDiscord, FakeUser
from tests.fakes.discord.harness import Running, running_bot


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "wanbot.sqlite3")
    await database.open()
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture(autouse=True)
def _no_env_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings read the environment: a developer's real keys must never reach tests.
    import os

    for name in list(os.environ):
        if name.startswith(("DISCORD_", "APIXO_", "EVOLINK_", "DASHSCOPE_", "WAN_")):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """The shared HTTP session, as the bot builds it."""
    http = make_http_session()
    yield http
    await http.close()


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeDiscord]:
    """A fake Discord (REST, gateway, CDN) on 127.0.0.1, on the test's clock."""
    async with FakeDiscord(clock=clock) as server:
        yield server


@pytest.fixture
async def run(fake: FakeDiscord, clock: FakeClock, tmp_path: Path) -> AsyncIterator[Running]:
    """The real bot (discord.py over the Runtime) logged in to `fake`."""
    async with running_bot(fake, tmp_path / "wanbot.sqlite3", clock) as running:
        yield running


@pytest.fixture
def alice(fake: FakeDiscord) -> FakeUser:
    return fake.add_user("alice")


@pytest.fixture
def bob(fake: FakeDiscord) -> FakeUser:
    return fake.add_user("bob")

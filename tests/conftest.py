"""Shared fixtures. Every test touches only loopback and temporary files."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from bot.core.clock import FakeClock
from bot.core.engine import JobEngine
from bot.core.http import make_http_session
from storage.sqlite.db import Database
from tests.engine_doubles import (
    RecordingPort,
    Script,
    ScriptedProvider,
    TrackedStore,
    make_engine,
    make_store,
)
from tests.fakes.discord import FakeDiscord, FakeUser
from tests.fakes.discord.harness import Running, running_bot
from tests.pg import pg_cluster, pg_empty_url, pg_url  # noqa: F401 (fixtures)
from tests.store_backends import backend  # noqa: F401 (fixture)


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
def _restore_logging() -> Iterator[None]:
    # Tests that call `bot.cli.main` set up the bot's logging on the (captured, later
    # closed) stderr; a later test logging through it would fail on a closed stream.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture(autouse=True)
def _no_env_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings read the environment: a developer's real keys must never reach tests.
    import os

    for name in list(os.environ):
        if name.startswith(("DISCORD_", "APIXO_", "EVOLINK_", "DASHSCOPE_", "WAN_", "DATABASE_")):
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


# --- the engine over the real SQLite store, a scripted provider and a recording port
# (test modules may define their own fixtures of these names instead)


@pytest.fixture
def store(db: Database, clock: FakeClock) -> TrackedStore:
    return make_store(db, clock)


@pytest.fixture
def provider(clock: FakeClock) -> ScriptedProvider:
    return ScriptedProvider(clock, Script(duration=30.0))


@pytest.fixture
def port() -> RecordingPort:
    return RecordingPort()


@pytest.fixture
async def engine(
    store: TrackedStore, provider: ScriptedProvider, clock: FakeClock, port: RecordingPort
) -> AsyncIterator[JobEngine]:
    engine = make_engine(store, provider, clock, port)
    await engine.start()
    yield engine
    await engine.close()

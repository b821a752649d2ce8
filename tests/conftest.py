"""Shared fixtures. Every test touches only loopback and temporary files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core.clock import FakeClock
from storage.db import Database


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

"""Health and data commands as a server owner meets them: `python -m bot run` against
the fake Discord with METRICS_PORT set, `/healthz` asked over HTTP, and `wanbot backup`
and `wanbot db prune` run beside the live bot."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.fakes.discord import FakeDiscord
from tests.fakes.providers import FakeApixo
from tests.reliability.process import (
    BotProcess,
    bot_environment,
    free_port,
    run_wanbot,
    start_bot,
)

pytestmark = pytest.mark.slow
WAIT = 60.0  # real seconds for one phase on a loaded machine


class GatewayGate:
    """Lets the first gateway connection through; once `cut()`, drops it and holds every
    new one (Discord unreachable) until `restore()`. Installed before the fake starts."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self._open = asyncio.Event()
        self._open.set()
        original = fake._gateway

        async def gated(request: web.Request) -> web.StreamResponse:
            await self._open.wait()
            return await original(request)

        fake._gateway = gated  # type: ignore[method-assign]

    async def cut(self) -> None:
        self._open.clear()
        for conn in list(self.fake._connections):
            await conn.ws.close(code=4000)  # resumable: discord.py reconnects at once

    def restore(self) -> None:
        self._open.set()


async def _health(session: aiohttp.ClientSession, port: int) -> tuple[int, dict[str, Any]]:
    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
        return response.status, json.loads(await response.text())


async def _until_health(
    bot: BotProcess, port: int, want: tuple[int, bool]
) -> tuple[int, dict[str, Any]]:
    """Poll /healthz (another process's state: polled, with a deadline) until its status
    and the Discord front end's `connected` are `want`."""
    loop = asyncio.get_running_loop()
    end = loop.time() + WAIT
    seen: object = None
    async with aiohttp.ClientSession() as session:
        while True:
            assert bot.running, bot.log_text()
            with contextlib.suppress(aiohttp.ClientConnectionError):
                status, body = await _health(session, port)
                seen = (status, body)
                discord = body["checks"]["frontends"]["connected"].get("discord")
                if (status, discord) == want:
                    return status, body
            assert loop.time() < end, f"/healthz never became {want}; last {seen}"
            await asyncio.sleep(0.05)


async def test_healthz_follows_the_discord_gateway_and_data_commands_work_beside_the_bot(
    tmp_path: Path,
) -> None:
    fake = FakeDiscord()
    gate = GatewayGate(fake)
    apixo = FakeApixo(api_key="sk-ops-process")
    port = free_port()
    db = tmp_path / "data" / "wanbot.sqlite3"
    async with fake, apixo:
        env = bot_environment(
            fake,
            apixo,
            token="ops.process.token",
            database=db,
            callback_port=free_port(),
            metrics_port=port,
            metrics_host="127.0.0.1",
        )
        bot = await start_bot(env, tmp_path, tmp_path / "bot.log")
        try:
            _, body = await _until_health(bot, port, (200, True))
            assert body["ok"] and body["failed"] == []

            # A lost gateway: discord.py keeps is_ready() set while it reconnects.
            await gate.cut()
            _, body = await _until_health(bot, port, (503, False))
            assert body["failed"] == ["frontends"]
            gate.restore()
            await _until_health(bot, port, (200, True))

            # A backup is taken while the bot runs (and holds its database lock).
            code, out, err = await run_wanbot("backup", str(tmp_path / "copy.sqlite3"), env=env)
            assert code == 0 and "backed up" in out, err
            with contextlib.closing(sqlite3.connect(tmp_path / "copy.sqlite3")) as copy:
                assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                assert copy.execute("PRAGMA user_version").fetchone()[0] >= 1

            # Pruning is the running bot's job: one line, naming it, and nothing else.
            code, out, err = await run_wanbot("db", "prune", env=env)
            assert code == 1 and "Traceback" not in err
            assert f"PID {bot.proc.pid}" in err and "prunes it by itself" in err
            assert "DATABASE_PATH" not in err  # another file would not help
        finally:
            gate.restore()
            if bot.running:
                assert await bot.stop() == 0, bot.log_text()
        assert "Traceback" not in bot.log_text()

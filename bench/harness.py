"""The bot under test (this process) wired to the world (a child process).

The bot is built the way `wanbot run` builds it (bot.discord.runner.serve): the
real Runtime from Settings (engine, SQLite store, HTTP provider, downloader),
the real WanBot with every cog, logged in to the fake Discord over HTTP and its
gateway websocket. Only the endpoints, the API key and, for time-compressed
runs, the clock differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import ScaledClock
from bot.discord.bot import WanBot
from bot.discord.endpoints import endpoints
from bot.runtime import Runtime
from bot.settings import Settings


@dataclass
class World:
    """Handle on the world process: the URLs it serves and its control API."""

    proc: asyncio.subprocess.Process
    info: dict[str, str]
    http: aiohttp.ClientSession

    async def get(self, path: str) -> Any:
        async with self.http.get(self.info["control"] + path) as response:
            response.raise_for_status()
            return await response.json()

    async def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.http.post(self.info["control"] + path, json=body or {}) as response:
            response.raise_for_status()
            return await response.json()

    async def dispatch(
        self, n: int, *, rate: float, kind: str, label: str | None = None, **extra: Any
    ) -> None:
        """Ask the world to send `n` /imagine interactions at `rate` per second (`extra`:
        count=images per job; with a --big world, big=True for real-sized results and
        inputs=True for an input image each)."""
        body = {"n": n, "rate": rate, "kind": kind, "label": label or kind, **extra}
        await self.post("/dispatch", body)

    async def state(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.get("/state")
        return result


@contextlib.asynccontextmanager
async def world(
    provider: str, users: int, clock: ScaledClock, *, big: bool = False
) -> AsyncIterator[World]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.world",
        "--provider",
        provider,
        "--users",
        str(users),
        "--scale",
        repr(clock.scale),
        "--epoch",
        repr(clock.epoch),
        "--wall",
        repr(clock.wall),
        *(["--big"] if big else []),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        # --big may first make its images (cached in the temporary directory).
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=120 if big else 60)
        if not line:
            raise RuntimeError("the world process did not start (see the log)")
        info = json.loads(line)
        async with aiohttp.ClientSession() as http:
            yield World(proc, info, http)
    finally:
        with contextlib.suppress(Exception):
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout=15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def bot_settings(world: World, provider: str, db_path: Path, **overrides: Any) -> Settings:
    base = world.info["provider_base"]
    values: dict[str, Any] = {
        "wan_provider": provider,
        f"{provider}_api_key": "test-key",
        f"{provider}_base_url": base,
        "evolink_files_url": base,
        "database_path": db_path,
        "download_allowed_hosts": ["127.0.0.1"],
        "discord_api_base_url": world.info["discord_api"],
        "discord_gateway_url": world.info["gateway"],
        **overrides,
    }
    return Settings(_env_file=None, **values)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for the bot's callback server)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class BotUnderTest:
    rt: Runtime
    bot: WanBot


@contextlib.asynccontextmanager
async def running_bot(settings: Settings, clock: ScaledClock | None) -> AsyncIterator[BotUnderTest]:
    """Log in, register the delivery port, start the runtime, connect, wait for ready
    (the order of bot.discord.runner.serve)."""
    rt = Runtime(settings, clock=clock)
    with endpoints(settings.discord_api_base_url, settings.discord_gateway_url):
        bot = WanBot(rt, guild_ready_timeout=0.05)
        connect: asyncio.Task[None] | None = None
        try:
            await rt.open()
            await bot.login("bench-bot-token")
            rt.engine.register_delivery("discord", bot.delivery)
            await rt.start()
            connect = asyncio.create_task(bot.connect(reconnect=False))
            await asyncio.wait_for(bot.wait_until_ready(), timeout=30.0)
            yield BotUnderTest(rt, bot)
        finally:
            await rt.engine.close()
            await bot.close()
            if connect is not None:
                with contextlib.suppress(BaseException):
                    await connect
            await rt.close()


async def wait_for(check: Any, *, timeout: float, every: float = 0.1, what: str = "") -> None:
    """Poll an (async or plain) condition until true; RuntimeError after `timeout` s."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > end:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what or check}")
        await asyncio.sleep(every)

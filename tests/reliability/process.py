"""The bot as a real process (`python -m bot run`), configured only through its
environment, with its logs in a file; and a read-only look at its database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.core.models import Job
from tests.fakes.discord import FakeDiscord
from tests.fakes.providers import FakeApixo


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bot_environment(
    fake: FakeDiscord,
    apixo: FakeApixo,
    *,
    token: str,
    database: Path,
    callback_port: int,
    **extra: Any,
) -> dict[str, str]:
    """What an operator would put in `.env`, pointed at the fakes."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DISCORD_", "APIXO_", "EVOLINK_", "DASHSCOPE_", "WAN_"))
    }
    env.update(
        DISCORD_TOKEN=token,
        DISCORD_API_BASE_URL=fake.api_base,
        DISCORD_GATEWAY_URL=fake.gateway_url,
        WAN_PROVIDER="apixo",
        APIXO_API_KEY=apixo.api_key,
        APIXO_BASE_URL=apixo.base_url,
        DATABASE_PATH=str(database),
        DOWNLOAD_ALLOWED_HOSTS="127.0.0.1",
        CALLBACK_ENABLED="true",
        CALLBACK_PUBLIC_URL=f"http://127.0.0.1:{callback_port}",
        CALLBACK_HOST="127.0.0.1",
        CALLBACK_PORT=str(callback_port),
        LOG_LEVEL="DEBUG",
        LOG_FORMAT="text",
        PYTHONUNBUFFERED="1",
    )
    env.update({name.upper(): str(value) for name, value in extra.items()})
    return env


@dataclass
class BotProcess:
    proc: asyncio.subprocess.Process
    log: Path

    @property
    def running(self) -> bool:
        return self.proc.returncode is None

    async def kill(self) -> int:
        """SIGKILL: no cleanup of any kind runs."""
        self.proc.send_signal(signal.SIGKILL)
        return await self.proc.wait()

    async def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, as a service manager stops it; the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), timeout)

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


async def start_bot(env: dict[str, str], workdir: Path, log: Path) -> BotProcess:
    """`python -m bot run` in `workdir` (no .env there), logs to `log`."""
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            cwd=workdir,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    return BotProcess(proc, log)


def db_rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """A query on the bot's database from outside (WAL lets readers in while it runs)."""
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(path, timeout=5.0)) as conn:
        try:
            return list(conn.execute(sql, params))
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []  # the bot has not migrated it yet
            raise


_JSON_COLUMNS = ("requester", "request", "result_urls", "delivery")


def db_jobs(path: Path) -> list[Job]:
    """Every job as stored, oldest first."""
    columns = list(Job.model_fields)
    jobs = []
    for row in db_rows(path, f"SELECT {', '.join(columns)} FROM jobs ORDER BY created_at, rowid"):
        data = dict(zip(columns, row, strict=True))
        for name in _JSON_COLUMNS:
            data[name] = json.loads(data[name])
        jobs.append(Job.model_validate(data))
    return jobs

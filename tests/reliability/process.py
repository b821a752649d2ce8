"""The bot as a real process (`python -m bot run`), configured only through its
environment, with its logs in a file; and a read-only look at its database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.core.models import Job
from storage.job_rows import READ_COLUMNS, job_from_row
from tests.fakes.discord import FakeDiscord
from tests.fakes.providers import FakeApixo


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Settings of ours a developer's shell may hold; a test process must not inherit them.
OUR_PREFIXES = ("DISCORD_", "APIXO_", "EVOLINK_", "DASHSCOPE_", "WAN_", "DATABASE_", "WANBOT_")


def outside_environment(**values: str) -> dict[str, str]:
    """This process's environment without our settings, plus `values`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(OUR_PREFIXES)}
    env.update(values)
    return env


def wanbot_argv(*args: str, env_file: str | None = os.devnull) -> list[str]:
    """`python -m bot` with an explicit env file (default: an empty one, so a
    developer's own .env never leaks into a test; None: the default `.env` in cwd)."""
    chosen = ["--env-file", env_file] if env_file is not None else []
    return [sys.executable, "-m", "bot", *chosen, *args]


async def run_wanbot(
    *args: str,
    env: dict[str, str],
    cwd: Path | None = None,
    stdin: bytes | None = None,
    env_file: str | None = os.devnull,
    timeout: float = 90.0,
) -> tuple[int, str, str]:
    """Run one `wanbot` command to its end: (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        *wanbot_argv(*args, env_file=env_file),
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(stdin), timeout)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def poll_until(check: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Wait for another process's state: polled, with a deadline (no event to wait on)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():
        assert loop.time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def bot_environment(
    fake: FakeDiscord,
    apixo: FakeApixo,
    *,
    token: str,
    database: Path,
    callback_port: int,
    database_url: str | None = None,
    **extra: Any,
) -> dict[str, str]:
    """What an operator would put in `.env`, pointed at the fakes. With `database_url`
    (PostgreSQL) `database` is not used; `extra` settings go in as given (e.g.
    shard_count=3, shard_ids="0", lease_seconds=3)."""
    env = outside_environment()
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
    if database_url is not None:
        env["DATABASE_URL"] = database_url
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

    @property
    def pid(self) -> int:
        return self.proc.pid

    def pause(self) -> None:
        """SIGSTOP: frozen as a process swapped out or a VM paused; its sockets stay open."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

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


def db_jobs(path: Path) -> list[Job]:
    """Every job as stored, oldest first (decoded as the store decodes rows)."""
    sql = f"SELECT {', '.join(READ_COLUMNS)} FROM jobs ORDER BY created_at, rowid"
    return [job_from_row(row) for row in db_rows(path, sql)]

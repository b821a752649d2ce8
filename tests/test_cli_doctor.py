"""`wanbot doctor` against the fake provider and Discord servers: each problem is named
with its fix, the exit code says whether all is well, and secrets never show."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.ops.doctor import doctor, settings_provider
from bot.settings import Settings, load_settings
from storage.sqlite.db import load_migrations
from storage.sqlite.lock import ProcessLock
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.providers import FakeApixo, Fault

KEY = "sk-apixo-secret-0123456789"
TOKEN = "MTIz.discord-secret-token.abcdefghij"


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_path": tmp_path / "data" / "db.sqlite3",
        "output_dir": tmp_path / "out",
    }
    values.update(overrides)
    return load_settings(env_file=None, **values)


async def _doctor(settings: Settings) -> tuple[int, str]:
    out = io.StringIO()
    code = await doctor(settings, out, settings_provider)
    return code, out.getvalue()


async def test_fresh_mock_setup_passes(tmp_path: Path) -> None:
    code, shown = await _doctor(_settings(tmp_path))
    assert code == 0, shown
    assert "OK    database:" in shown and "does not exist yet; the first start creates it" in shown
    assert not (tmp_path / "data").exists()  # the doctor only reads
    assert "SKIP  discord: DISCORD_TOKEN not set" in shown
    assert "mock provider" in shown
    assert shown.rstrip().endswith("All checks passed.")
    assert (tmp_path / "out").is_dir()


@pytest.mark.parametrize(
    ("fault", "wrong_key", "expected", "fix"),
    [
        (None, True, "apixo refused APIXO_API_KEY (HTTP 401", "copy a valid key"),
        (Fault.http(402), False, "the apixo account has no balance left (HTTP 402", "top up"),
        (Fault.http(403), False, "the apixo key may not use Wan 2.5 (HTTP 403", "enable Wan 2.5"),
    ],
)
async def test_provider_key_problems_say_what_to_fix(
    tmp_path: Path, fault: Fault | None, wrong_key: bool, expected: str, fix: str
) -> None:
    async with FakeApixo(api_key="another-key" if wrong_key else KEY) as fake:
        if fault is not None:
            fake.script_balance_fault(fault)
        settings = _settings(tmp_path, apixo_api_key=KEY, apixo_base_url=fake.base_url)
        code, shown = await _doctor(settings)
    assert code == 1
    assert f"FAIL  provider: {expected}" in shown
    assert f"fix: {fix}" in shown
    assert KEY not in shown
    assert shown.rstrip().endswith("1 check failed.")


async def test_good_key_shows_the_balance(tmp_path: Path) -> None:
    async with FakeApixo(api_key=KEY) as fake:
        settings = _settings(tmp_path, apixo_api_key=KEY, apixo_base_url=fake.base_url)
        code, shown = await _doctor(settings)
    assert code == 0, shown
    assert "OK    provider: apixo accepted the key; balance 74.87" in shown


@pytest.mark.parametrize("content_intent", [True, False])
async def test_discord_token_and_message_content_intent(
    tmp_path: Path, content_intent: bool
) -> None:
    async with FakeDiscord(message_content_allowed=content_intent) as fake:
        settings = _settings(tmp_path, discord_token=TOKEN, discord_api_base_url=fake.api_base)
        code, shown = await _doctor(settings)
        assert {r.path for r in fake.requests} >= {"/users/@me", "/oauth2/applications/@me"}
    assert "OK    discord: token accepted: logged in as wanbot" in shown
    if content_intent:
        assert code == 0, shown
        assert "OK    intents: Message Content intent enabled" in shown
    else:
        assert code == 1
        assert "FAIL  intents: the Message Content intent is off" in shown
        assert "enable MESSAGE CONTENT INTENT" in shown
    assert TOKEN not in shown


async def test_refused_discord_token(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        fake.fail_next("GET", "/users/@me", 401, message="401: Unauthorized")
        settings = _settings(tmp_path, discord_token=TOKEN, discord_api_base_url=fake.api_base)
        code, shown = await _doctor(settings)
    assert code == 1
    assert "FAIL  discord: Discord rejected DISCORD_TOKEN (401 Unauthorized)" in shown
    assert "Reset Token" in shown
    assert TOKEN not in shown


async def test_database_problems(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite3"
    with sqlite3.connect(newer) as conn:
        conn.execute("PRAGMA user_version = 99")
    code, shown = await _doctor(_settings(tmp_path, database_path=newer))
    assert code == 1
    assert "schema version 99, newer than this wanbot knows" in shown

    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"this is not a database" * 100)
    code, shown = await _doctor(_settings(tmp_path, database_path=garbage))
    assert code == 1
    assert "FAIL  database: cannot use" in shown and "fix: check DATABASE_PATH" in shown


async def test_unwritable_output_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, shown = await _doctor(_settings(tmp_path, output_dir=blocker / "out"))
    assert code == 1
    assert "FAIL  output: cannot save images in" in shown and "OUTPUT_DIR" in shown
    # Found in review: the doctor's own probe said "cannot write to ...: File exists".
    code, shown = await _doctor(_settings(tmp_path, output_dir=blocker))
    assert code == 1
    assert f"FAIL  output: {blocker} is a file, not a folder" in shown


async def test_doctor_command_end_to_end(tmp_path: Path) -> None:
    """`python -m bot doctor` as a user runs it: env settings, exit code, nothing secret."""
    async with FakeApixo(api_key="another-key") as apixo, FakeDiscord() as discord:
        env = {
            **os.environ,
            "APIXO_API_KEY": KEY,
            "APIXO_BASE_URL": apixo.base_url,
            "DISCORD_TOKEN": TOKEN,
            "DISCORD_API_BASE_URL": discord.api_base,
            "DATABASE_PATH": str(tmp_path / "db.sqlite3"),
            "OUTPUT_DIR": str(tmp_path / "out"),
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "--env-file",
            os.devnull,  # a developer's own .env must not leak in
            "doctor",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    shown = stdout.decode() + stderr.decode()
    assert process.returncode == 1, shown
    assert "FAIL  provider: apixo refused APIXO_API_KEY" in shown
    assert "OK    intents:" in shown
    assert KEY not in shown and TOKEN not in shown


async def test_the_database_is_only_read(tmp_path: Path) -> None:
    """An old schema is reported, not migrated; a running bot's lock is reported, not
    taken (the doctor may look while the bot runs), and nothing is written."""
    path = tmp_path / "old.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
    before = path.read_bytes()
    holder = ProcessLock(path)
    holder.acquire()
    try:
        code, shown = await _doctor(_settings(tmp_path, database_path=path))
        assert holder.held
    finally:
        holder.release()
    assert code == 0, shown
    latest = len(load_migrations())
    assert f"schema version 1 (the next start upgrades it to {latest}), writable" in shown
    assert f"in use by wanbot (PID {os.getpid()})" in shown
    assert path.read_bytes() == before
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1

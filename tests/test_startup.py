"""Start-up that explains itself, through real `python -m bot` processes: a rejected
token, Discord unreachable (retries, then SIGTERM), settings typos, a missing env
file, --version, a closed stdout pipe, and `wanbot invite`."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from tests.fakes.discord import FakeDiscord
from tests.fakes.loopback import serve_loopback
from tests.reliability.process import (
    db_rows,
    free_port,
    outside_environment,
    run_wanbot,
    wanbot_argv,
)

TOKEN = "bot-token-SECRET-1234567890"


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    defaults = {
        "DATABASE_PATH": str(tmp_path / "db.sqlite3"),
        "OUTPUT_DIR": str(tmp_path / "out"),
        "WAN_PROVIDER": "mock",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    return outside_environment(**{**defaults, **values})


def _discord_env(tmp_path: Path, api_base: str, gateway: str) -> dict[str, str]:
    return _env(
        tmp_path,
        DISCORD_TOKEN=TOKEN,
        DISCORD_API_BASE_URL=api_base,
        DISCORD_GATEWAY_URL=gateway,
    )


class Watched:
    """A running bot process whose stderr is read line by line as it comes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    async def until(self, count: int, text: str, timeout: float = 60.0) -> list[str]:
        """Read stderr until `count` lines contain `text`; those lines."""
        assert self.process.stderr is not None

        async def read() -> list[str]:
            while True:
                found = [line for line in self.lines if text in line]
                if len(found) >= count:
                    return found
                raw = await self.process.stderr.readline()  # type: ignore[union-attr]
                if not raw:
                    raise AssertionError(f"exited before {count}x {text!r}:\n{self.text}")
                self.lines.append(raw.decode().rstrip("\n"))

        try:
            return await asyncio.wait_for(read(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {count}x {text!r} in {timeout} s:\n{self.text}") from None

    async def stop(self) -> int:
        """SIGTERM, as a service manager stops it; the exit code, with stderr read out."""
        assert self.process.stderr is not None
        self.process.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(self.process.stderr.read(), 30)
        self.lines += rest.decode().splitlines()
        return await asyncio.wait_for(self.process.wait(), 30)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


async def _start(env: dict[str, str], cwd: Path) -> Watched:
    process = await asyncio.create_subprocess_exec(
        *wanbot_argv("run"),
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    return Watched(process)


# --- Discord at start-up -------------------------------------------------------------


async def test_a_rejected_token_is_one_line_naming_it_and_exit_2(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        fake.fail_next("GET", "/users/@me", 401, message="401: Unauthorized")
        code, out, err = await run_wanbot(
            "run", env=_discord_env(tmp_path, fake.api_base, fake.gateway_url), cwd=tmp_path
        )
    assert code == 2, err
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if "DISCORD_TOKEN" in line]
    assert "rejected" in line and "Bot -> Reset Token" in line
    assert "discord.com/developers/applications" in line
    assert TOKEN not in out + err
    assert not fake.identifies  # never got as far as the gateway


async def test_discord_unreachable_retries_one_line_each_then_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    port = free_port()  # nothing listens there: connection refused
    env = _discord_env(tmp_path, f"http://127.0.0.1:{port}/api/v10", f"ws://127.0.0.1:{port}/")
    bot = await _start(env, tmp_path)
    try:
        retries = await bot.until(2, "Discord is unreachable")
    finally:
        code = await bot.stop()
    assert code == 0, bot.text
    assert "Traceback" not in bot.text
    assert f"cannot connect to 127.0.0.1:{port}" in retries[0]
    assert "retry 1 in" in retries[0] and "retry 2 in" in retries[1]
    assert TOKEN not in bot.text


async def test_gateway_unreachable_reconnects_one_line_each_then_stops(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:  # REST answers; the gateway address is dead
        env = _discord_env(tmp_path, fake.api_base, f"ws://127.0.0.1:{free_port()}/")
        bot = await _start(env, tmp_path)
        try:
            retries = await bot.until(2, "Discord's gateway is unreachable")
        finally:
            code = await bot.stop()
    assert code == 0, bot.text
    assert "Traceback" not in bot.text
    assert "cannot connect to 127.0.0.1" in retries[0]
    assert "retry 1 in" in retries[0] and "retry 2 in" in retries[1]


def test_a_lost_gateway_is_one_line_per_reconnect() -> None:
    """After a first connection discord.py reconnects by itself, logging a traceback
    each time; the runner's filter turns that into one line naming the cause. (A
    process test would race the fake's own shutdown, which keeps serving old sockets.)"""
    import logging
    from types import SimpleNamespace
    from typing import cast

    from bot.discord.bot import WanBot
    from bot.discord.runner import ReconnectLine

    def reconnect_record() -> logging.LogRecord:
        try:
            raise ConnectionResetError(104, "Connection reset by peer")
        except ConnectionResetError:
            info = sys.exc_info()
        message = "Attempting a reconnect in %.2fs"
        return logging.LogRecord("discord.client", logging.ERROR, "x", 1, message, (1.5,), info)

    connected = ReconnectLine(cast(WanBot, SimpleNamespace(ws=object())))
    record = reconnect_record()
    assert connected.filter(record)
    assert record.getMessage() == (
        "Discord gateway connection lost (ConnectionResetError: [Errno 104] Connection "
        "reset by peer); reconnecting in 1.50s"
    )
    assert (record.exc_info, record.levelname) == (None, "WARNING")
    # Before the first connection the runner's own retry says it: no second line.
    assert not ReconnectLine(cast(WanBot, SimpleNamespace(ws=None))).filter(reconnect_record())


# --- settings ------------------------------------------------------------------------


async def test_a_missing_env_file_is_an_error(tmp_path: Path) -> None:
    code, out, err = await run_wanbot(
        "doctor", env=_env(tmp_path), cwd=tmp_path, env_file="nope.env"
    )
    assert (code, out) == (2, "")
    assert err.strip() == "wanbot: --env-file nope.env: no such file"
    assert not (tmp_path / "db.sqlite3").exists()  # nothing was started


async def test_lookalike_setting_names_are_warned_about_with_the_real_name(
    tmp_path: Path,
) -> None:
    env_file = tmp_path / "my.env"
    env_file.write_text("DISCORD_TOKNE=abc\nPOSTGRES_PASSWORD=not-ours\nLOG_LEVEL=INFO\n")
    env = _env(tmp_path, APIXO_KEY="k", DISCRD_DEV_GUILD_ID="1", UNRELATED_TOOL_HOME="/x")
    code, _, err = await run_wanbot(
        "invite", "--client-id", "42", env=env, cwd=tmp_path, env_file=str(env_file)
    )
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("wanbot: warning:")]
    assert sorted(warnings) == sorted(
        [
            f"wanbot: warning: DISCORD_TOKNE (in {env_file}) is not a wanbot setting: "
            "did you mean DISCORD_TOKEN?",
            "wanbot: warning: APIXO_KEY (in the environment) is not a wanbot setting: "
            "did you mean APIXO_API_KEY?",
            "wanbot: warning: DISCRD_DEV_GUILD_ID (in the environment) is not a wanbot "
            "setting: did you mean DISCORD_DEV_GUILD_ID?",
        ]
    )
    # PATH, HOME, POSTGRES_* and the like are not ours: no noise about them.


def test_lookalike_check_ignores_unrelated_names() -> None:
    from bot.settings import unknown_setting_warnings

    unrelated = [
        *("PATH", "HOME", "USER", "SHELL", "LANG", "TERM", "PWD", "HOSTNAME", "LOGNAME"),
        *("TMPDIR", "TZ", "VIRTUAL_ENV", "PYTHONPATH", "CI", "HTTP_PROXY", "NO_PROXY"),
        *("LC_ALL", "COLUMNS", "DEBUG", "PORT", "POSTGRES_PASSWORD"),
    ]
    assert unknown_setting_warnings(None, dict.fromkeys(unrelated, "x")) == []
    assert unknown_setting_warnings(None, {"discord_token": "x", "WAN_PROVIDER": "mock"}) == []
    [line] = unknown_setting_warnings(None, {"WAN_PROVIDR": "mock"})
    assert "did you mean WAN_PROVIDER?" in line


async def test_version_comes_from_the_package_metadata(tmp_path: Path) -> None:
    from importlib import metadata

    code, out, err = await run_wanbot("--version", env=_env(tmp_path), cwd=tmp_path, env_file=None)
    assert code == 0, err
    assert out.strip() == f"wanbot {metadata.version('wanbot')}"


# --- pipes ---------------------------------------------------------------------------


def test_doctor_into_head_ends_cleanly(tmp_path: Path) -> None:
    """The shell pipeline as a user types it."""
    command = " ".join(wanbot_argv("doctor")) + ' | head -3; echo "status=${PIPESTATUS[0]}"'
    proc = subprocess.run(
        ["bash", "-c", command],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=90,
    )
    shown = proc.stdout.splitlines()
    assert shown[0] == "wanbot doctor" and len(shown) == 4, proc.stdout
    assert shown[-1] in ("status=0", "status=141")  # 141: doctor outlived head
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr


def _reader_gone(tmp_path: Path, *args: str) -> tuple[int, str]:
    """A command whose stdout pipe is closed before it writes: (exit code, stderr)."""
    proc = subprocess.Popen(
        wanbot_argv(*args),
        cwd=tmp_path,
        env=_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=90)
    return proc.returncode, err.decode()


def test_a_reader_gone_before_the_first_line_is_a_quiet_exit(tmp_path: Path) -> None:
    """Deterministic: the pipe's read end is closed before doctor writes anything."""
    code, text = _reader_gone(tmp_path, "doctor")
    assert code == 141  # as if killed by SIGPIPE, like `yes | head`
    assert "Traceback" not in text and "BrokenPipe" not in text
    assert "Exception ignored" not in text


def test_generate_whose_reader_is_gone_keeps_the_images_it_paid_for(tmp_path: Path) -> None:
    """Found in review: `wanbot generate "a cat" | true` saved (and paid for) the image,
    then failed the job over the path line nobody read: three tracebacks, "Something went
    wrong inside the bot", and a ledger saying nothing was charged."""
    code, text = _reader_gone(tmp_path, "generate", "a cat", "--out", str(tmp_path / "g"))
    assert "Traceback" not in text and "went wrong" not in text, text
    assert "Exception ignored" not in text
    assert code == 141  # the images are saved; only their paths went unread
    assert len(list((tmp_path / "g").glob("*.png"))) == 1
    assert db_rows(tmp_path / "db.sqlite3", "SELECT state, delivered FROM jobs") == [("done", 1)]


# --- invite --------------------------------------------------------------------------


def test_invite_permissions_are_exactly_what_the_bot_uses() -> None:
    import discord

    from bot.discord.invite import BOT_PERMISSIONS, bot_permissions
    from bot.discord.permissions import missing_for_job

    granted = bot_permissions()
    assert granted.value == 309237763072  # the number docs/discord.md gives
    names = {needed.name for needed in BOT_PERMISSIONS}
    # Everything checked before a job, in every mode, is asked for at invite time...
    for in_thread in (False, True):
        asked = missing_for_job(
            discord.Permissions.none(), in_thread=in_thread, creates_thread=True
        )
        assert set(asked) <= names | {"View Channel"}
        assert missing_for_job(granted, in_thread=in_thread, creates_thread=True) == []
    # ...plus reading history (replies, re-delivery after a restart), and nothing more.
    assert granted.read_message_history
    assert len(BOT_PERMISSIONS) == len({needed.flag for needed in BOT_PERMISSIONS}) == 7
    assert not (granted.administrator or granted.manage_messages or granted.manage_guild)


def _query(url: str) -> dict[str, list[str]]:
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "discord.com", "/oauth2/authorize")
    return parse_qs(parts.query)


async def test_invite_with_a_client_id_needs_no_token(tmp_path: Path) -> None:
    code, out, err = await run_wanbot(
        "invite", "--client-id", "123456", env=_env(tmp_path), cwd=tmp_path
    )
    assert code == 0, err
    query = _query(out.strip())
    assert query["client_id"] == ["123456"]
    assert query["scope"] == ["bot applications.commands"]
    assert query["permissions"] == ["309237763072"]


async def test_invite_asks_discord_for_the_application_id(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        env = _discord_env(tmp_path, fake.api_base, fake.gateway_url)
        code, out, err = await run_wanbot("invite", env=env, cwd=tmp_path)
        assert code == 0, err
        assert _query(out.strip())["client_id"] == [fake.application_id]
        [asked] = fake.find_requests("GET", "/oauth2/applications/@me")
        assert asked.status == 200

        fake.fail_next("GET", "/oauth2/applications/@me", 401, message="401: Unauthorized")
        code, out, err = await run_wanbot("invite", env=env, cwd=tmp_path)
    assert (code, out) == (2, "")
    assert "DISCORD_TOKEN" in err and "Reset Token" in err and "Traceback" not in err


async def test_invite_without_token_or_client_id_says_what_to_pass(tmp_path: Path) -> None:
    code, out, err = await run_wanbot("invite", env=_env(tmp_path), cwd=tmp_path)
    assert (code, out) == (2, "")
    assert "--client-id" in err and "Traceback" not in err


async def test_an_env_file_that_is_not_text_is_one_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"DISCORD_TOKEN=\xff\xfe\n")  # the default file
    code, out, err = await run_wanbot("doctor", env=_env(tmp_path), cwd=tmp_path, env_file=None)
    assert (code, out) == (2, "")
    assert err.strip() == "wanbot: .env: is not UTF-8 text (byte 14)"


async def test_an_env_file_that_is_a_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    code, _, err = await run_wanbot("doctor", env=_env(tmp_path), cwd=tmp_path, env_file="folder")
    assert code == 2 and "is a directory" in err


def test_a_broken_pipe_that_is_not_stdout_is_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    import bot.cli

    def broken(argv: object) -> int:
        raise BrokenPipeError("a socket, not stdout")

    monkeypatch.setattr(bot.cli, "run_command", broken)
    with pytest.raises(BrokenPipeError):
        bot.cli.main([])


async def test_invite_with_a_page_instead_of_json_says_to_pass_the_id() -> None:
    # A proxy's sign-in page answered with 200: one line and exit 1, no traceback.
    from aiohttp import web

    from bot.discord.invite import InviteError, fetch_application_id

    app = web.Application()

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html>sign in</html>", content_type="text/html")

    app.router.add_get("/oauth2/applications/@me", page)
    runner, port = await serve_loopback(app)
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(InviteError) as caught:
                await fetch_application_id(session, f"http://127.0.0.1:{port}", "tok")
    finally:
        await runner.cleanup()
    assert caught.value.exit_code == 1 and "--client-id" in str(caught.value)

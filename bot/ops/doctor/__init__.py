"""`wanbot doctor`: check the setup and say exactly what to fix.

Checks settings, the output folder, the database, the provider key (a balance
call) and, when configured, the Discord token and its intents and the Slack tokens
(bot/ops/doctor/slack.py; PostgreSQL: pg.py). Each check
prints OK, FAIL (with the fix), WARN (works, but something will be refused; with the
fix; the exit code stays 0) or SKIP. Secrets are never printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from bot.console.delivery import output_problem
from bot.core.clock import SystemClock
from bot.core.download import SafeDownloader
from bot.core.errors import ProviderError
from bot.core.http import call_timeout, make_http_session
from bot.core.ports import ImageProvider
from bot.discord.portal import DISCORD_API, PORTAL, RESET_TOKEN, TOKEN_REJECTED
from bot.ops.doctor.checks import Check, fail, ok, skip, warn
from bot.runtime import build_settings_provider
from bot.settings import ProviderName, Settings
from storage.sqlite.backup import read_only_uri
from storage.sqlite.db import load_migrations
from storage.sqlite.lock import current_holder

# Application flags: the Message Content intent is on (LIMITED: for bots in < 100 servers).
GATEWAY_MESSAGE_CONTENT = 1 << 18
GATEWAY_MESSAGE_CONTENT_LIMITED = 1 << 19
_TIMEOUT_SECONDS = 20.0


# --- settings and files ---------------------------------------------------


def check_settings(settings: Settings) -> list[Check]:
    provider = settings.effective_provider()
    checks = []
    if provider is ProviderName.MOCK:
        checks.append(
            ok(
                "settings",
                "no provider key set: the mock provider makes placeholder images "
                "(set APIXO_API_KEY, EVOLINK_API_KEY or DASHSCOPE_API_KEY for real ones)",
            )
        )
    else:
        how = "WAN_PROVIDER" if settings.wan_provider else "the first key set"
        checks.append(ok("settings", f"provider {provider.value} (chosen by {how})"))
    if settings.callback_enabled:
        url = settings.callback_public_url or ""
        if not url.startswith("https://"):
            checks.append(
                fail(
                    "callbacks",
                    f"CALLBACK_PUBLIC_URL is {url or 'empty'}; providers only call https addresses",
                    "set CALLBACK_PUBLIC_URL to the public https address that reaches "
                    f"{settings.callback_host}:{settings.callback_port}, or CALLBACK_ENABLED=false",
                )
            )
        else:
            checks.append(ok("callbacks", f"providers will call {url}"))
    if provider is ProviderName.APIXO:
        checks.append(check_media(settings))
    return checks


def check_media(settings: Settings) -> Check:
    """APIXO fetches input images from public URLs only: files and Slack images need the
    bot to serve them (bot/media.py), which needs a public address."""
    reach = f"{settings.callback_host}:{settings.callback_port}"
    base = settings.media_base_url()
    if base is None:
        return warn(
            "media",
            "apixo only fetches input images from public URLs and no public address is "
            "set, so images from local files and Slack are refused (nothing charged); "
            "links and Discord attachments still work",
            f"set MEDIA_PUBLIC_URL to the public https address that reaches {reach} "
            "(CALLBACK_HOST:CALLBACK_PORT) and make that port reachable from the internet",
        )
    if not base.startswith("https://"):
        return warn(
            "media",
            f"input images are served at {base}/media/... over plain http; "
            "apixo may refuse to fetch them",
            f"put an https address that reaches {reach} in MEDIA_PUBLIC_URL",
        )
    return ok("media", f"input images for apixo are served at {base}/media/... (from {reach})")


async def check_output_dir(folder: Path) -> Check:
    # The same check `console` and `generate` make before anything is sent.
    if problem := await asyncio.to_thread(output_problem, folder):
        return fail(
            "output", problem, "set OUTPUT_DIR to a folder you can write to, or fix its permissions"
        )
    return ok("output", f"images are saved in {folder}")


async def check_database(path: Path) -> Check:
    """Reads only: opened read-only, never migrated, the process lock not taken (a
    running bot keeps its database; the doctor may look while it runs)."""
    return await asyncio.to_thread(_inspect_database, path)


def _inspect_database(path: Path) -> Check:
    latest = len(load_migrations())
    holder = current_holder(path)
    in_use = ""
    if holder is not None:
        in_use = f"; in use by wanbot (PID {holder.pid})" if holder.pid else "; in use"
    if not path.exists():
        folder = _nearest_existing(path.parent)
        if not os.access(folder, os.W_OK | os.X_OK):
            return fail(
                "database",
                f"{path} does not exist and cannot be created ({folder} is not writable)",
                "check DATABASE_PATH and the folder's permissions",
            )
        return ok("database", f"{path} does not exist yet; the first start creates it")
    try:
        uri = read_only_uri(path.resolve())
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5.0)) as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > latest:
                return fail(
                    "database",
                    f"{path} has schema version {version}, newer than this wanbot knows ({latest})",
                    "upgrade wanbot, or point DATABASE_PATH at another file",
                )
            row = conn.execute("PRAGMA quick_check").fetchone()
    except sqlite3.Error as exc:  # not a database, unreadable, locked...
        return fail(
            "database",
            f"cannot use {path}: {exc}",
            "check DATABASE_PATH, the folder's permissions and free disk space; "
            "is another program holding a lock on it?",
        )
    if row is None or row[0] != "ok":
        return fail(
            "database",
            f"{path} is damaged ({row[0] if row else 'no answer'})",
            "restore it from a backup, or move it away to start a new one",
        )
    # The file and its folder (for the -wal and -shm files) must be writable for a start.
    if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)):
        return fail(
            "database",
            f"{path} can be read but not written",
            "give the user running wanbot write access to the file and its folder",
        )
    schema = "current" if version == latest else f"the next start upgrades it to {latest}"
    return ok("database", f"{path} opens, schema version {version} ({schema}), writable{in_use}")


def _nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


# --- provider ---------------------------------------------------------------

_KEY_ENV = {
    ProviderName.APIXO: "APIXO_API_KEY",
    ProviderName.EVOLINK: "EVOLINK_API_KEY",
    ProviderName.DASHSCOPE: "DASHSCOPE_API_KEY",
}
_BASE_ENV = {
    ProviderName.APIXO: "APIXO_BASE_URL",
    ProviderName.EVOLINK: "EVOLINK_BASE_URL",
    ProviderName.DASHSCOPE: "DASHSCOPE_BASE_URL",
}


def _provider_fix(provider: ProviderName, exc: ProviderError) -> tuple[str, str]:
    """(what is wrong, how to fix it) for a failed balance call."""
    env = _KEY_ENV.get(provider, "the provider key")
    name = provider.value
    status = f"HTTP {exc.status}" if exc.status else exc.code
    said = f"; {name} said: {exc.message}" if exc.message else ""
    if exc.status == 401:
        return (
            f"{name} refused {env} ({status}: the key is wrong, revoked or expired{said})",
            f"copy a valid key from your {name} account into .env as {env}=... "
            "(no quotes or spaces around it)",
        )
    if exc.status == 402:
        return (
            f"the {name} account has no balance left ({status}{said})",
            f"top up your {name} account; jobs fail with a billing error until then",
        )
    if exc.status == 403:
        region = (
            " DashScope keys are per region: a Beijing key needs "
            "DASHSCOPE_BASE_URL=https://dashscope.aliyuncs.com/api/v1."
            if provider is ProviderName.DASHSCOPE
            else ""
        )
        return (
            f"the {name} key may not use Wan 2.5 ({status}: access denied{said})",
            f"enable Wan 2.5 image models for this key in your {name} account.{region}",
        )
    if exc.status is None and exc.code == "connect_failed":
        return (
            f"could not reach {name} ({exc.message or exc.code})",
            f"check your network and {_BASE_ENV.get(provider, 'the base URL')}",
        )
    return (
        f"the {name} balance call failed ({status}{said})",
        f"check {_BASE_ENV.get(provider, 'the base URL')} and the provider's status page; "
        "run `wanbot doctor` again later",
    )


async def check_provider(settings: Settings, provider: ImageProvider) -> Check:
    name = settings.effective_provider()
    try:
        balance = await asyncio.wait_for(provider.balance(), _TIMEOUT_SECONDS)
    except ProviderError as exc:
        detail, fix = _provider_fix(name, exc)
        return fail("provider", detail, fix)
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        base = _BASE_ENV[name]
        return fail(
            "provider",
            f"could not reach {name.value} at {getattr(settings, base.lower())}: "
            f"{type(exc).__name__} {exc}".rstrip(),
            f"check your network and {base}",
        )
    if balance is None:
        return ok(
            "provider",
            f"{name.value}: key set; this provider has no balance call, "
            "so the first job will prove the key",
        )
    if balance <= 0:
        return fail(
            "provider",
            f"{name.value} accepted the key but the balance is {balance:g}",
            f"top up your {name.value} account; jobs fail with a billing error until then",
        )
    return ok("provider", f"{name.value} accepted the key; balance {balance:g}")


# --- Discord ------------------------------------------------------------------


async def _discord_get(
    session: aiohttp.ClientSession, base: str, path: str, token: str
) -> tuple[int, Any]:
    async with session.get(
        f"{base.rstrip('/')}{path}",
        headers={"Authorization": f"Bot {token}"},
        timeout=call_timeout(_TIMEOUT_SECONDS, 10),
    ) as response:
        body: Any = None
        if response.content_type == "application/json":
            body = await response.json(content_type=None)
        return response.status, body


async def check_discord(settings: Settings, session: aiohttp.ClientSession) -> list[Check]:
    if settings.discord_token is None:
        return [skip("discord", "DISCORD_TOKEN not set: `wanbot run` starts the console")]
    token = settings.discord_token.get_secret_value()
    base = settings.discord_api_base_url or DISCORD_API
    try:
        status, me = await _discord_get(session, base, "/users/@me", token)
        if status == 401:
            return [fail("discord", TOKEN_REJECTED, RESET_TOKEN)]
        if status != 200 or not isinstance(me, dict):
            return [
                fail(
                    "discord",
                    f"GET /users/@me answered HTTP {status}",
                    f"check DISCORD_API_BASE_URL ({base}) and Discord's status page",
                )
            ]
        checks = [ok("discord", f"token accepted: logged in as {me.get('username', '?')}")]
        status, app = await _discord_get(session, base, "/oauth2/applications/@me", token)
        if status != 200 or not isinstance(app, dict):
            checks.append(
                fail(
                    "intents",
                    f"GET /oauth2/applications/@me answered HTTP {status}",
                    "check that DISCORD_TOKEN is a bot token of your application",
                )
            )
        else:
            checks.append(_check_intents(int(app.get("flags") or 0)))
        if settings.discord_dev_guild_id is not None:
            checks.append(await _check_guild(session, base, token, settings.discord_dev_guild_id))
        return checks
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        return [
            fail(
                "discord",
                f"could not reach Discord at {base}: {type(exc).__name__} {exc}".rstrip(),
                "check your network (and DISCORD_API_BASE_URL if you set it)",
            )
        ]


def _check_intents(flags: int) -> Check:
    if flags & (GATEWAY_MESSAGE_CONTENT | GATEWAY_MESSAGE_CONTENT_LIMITED):
        return ok("intents", "Message Content intent enabled (replies can edit images)")
    return fail(
        "intents",
        "the Message Content intent is off: replying to an image to edit it cannot work",
        f"{PORTAL} -> your app -> Bot -> Privileged Gateway Intents -> "
        "enable MESSAGE CONTENT INTENT, then save",
    )


async def _check_guild(
    session: aiohttp.ClientSession, base: str, token: str, guild_id: int
) -> Check:
    status, guild = await _discord_get(session, base, f"/guilds/{guild_id}", token)
    if status == 200 and isinstance(guild, dict):
        return ok("dev server", f"the bot is in {guild.get('name', guild_id)}")
    return fail(
        "dev server",
        f"the bot cannot see server {guild_id} from DISCORD_DEV_GUILD_ID (HTTP {status})",
        "invite the bot to that server (OAuth2 URL with scopes bot and "
        "applications.commands), or fix DISCORD_DEV_GUILD_ID",
    )


# --- the command --------------------------------------------------------------

ProviderFactory = Callable[[Settings, aiohttp.ClientSession], Awaitable[ImageProvider]]


def print_check(check: Check, out: TextIO) -> None:
    out.write(f"  {check.status:<5} {check.name}: {check.detail}\n")
    if check.fix:
        out.write(f"        fix: {check.fix}\n")
    out.flush()


async def doctor(settings: Settings, out: TextIO, build_provider: ProviderFactory) -> int:
    out.write("wanbot doctor\n")
    checks: list[Check] = []

    def report(*found: Check) -> None:
        for check in found:
            checks.append(check)
            print_check(check, out)

    report(*check_settings(settings))
    report(await check_output_dir(settings.output_dir))
    if settings.database_url is not None:
        from bot.ops.doctor.pg import check_postgres

        report(await check_postgres(settings.database_url.get_secret_value()))
    else:
        report(await check_database(settings.database_path))
    async with make_http_session() as session:
        if settings.effective_provider() is ProviderName.MOCK:
            report(skip("provider", "mock provider: no key to check"))
        else:
            report(await check_provider(settings, await build_provider(settings, session)))
        report(*await check_discord(settings, session))
        if settings.slack_bot_token is not None or settings.slack_app_token is not None:
            from bot.ops.doctor.slack import check_slack

            report(*await check_slack(settings, session))
    failed = sum(check.failed for check in checks)
    if failed:
        out.write(f"{failed} check{'s' if failed != 1 else ''} failed.\n")
        return 1
    warned = sum(check.status == "WARN" for check in checks)
    if warned:
        out.write(f"All checks passed ({warned} warning{'s' if warned != 1 else ''}).\n")
        return 0
    out.write("All checks passed.\n")
    return 0


async def settings_provider(settings: Settings, session: aiohttp.ClientSession) -> ImageProvider:
    """The provider exactly as the bot builds it (nothing else of the runtime is needed)."""
    downloader = SafeDownloader(session, settings.download_allowed_hosts)
    return build_settings_provider(settings, SystemClock(), session, downloader)


def run_doctor(settings: Settings) -> int:
    return asyncio.run(doctor(settings, sys.stdout, settings_provider))

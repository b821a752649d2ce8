"""Entry points for `wanbot run` (Discord) and `wanbot sync`.

The bot logs in (REST), registers its delivery port, starts the runtime (which
resumes stored jobs, now that their front end is there), then connects to the
gateway and runs until SIGINT/SIGTERM. Slash commands are never synced on start:
`wanbot sync [--guild ID]` does it on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
from collections.abc import Callable
from typing import Protocol

import aiohttp
import discord
from discord.utils import MISSING

from bot.core.retry import Backoff, Stopped, one_line, retry_until_stopped
from bot.discord.alerts import DiscordAlerts
from bot.discord.bot import WanBot
from bot.discord.endpoints import use_endpoints
from bot.discord.portal import RESET_TOKEN, TOKEN_REJECTED
from bot.discord.shards import all_shards_connected, build_bot, is_sharded
from bot.lifecycle import run_until_stopped
from bot.runtime import Runtime
from bot.settings import Settings
from storage.factory import build_identify_gate

log = logging.getLogger(__name__)


class BesideFrontEnd(Protocol):
    """Another front end on the same runtime (Slack): built before `rt.start()`."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


Beside = Callable[[Runtime], BesideFrontEnd]


def apply_endpoint_settings(settings: Settings) -> None:
    """DISCORD_API_BASE_URL / DISCORD_GATEWAY_URL (a fake or self-hosted Discord)."""
    if settings.discord_api_base_url or settings.discord_gateway_url:
        use_endpoints(settings.discord_api_base_url, settings.discord_gateway_url)
        log.warning(
            "talking to a non-default Discord: REST %s, gateway %s",
            settings.discord_api_base_url or "(default)",
            settings.discord_gateway_url or "(default)",
        )


REJECTED_TOKEN = f"wanbot: {TOKEN_REJECTED}: {RESET_TOKEN}"
GATEWAY_AUTH_FAILED = 4004  # gateway close code: the token was refused
# Login (REST) while Discord is unreachable: 1 s, 2 s, 4 s ... then every 30-60 s.
LOGIN_BACKOFF = Backoff(base=1.0, cap=60.0, jitter=0.5)


def gateway_connected(bot: WanBot) -> bool:
    """For /healthz. discord.py keeps `is_ready()` true while it reconnects after a lost
    gateway (it clears it only on close), so the socket itself must be open too (every
    shard's, when sharded)."""
    if not bot.is_ready() or bot.is_closed():
        return False
    if isinstance(bot, discord.AutoShardedClient):
        return all_shards_connected(bot)
    ws = bot.ws
    return ws is not None and ws.open


def unreachable(exc: BaseException) -> str | None:
    """A one-line reason when `exc` means Discord could not be reached or is failing
    (worth waiting out); None for anything else (a bug, a refused token)."""
    if isinstance(exc, discord.LoginFailure):
        return None
    if isinstance(exc, discord.DiscordServerError):
        return f"Discord answered HTTP {exc.status}"
    if isinstance(exc, discord.GatewayNotFound):
        return "Discord did not give a gateway address"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port} ({one_line(exc.os_error)})"
    if isinstance(exc, TimeoutError | aiohttp.ClientError | OSError):
        return one_line(exc)
    return None


def _announce_retry(reason: str, retry: int, delay: float) -> None:
    log.warning("Discord is unreachable: %s; retry %d in %.1f s", reason, retry, delay)


def _announce_gateway_retry(reason: str, retry: int, delay: float) -> None:
    log.warning("Discord's gateway is unreachable: %s; retry %d in %.1f s", reason, retry, delay)


def first_connect_failed(bot: WanBot, exc: BaseException) -> str | None:
    """Why the first gateway connection failed, when worth retrying. After one
    connection discord.py reconnects by itself; before it, discord.py 2.7 cannot:
    its retry reads the missing socket's sequence and dies with AttributeError (the
    connection error is that exception's context). A sharded bot retries each shard's
    connection by itself and closes before raising: nothing to retry then."""
    if bot.ws is not None or is_sharded(bot):
        return None
    if isinstance(exc, AttributeError) and exc.__context__ is not None:
        return unreachable(exc.__context__)
    return unreachable(exc)


async def _login(bot: WanBot, token: str) -> None:
    try:
        await bot.login(token)
    except Exception:
        # discord.py opens a new HTTP session per login attempt on one shared connector:
        # close this attempt's (which closes the connector) and let the next build both.
        await bot.http.close()
        bot.http.connector = MISSING
        raise


class ReconnectLine(logging.Filter):
    """discord.py logs each gateway reconnect with a full traceback; an outage is
    expected, so make it one line that still names the cause. Before the first
    connection the line is dropped: `first_connect_failed` retries and says so. Its
    "logging in" line shows once, not again with every login retry."""

    def __init__(self, bot: WanBot) -> None:
        super().__init__()
        self._bot = bot
        self._logged_in_once = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "logging in using static token":
            shown, self._logged_in_once = self._logged_in_once, True
            return not shown
        if record.msg == "Attempting a reconnect in %.2fs" and record.exc_info:
            if self._bot.ws is None:
                return False
            cause = one_line(record.exc_info[1])
            record.msg = f"Discord gateway connection lost ({cause}); reconnecting in %.2fs"
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = None
            record.exc_text = None
        elif record.msg in _SHARD_LINES and record.exc_info:
            # discord.shard retries each shard by itself; one line, with the cause.
            cause = one_line(record.exc_info[1]).replace("%", "%%")
            record.msg = f"{_SHARD_LINES[record.msg]} ({cause})"
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = None
            record.exc_text = None
        return True


# discord.py's shard lines (shard.py) and what they say instead.
_SHARD_LINES = {
    "Attempting a reconnect for shard ID %s in %.2fs": (
        "Discord gateway connection lost for shard %s; reconnecting in %.2fs"
    ),
    "Failed to connect for shard_id: %s. Retrying...": (
        "Discord's gateway is unreachable for shard %s; retrying in 5 s"
    ),
}


def _token(settings: Settings) -> str | None:
    if settings.discord_token is None:
        print(
            "wanbot: DISCORD_TOKEN is not set (create a bot in the Discord developer "
            "portal; see docs/discord.md)",
            file=sys.stderr,
        )
        return None
    return settings.discord_token.get_secret_value()


def run_discord(settings: Settings, beside: Beside | None = None) -> int:
    token = _token(settings)
    if token is None:
        return 2
    apply_endpoint_settings(settings)
    return asyncio.run(run_until_stopped(functools.partial(serve, settings, token, beside=beside)))


async def serve(
    settings: Settings, token: str, stop: asyncio.Event, *, beside: Beside | None = None
) -> int:
    """Run the bot until `stop` is set or the gateway connection ends for good."""
    rt = Runtime(settings)
    bot = build_bot(
        rt,
        shard_count=settings.shard_count,
        shard_ids=settings.shard_ids,
        gate=build_identify_gate(rt.store, rt.clock),
        metrics=rt.metrics,
    )
    if settings.shard_count is not None:
        log.info(
            "running shard(s) %s of %d",
            ", ".join(map(str, settings.shard_ids or range(settings.shard_count))),
            settings.shard_count,
        )
    other = beside(rt) if beside is not None else None  # registered before rt.start()
    rt.alert_sinks.add(
        DiscordAlerts(bot, rt.chat.configs)
    )  # the alerts channel, else the owner's DMs
    connect: asyncio.Task[None] | None = None
    stopping = asyncio.create_task(stop.wait(), name="stop-signal")
    gateway_log = logging.getLogger("discord.client")
    shard_log = logging.getLogger("discord.shard")
    quiet_reconnects = ReconnectLine(bot)
    gateway_log.addFilter(quiet_reconnects)
    shard_log.addFilter(quiet_reconnects)
    try:
        await rt.open()
        try:
            await retry_until_stopped(
                functools.partial(_login, bot, token),
                classify=unreachable,
                stop=stop,
                clock=rt.clock,
                on_retry=_announce_retry,
                backoff=LOGIN_BACKOFF,
            )
        except discord.LoginFailure:
            print(REJECTED_TOKEN, file=sys.stderr)
            return 2
        except Stopped:
            return 0
        rt.health.watch_frontend("discord", functools.partial(gateway_connected, bot))
        await rt.start()
        if other is not None:
            await other.start()
        connect = asyncio.create_task(
            retry_until_stopped(
                bot.connect,
                classify=functools.partial(first_connect_failed, bot),
                stop=stop,
                clock=rt.clock,
                on_retry=_announce_gateway_retry,
                backoff=LOGIN_BACKOFF,
            ),
            name="discord-gateway",
        )
        done, _ = await asyncio.wait({connect, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if connect in done:
            return _gateway_exit(connect)
        return 0
    finally:
        gateway_log.removeFilter(quiet_reconnects)
        shard_log.removeFilter(quiet_reconnects)
        stopping.cancel()
        # Engine first (jobs stay stored for the next start), then Discord, then the rest.
        await rt.engine.close()
        if other is not None:
            await other.close()
        await bot.close()
        if connect is not None and not connect.done():
            connect.cancel()
        if connect is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await connect
        await rt.close()
        log.info("stopped")


def _gateway_exit(connect: asyncio.Task[None]) -> int:
    exc = connect.exception()
    if exc is None or isinstance(exc, Stopped):
        return 0
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        log.error(
            "Discord refused a privileged intent: turn on 'Message Content Intent' in the "
            "developer portal (Bot page), or leave it off there entirely"
        )
    elif isinstance(exc, discord.ConnectionClosed) and exc.code == GATEWAY_AUTH_FAILED:
        print(REJECTED_TOKEN, file=sys.stderr)
        return 2
    elif isinstance(exc, discord.ConnectionClosed):
        # A close code Discord documents as final (bad intents, sharding): no traceback.
        log.error("Discord closed the gateway connection: code %s %s", exc.code, exc.reason)
    else:
        log.error("the Discord connection ended: %s", exc, exc_info=exc)
    return 1


def run_sync(settings: Settings, guild_id: int | None = None) -> int:
    token = _token(settings)
    if token is None:
        return 2
    apply_endpoint_settings(settings)
    target = guild_id if guild_id is not None else settings.discord_dev_guild_id
    return asyncio.run(sync_commands(settings, token, target))


async def sync_commands(settings: Settings, token: str, guild_id: int | None) -> int:
    """Register the slash commands: in one server (instant) or globally (slow to show)."""
    rt = Runtime(settings)  # never started: only the provider's capabilities are needed
    bot = WanBot(rt, metrics=rt.metrics)
    try:
        await bot.login(token)  # runs setup_hook: the cogs add their commands
        if guild_id is not None:
            guild = discord.Object(id=guild_id)
            bot.tree.copy_global_to(guild=guild)
            synced = await bot.tree.sync(guild=guild)
            print(f"Synced {len(synced)} commands to server {guild_id} (visible at once).")
        else:
            synced = await bot.tree.sync()
            print(
                f"Synced {len(synced)} commands globally (Discord may take a while to show them)."
            )
        return 0
    except discord.LoginFailure:
        print(REJECTED_TOKEN, file=sys.stderr)
        return 2
    except Exception as exc:
        reason = unreachable(exc)
        if reason is None and not isinstance(exc, discord.HTTPException):
            raise
        print(f"wanbot: sync failed: {reason or one_line(exc)}", file=sys.stderr)
        return 1
    finally:
        await bot.close()
        await rt.close()

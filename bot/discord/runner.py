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

import discord

from bot.discord.bot import WanBot
from bot.discord.endpoints import use_endpoints
from bot.lifecycle import run_until_stopped
from bot.runtime import Runtime
from bot.settings import Settings

log = logging.getLogger(__name__)


def apply_endpoint_settings(settings: Settings) -> None:
    """DISCORD_API_BASE_URL / DISCORD_GATEWAY_URL (a fake or self-hosted Discord)."""
    if settings.discord_api_base_url or settings.discord_gateway_url:
        use_endpoints(settings.discord_api_base_url, settings.discord_gateway_url)
        log.warning(
            "talking to a non-default Discord: REST %s, gateway %s",
            settings.discord_api_base_url or "(default)",
            settings.discord_gateway_url or "(default)",
        )


def _token(settings: Settings) -> str | None:
    if settings.discord_token is None:
        print(
            "wanbot: DISCORD_TOKEN is not set (create a bot in the Discord developer "
            "portal; see docs/discord.md)",
            file=sys.stderr,
        )
        return None
    return settings.discord_token.get_secret_value()


def run_discord(settings: Settings) -> int:
    token = _token(settings)
    if token is None:
        return 2
    apply_endpoint_settings(settings)
    return asyncio.run(run_until_stopped(functools.partial(serve, settings, token)))


async def serve(settings: Settings, token: str, stop: asyncio.Event) -> int:
    """Run the bot until `stop` is set or the gateway connection ends for good."""
    rt = Runtime(settings)
    bot = WanBot(rt, price_per_image=settings.price_per_image_usd)
    connect: asyncio.Task[None] | None = None
    stopping = asyncio.create_task(stop.wait(), name="stop-signal")
    try:
        await rt.open()
        try:
            await bot.login(token)
        except discord.LoginFailure:
            log.error("Discord refused DISCORD_TOKEN: check it in the developer portal")
            return 1
        rt.engine.register_delivery("discord", bot.delivery)
        await rt.start()
        connect = asyncio.create_task(bot.connect(), name="discord-gateway")
        done, _ = await asyncio.wait({connect, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if connect in done:
            return _gateway_exit(connect)
        return 0
    finally:
        stopping.cancel()
        # Engine first (jobs stay stored for the next start), then Discord, then the rest.
        await rt.engine.close()
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
    if exc is None:
        return 0
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        log.error(
            "Discord refused a privileged intent: turn on 'Message Content Intent' in the "
            "developer portal (Bot page), or leave it off there entirely"
        )
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
    bot = WanBot(rt, price_per_image=settings.price_per_image_usd)
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
        print("wanbot: Discord refused DISCORD_TOKEN", file=sys.stderr)
        return 1
    except discord.HTTPException as exc:
        print(f"wanbot: sync failed: {exc}", file=sys.stderr)
        return 1
    finally:
        await bot.close()
        await rt.close()

"""WanBot: the discord.py client, thin over the core.

Cogs are discovered in the `cogs` package and loaded in `setup_hook`; the result
buttons are DynamicItems registered there too, so they work after a restart.
Commands are never synced on start (`wanbot sync` does it on purpose).
"""

from __future__ import annotations

import gc
import importlib
import logging
import pkgutil
from typing import Any

import discord
from discord.ext import commands

from bot.chat.service import ChatService
from bot.core.metrics import EngineMetrics
from bot.core.models import Space
from bot.discord.context import DiscordRuntime
from bot.discord.front import DiscordFront
from bot.discord.surface import DiscordSurface
from bot.discord.tree import WanTree
from bot.discord.views import ResultButton

log = logging.getLogger(__name__)

COGS_PACKAGE = "cogs"
# Objects allocated (net) before a young-generation GC pass (CPython's default: 700).
YOUNG_GENERATION = 20_000


def discover_cogs(package: str = COGS_PACKAGE) -> list[str]:
    """Every module of the cogs package that defines `setup(bot)`, by name."""
    pkg = importlib.import_module(package)
    names = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.ispkg or info.name.startswith("_"):
            continue
        name = f"{package}.{info.name}"
        if hasattr(importlib.import_module(name), "setup"):
            names.append(name)
    return names


def base_intents() -> discord.Intents:
    """Guilds (channels, threads, roles), guild messages (replies that mention the bot)
    and message content, which is dropped at login when the portal switch is off."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.message_content = True
    return intents


class WanBot(commands.Bot):
    def __init__(
        self,
        rt: DiscordRuntime,
        *,
        chat: ChatService | None = None,
        guild_ready_timeout: float = 2.0,
        cogs: list[str] | None = None,
        metrics: EngineMetrics | None = None,
        **client_options: Any,
    ) -> None:
        """`client_options`: more discord.py client options (the sharded bot's
        shard_count and shard_ids)."""
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=base_intents(),
            help_command=None,
            tree_cls=WanTree,
            guild_ready_timeout=guild_ready_timeout,
            allowed_mentions=discord.AllowedMentions.none(),
            **client_options,
        )
        self.rt = rt
        if isinstance(self.tree, WanTree):
            self.tree.clock = rt.clock
        chat = chat or rt.chat
        self.surface = DiscordSurface(self, rt.clock, rt.image_executor)
        # The one delivery path for Discord jobs, and the engine's port for them.
        self.delivery = chat.add_surface(self.surface)
        self.front = DiscordFront(chat, self.surface)
        self.message_content = True
        self._cog_names = cogs
        self._metrics = metrics

    def observe_ack(self, interaction: discord.Interaction) -> None:
        """Called by respond.py right after an interaction's first answer."""
        if self._metrics is not None:
            waited = discord.utils.utcnow() - interaction.created_at
            self._metrics.interaction_ack("discord", waited.total_seconds())

    async def report_error(self, interaction: discord.Interaction, error: BaseException) -> None:
        """Answer an error from a button or modal like the tree answers command errors."""
        tree = self.tree
        assert isinstance(tree, WanTree)
        await tree.report(interaction, error)

    async def setup_hook(self) -> None:
        self._check_message_content()
        for name in self._cog_names if self._cog_names is not None else discover_cogs():
            await self.load_extension(name)
        self.add_dynamic_items(ResultButton)
        log.info("loaded %d cogs, %d commands", len(self.cogs), len(self.tree.get_commands()))

    def _check_message_content(self) -> None:
        flags = self.application_flags
        self.message_content = bool(
            flags.gateway_message_content or flags.gateway_message_content_limited
        )
        if not self.message_content:
            # Asking for a privileged intent the portal does not grant closes the gateway
            # (4014): drop it before connecting. discord.py offers no public setter.
            self._connection._intents.message_content = False
            log.warning(
                "the Message Content intent is off in the developer portal: replies that "
                "mention the bot can only use images attached to the reply itself "
                "(/help explains; 'Edit image' in the message menu always works)"
            )

    async def on_ready(self) -> None:
        # Everything loaded so far lives as long as the process: keep it out of the
        # garbage collector's full passes, which otherwise stall the loop for 100+ ms
        # with thousands of jobs in flight.
        gc.freeze()
        # Most of a job's objects die young (requests, answers): with a larger young
        # generation they are freed before a pass ever sees them, so few survive into
        # the full passes. Measured in `bench scale` (2,000 jobs in flight): GC time
        # 0.25-0.40 -> 0.06 ms per job, longest loop stall 107-125 -> 36 ms.
        _, middle, old = gc.get_threshold()
        gc.set_threshold(YOUNG_GENERATION, middle, old)
        log.info("connected as %s to %d server(s)", self.user, len(self.guilds))

    async def on_message(self, message: discord.Message) -> None:
        # No prefix commands: replies are handled by the edit cog's listener.
        return

    async def on_guild_available(self, guild: discord.Guild) -> None:
        # Warm the settings cache so interaction checks need no database round trip.
        space = Space(platform="discord", id=str(guild.id))
        self.rt.tasks.create_task(self.front.chat.configs.get(space), name=f"config-{guild.id}")

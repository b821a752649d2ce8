"""Per-server settings, cached so interaction checks need no database round trip."""

from __future__ import annotations

import discord

from bot.core.errors import NotAllowed
from bot.core.models import GuildConfig
from bot.core.ports import QuotaAdmin


class GuildConfigs:
    """Write-through cache of `GuildConfig` (only this process changes them)."""

    def __init__(self, quotas: QuotaAdmin) -> None:
        self._quotas = quotas
        self._cache: dict[str, GuildConfig] = {}

    def peek(self, guild_id: str) -> GuildConfig | None:
        return self._cache.get(guild_id)

    async def get(self, guild_id: str) -> GuildConfig:
        config = self._cache.get(guild_id)
        if config is None:
            config = await self._quotas.guild_config(guild_id)
            self._cache[guild_id] = config
        return config

    async def save(self, config: GuildConfig) -> None:
        await self._quotas.set_guild_config(config)
        self._cache[config.guild_id] = config


def home_channel_id(channel: object) -> int | None:
    """The channel a message or interaction belongs to; for a thread, its parent."""
    if isinstance(channel, discord.Thread):
        return channel.parent_id
    return getattr(channel, "id", None)


def require_allowed_channel(config: GuildConfig, channel: object) -> None:
    if not config.allowed_channel_ids:
        return
    home = home_channel_id(channel)
    if home is not None and str(home) in config.allowed_channel_ids:
        return
    listed = ", ".join(f"<#{cid}>" for cid in config.allowed_channel_ids)
    raise NotAllowed(
        f"Images can't be made in this channel on this server. Use {listed}.",
        code="channel_not_allowed",
    )

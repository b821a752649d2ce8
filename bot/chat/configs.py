"""Per-space settings (`GuildConfig`), cached so instant checks need no database trip."""

from __future__ import annotations

from bot.chat.style import Style
from bot.core.errors import NotAllowed
from bot.core.models import GuildConfig, Space
from bot.core.ports import QuotaAdmin


class SpaceConfigs:
    """Write-through cache (only this process changes a space's settings)."""

    def __init__(self, quotas: QuotaAdmin) -> None:
        self._quotas = quotas
        self._cache: dict[Space, GuildConfig] = {}

    def peek(self, space: Space) -> GuildConfig | None:
        return self._cache.get(space)

    async def get(self, space: Space) -> GuildConfig:
        config = self._cache.get(space)
        if config is None:
            config = await self._quotas.guild_config(space)
            self._cache[space] = config
        return config

    async def save(self, config: GuildConfig) -> None:
        await self._quotas.set_guild_config(config)
        self._cache[Space(platform=config.platform, id=config.guild_id)] = config


def require_allowed_channel(config: GuildConfig, home_channel_id: str | None, style: Style) -> None:
    """`home_channel_id`: the channel asked in (for a thread, its parent)."""
    if not config.allowed_channel_ids:
        return
    if home_channel_id is not None and home_channel_id in config.allowed_channel_ids:
        return
    listed = ", ".join(style.channel(cid) for cid in config.allowed_channel_ids)
    raise NotAllowed(
        f"Images can't be made in this channel here. Use {listed}.", code="channel_not_allowed"
    )

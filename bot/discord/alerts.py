"""Admin alerts on Discord (`bot.core.ports.AdminAlerts`): a message in the channel set
with `/config alerts`, else a direct message to the server's owner.

Throttling (one per cause, server and hour) and logging happen in the core
(`bot.core.alerts`); this only delivers, and says whether a person was told.
"""

from __future__ import annotations

import logging

import discord

from bot.chat.configs import SpaceConfigs
from bot.chat.wording import clip
from bot.core.alerts import alert_text
from bot.core.models import AdminAlert, Space

log = logging.getLogger(__name__)

_NO_MENTIONS = discord.AllowedMentions.none()


class DiscordAlerts:
    def __init__(self, client: discord.Client, configs: SpaceConfigs) -> None:
        self._bot = client
        self._configs = configs

    async def alert(self, alert: AdminAlert) -> bool:
        if alert.guild_id is None or alert.platform not in (None, "discord"):
            return False  # not a Discord server's: the log (and any console) has it
        text = clip(alert_text(alert), 1800)
        config = await self._configs.get(Space(platform="discord", id=alert.guild_id))
        if config.alerts_channel_id:
            channel = self._bot.get_partial_messageable(
                int(config.alerts_channel_id), guild_id=int(alert.guild_id)
            )
            try:
                await channel.send(content=text, allowed_mentions=_NO_MENTIONS)
                return True
            except discord.HTTPException as exc:
                log.warning(
                    "server %s: the alerts channel refused the alert (%s); telling the owner",
                    alert.guild_id,
                    exc,
                )
        return await self._tell_owner(alert.guild_id, text)

    async def _tell_owner(self, guild_id: str, text: str) -> bool:
        owner_id = await self._owner_id(guild_id)
        if owner_id is None:
            log.warning("server %s: no owner known to tell", guild_id)
            return False
        try:
            dm = await self._bot.create_dm(discord.Object(id=owner_id))
            await dm.send(
                content=f"{text}\n(Server {guild_id}. Choose a channel for these with "
                "`/config alerts`.)",
                allowed_mentions=_NO_MENTIONS,
            )
            return True
        except discord.HTTPException as exc:
            # 50007: the owner does not take DMs from the bot.
            log.warning("server %s: could not DM the owner (%s)", guild_id, exc)
            return False

    async def _owner_id(self, guild_id: str) -> int | None:
        guild = self._bot.get_guild(int(guild_id))
        if guild is not None and guild.owner_id:
            return guild.owner_id
        try:
            return (await self._bot.fetch_guild(int(guild_id))).owner_id
        except discord.HTTPException:
            return None

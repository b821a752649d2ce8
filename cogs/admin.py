"""/quota and /config: server admins' controls.

`default_permissions(manage_guild=True)` only hides the commands by default and a
server can override it, so every command is checked in code too (here, and again by
the chat layer).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat import wording
from bot.chat.cards import Card
from bot.core.errors import NotAllowed
from bot.core.models import Period
from bot.discord.bot import WanBot
from bot.discord.conversation import DiscordConversation
from bot.discord.embeds import STYLE
from bot.discord.front import DiscordFront
from bot.discord.permissions import is_admin
from bot.discord.reports import spend_chart_file
from bot.discord.respond import defer

MANAGE_GUILD = discord.Permissions(manage_guild=True)
ADMINS = "server admins (the **Manage Server** permission)"
PeriodName = Literal["day", "week", "month"]
Said = Callable[[DiscordConversation], Awaitable[Card | str]]


class AdminOnly(app_commands.CheckFailure):
    def __init__(self) -> None:
        super().__init__(wording.admin_only(STYLE, ADMINS))


def _period(name: str | None) -> Period | None:
    return Period(name) if name else None


class Admin(commands.Cog):
    quota = app_commands.Group(
        name="quota",
        description="Image quotas on this server (admins)",
        guild_only=True,
        default_permissions=MANAGE_GUILD,
    )
    config = app_commands.Group(
        name="config",
        description="The bot's settings on this server (admins)",
        guild_only=True,
        default_permissions=MANAGE_GUILD,
    )

    def __init__(self, bot: WanBot, front: DiscordFront) -> None:
        self.bot = bot  # the client's caches name users on the report's chart
        self.front = front
        self.admin = front.chat.admin

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.guild_id is None or not is_admin(interaction.permissions):
            raise AdminOnly()
        return True

    async def _say(self, interaction: discord.Interaction, said: Said) -> None:
        await self.front.answer_card(interaction, said)

    # ----------------------------------------------------------------- /quota
    @quota.command(name="set", description="Set a member's own image limit")
    @app_commands.describe(limit="Images per period", period="Default: the server's period")
    async def quota_set(
        self,
        interaction: discord.Interaction,
        user: discord.Member,
        limit: app_commands.Range[int, 0, 100_000],
        period: PeriodName | None = None,
    ) -> None:
        uid = str(user.id)
        await self._say(
            interaction, lambda c: self.admin.set_user_limit(c, uid, limit, _period(period))
        )

    @quota.command(
        name="clear", description="Remove a member's own limit (role/server limits apply)"
    )
    async def quota_clear(self, interaction: discord.Interaction, user: discord.Member) -> None:
        await self._say(interaction, lambda c: self.admin.clear_user_limit(c, str(user.id)))

    @quota.command(name="grant", description="Give a member extra images for this period")
    async def quota_grant(
        self,
        interaction: discord.Interaction,
        user: discord.Member,
        images: app_commands.Range[int, 1, 100_000],
    ) -> None:
        await self._say(interaction, lambda c: self.admin.grant(c, str(user.id), images))

    @quota.command(name="block", description="Stop a member from making images")
    async def quota_block(
        self,
        interaction: discord.Interaction,
        user: discord.Member,
        reason: app_commands.Range[str, 1, 200] | None = None,
    ) -> None:
        await self._say(interaction, lambda c: self.admin.block(c, str(user.id), reason))

    @quota.command(name="unblock", description="Let a blocked member make images again")
    async def quota_unblock(self, interaction: discord.Interaction, user: discord.Member) -> None:
        await self._say(interaction, lambda c: self.admin.unblock(c, str(user.id)))

    @quota.command(name="report", description="Images and cost on this server this month")
    async def quota_report(self, interaction: discord.Interaction) -> None:
        await defer(interaction, ephemeral=True)
        conv = self.front.conversation(interaction)
        card, report = await self.admin.report(conv)
        chart = await spend_chart_file(self.bot, self.front.chat.deps, interaction.guild, report)
        if chart is not None:
            card.image_urls = [f"attachment://{chart.filename}"]
        await conv.answer(card, files=[chart] if chart is not None else [])

    @quota.command(name="budget", description="Monthly image budget for the whole server")
    @app_commands.describe(images="Images per month; leave empty to remove the budget")
    async def quota_budget(
        self,
        interaction: discord.Interaction,
        images: app_commands.Range[int, 0, 10_000_000] | None = None,
    ) -> None:
        await self._say(interaction, lambda c: self.admin.set_budget(c, images))

    @quota.command(name="role", description="Image limit for members with a role")
    @app_commands.describe(limit="Images per period; leave empty to remove the role's limit")
    async def quota_role(
        self,
        interaction: discord.Interaction,
        role: discord.Role,
        limit: app_commands.Range[int, 0, 100_000] | None = None,
        period: PeriodName | None = None,
    ) -> None:
        if role.is_default():
            # Members' role lists never include @everyone, so such a limit would never apply.
            raise NotAllowed(
                "@everyone can't have a role limit: use `/quota default` to set the limit "
                "for everyone without a limit of their own.",
                code="default_role",
            )
        rid, name = str(role.id), role.mention
        await self._say(
            interaction,
            lambda c: self.admin.set_role_limit(c, rid, name, limit, _period(period)),
        )

    @quota.command(name="default", description="The limit for everyone without another limit")
    async def quota_default(
        self,
        interaction: discord.Interaction,
        limit: app_commands.Range[int, 0, 100_000],
        period: PeriodName = "day",
    ) -> None:
        await self._say(interaction, lambda c: self.admin.set_default(c, limit, Period(period)))

    # ---------------------------------------------------------------- /config
    @config.command(name="show", description="The bot's settings on this server")
    async def config_show(self, interaction: discord.Interaction) -> None:
        await self._say(interaction, self.admin.show_config)

    @config.command(name="alerts", description="Where the bot tells admins about trouble")
    @app_commands.describe(
        channel="Post alerts here; leave empty to send them to the server owner by DM"
    )
    async def config_alerts(
        self, interaction: discord.Interaction, channel: discord.TextChannel | None = None
    ) -> None:
        if channel is not None:
            me = channel.guild.me
            if me is not None and not channel.permissions_for(me).send_messages:
                raise NotAllowed(
                    f"I can't post in {channel.mention}: give the bot Send Messages there "
                    "first. Nothing was changed.",
                    code="alerts_channel",
                )
        chosen = str(channel.id) if channel is not None else None
        await self._say(interaction, lambda c: self.admin.set_alerts(c, chosen))

    @config.command(name="delivery", description="Post results in a thread or in the channel")
    async def config_delivery(
        self, interaction: discord.Interaction, mode: Literal["thread", "inline"]
    ) -> None:
        await self._say(interaction, lambda c: self.admin.set_delivery(c, mode))

    @config.command(
        name="normalization", description="Repair input images the service would refuse"
    )
    @app_commands.describe(enabled="Resize, convert and shrink images so they are accepted")
    async def config_normalization(self, interaction: discord.Interaction, enabled: bool) -> None:
        await self._say(interaction, lambda c: self.admin.set_normalization(c, enabled))

    @config.command(name="channels", description="Where /imagine may be used")
    @app_commands.describe(action="add or remove a channel, or clear the list (everywhere)")
    async def config_channels(
        self,
        interaction: discord.Interaction,
        action: Literal["add", "remove", "clear"],
        channel: discord.TextChannel | None = None,
    ) -> None:
        chosen = str(channel.id) if channel is not None else None
        await self._say(interaction, lambda c: self.admin.change_channels(c, action, chosen))

    @config.command(name="exempt", description="Whether admins are exempt from quotas")
    async def config_exempt(self, interaction: discord.Interaction, enabled: bool) -> None:
        await self._say(interaction, lambda c: self.admin.set_exempt(c, enabled))


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, WanBot)
    await bot.add_cog(Admin(bot, bot.front))

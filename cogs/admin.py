"""/quota and /config: server admins' controls.

`default_permissions(manage_guild=True)` only hides the commands by default and a
server can override it, so every command also checks the member's permissions
from the interaction payload in code.
"""

from __future__ import annotations

from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.errors import NotAllowed
from bot.core.models import Period
from bot.discord import render
from bot.discord.bot import WanBot
from bot.discord.permissions import is_admin
from bot.discord.reports import spend_chart_file
from bot.discord.respond import answer, defer

MANAGE_GUILD = discord.Permissions(manage_guild=True)
PeriodName = Literal["day", "week", "month"]


class AdminOnly(app_commands.CheckFailure):
    def __init__(self) -> None:
        super().__init__(
            "Only server admins (the **Manage Server** permission) can change quotas and "
            "settings. Use `/usage` to see your own quota."
        )


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

    def __init__(self, bot: WanBot) -> None:
        self.bot = bot

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.guild_id is None or not is_admin(interaction.permissions):
            raise AdminOnly()
        return True

    @staticmethod
    def _guild(interaction: discord.Interaction) -> str:
        return str(interaction.guild_id)

    async def _done(self, interaction: discord.Interaction, text: str) -> None:
        await answer(interaction, text, ephemeral=True)

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
        await defer(interaction, ephemeral=True)
        await self.bot.rt.quotas.set_user_limit(
            self._guild(interaction), str(user.id), limit, Period(period) if period else None
        )
        per = f" per {period}" if period else ""
        await self._done(interaction, f"{user.mention} may now make {limit} images{per}.")

    @quota.command(
        name="clear", description="Remove a member's own limit (role/server limits apply)"
    )
    async def quota_clear(self, interaction: discord.Interaction, user: discord.Member) -> None:
        await defer(interaction, ephemeral=True)
        await self.bot.rt.quotas.clear_user_limit(self._guild(interaction), str(user.id))
        await self._done(interaction, f"{user.mention} is back on the role or server limit.")

    @quota.command(name="grant", description="Give a member extra images for this period")
    async def quota_grant(
        self,
        interaction: discord.Interaction,
        user: discord.Member,
        images: app_commands.Range[int, 1, 100_000],
    ) -> None:
        await defer(interaction, ephemeral=True)
        await self.bot.rt.quotas.grant(
            self._guild(interaction), str(user.id), images, str(interaction.user.id)
        )
        await self._done(interaction, f"Granted {images} extra images to {user.mention}.")

    @quota.command(name="block", description="Stop a member from making images")
    async def quota_block(
        self,
        interaction: discord.Interaction,
        user: discord.Member,
        reason: app_commands.Range[str, 1, 200] | None = None,
    ) -> None:
        await defer(interaction, ephemeral=True)
        await self.bot.rt.quotas.block(self._guild(interaction), str(user.id), reason)
        await self._done(interaction, f"{user.mention} can no longer make images here.")

    @quota.command(name="unblock", description="Let a blocked member make images again")
    async def quota_unblock(self, interaction: discord.Interaction, user: discord.Member) -> None:
        await defer(interaction, ephemeral=True)
        await self.bot.rt.quotas.unblock(self._guild(interaction), str(user.id))
        await self._done(interaction, f"{user.mention} can make images again.")

    @quota.command(name="report", description="Images and cost on this server this month")
    async def quota_report(self, interaction: discord.Interaction) -> None:
        await defer(interaction, ephemeral=True)
        report = await self.bot.rt.quotas.server_report(self._guild(interaction))
        embed = render.server_report_embed(report)
        chart = await spend_chart_file(self.bot, interaction.guild, report)
        if chart is not None:
            embed.set_image(url=f"attachment://{chart.filename}")
        await answer(interaction, embed=embed, file=chart, ephemeral=True)

    @quota.command(name="budget", description="Monthly image budget for the whole server")
    @app_commands.describe(images="Images per month; leave empty to remove the budget")
    async def quota_budget(
        self,
        interaction: discord.Interaction,
        images: app_commands.Range[int, 0, 10_000_000] | None = None,
    ) -> None:
        await defer(interaction, ephemeral=True)
        await self.bot.rt.quotas.set_server_budget(self._guild(interaction), images)
        text = "No server budget." if images is None else f"Server budget: {images} images a month."
        await self._done(interaction, text)

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
        await defer(interaction, ephemeral=True)
        guild = self._guild(interaction)
        if limit is None:
            await self.bot.rt.quotas.clear_role_limit(guild, str(role.id))
            await self._done(interaction, f"{role.mention} no longer has its own limit.")
            return
        await self.bot.rt.quotas.set_role_limit(
            guild, str(role.id), limit, Period(period) if period else None
        )
        await self._done(interaction, f"Members with {role.mention} may make {limit} images.")

    @quota.command(name="default", description="The limit for everyone without another limit")
    async def quota_default(
        self,
        interaction: discord.Interaction,
        limit: app_commands.Range[int, 0, 100_000],
        period: PeriodName = "day",
    ) -> None:
        await defer(interaction, ephemeral=True)
        await self.bot.rt.quotas.set_server_default(self._guild(interaction), limit, Period(period))
        await self._done(interaction, f"Everyone may make {limit} images per {period}.")

    # ---------------------------------------------------------------- /config
    @config.command(name="show", description="The bot's settings on this server")
    async def config_show(self, interaction: discord.Interaction) -> None:
        await defer(interaction, ephemeral=True)
        cfg = await self.bot.configs.get(self._guild(interaction))
        channels = ", ".join(f"<#{c}>" for c in cfg.allowed_channel_ids) or "everywhere"
        text = (
            f"Results: **{cfg.delivery_mode}**\n"
            f"Repair input images: **{'on' if cfg.normalize_images else 'off'}**\n"
            f"Allowed channels: {channels}\n"
            f"Admins exempt from quotas: **{'yes' if cfg.admin_exempt else 'no'}**\n"
            f"Admin alerts: {alerts_place(cfg.alerts_channel_id)}"
        )
        await self._done(interaction, text)

    @config.command(name="alerts", description="Where the bot tells admins about trouble")
    @app_commands.describe(
        channel="Post alerts here; leave empty to send them to the server owner by DM"
    )
    async def config_alerts(
        self, interaction: discord.Interaction, channel: discord.TextChannel | None = None
    ) -> None:
        await defer(interaction, ephemeral=True)
        if channel is not None:
            me = channel.guild.me
            if me is not None and not channel.permissions_for(me).send_messages:
                await self._done(
                    interaction,
                    f"I can't post in {channel.mention}: give the bot Send Messages there "
                    "first. Nothing was changed.",
                )
                return
        cfg = await self.bot.configs.get(self._guild(interaction))
        chosen = str(channel.id) if channel is not None else None
        await self.bot.configs.save(cfg.model_copy(update={"alerts_channel_id": chosen}))
        await self._done(
            interaction,
            f"Admin alerts (provider billing or key trouble, long outages, the budget "
            f"used up) now go to {alerts_place(chosen)}, at most one per kind an hour.",
        )

    @config.command(name="delivery", description="Post results in a thread or in the channel")
    async def config_delivery(
        self, interaction: discord.Interaction, mode: Literal["thread", "inline"]
    ) -> None:
        await defer(interaction, ephemeral=True)
        cfg = await self.bot.configs.get(self._guild(interaction))
        await self.bot.configs.save(cfg.model_copy(update={"delivery_mode": mode}))
        where = "a thread on the status message" if mode == "thread" else "the channel"
        await self._done(interaction, f"Results will be posted in {where}.")

    @config.command(
        name="normalization", description="Repair input images the service would refuse"
    )
    @app_commands.describe(enabled="Resize, convert and shrink images so they are accepted")
    async def config_normalization(self, interaction: discord.Interaction, enabled: bool) -> None:
        await defer(interaction, ephemeral=True)
        cfg = await self.bot.configs.get(self._guild(interaction))
        await self.bot.configs.save(cfg.model_copy(update={"normalize_images": enabled}))
        state = "repaired where possible" if enabled else "used as they are, or refused"
        await self._done(interaction, f"Input images will be {state}.")

    @config.command(name="channels", description="Where /imagine may be used")
    @app_commands.describe(action="add or remove a channel, or clear the list (everywhere)")
    async def config_channels(
        self,
        interaction: discord.Interaction,
        action: Literal["add", "remove", "clear"],
        channel: discord.TextChannel | None = None,
    ) -> None:
        await defer(interaction, ephemeral=True)
        cfg = await self.bot.configs.get(self._guild(interaction))
        allowed = list(cfg.allowed_channel_ids)
        if action == "clear":
            allowed = []
        elif channel is None:
            await self._done(interaction, f"Pick the channel to {action}.")
            return
        elif action == "add" and str(channel.id) not in allowed:
            allowed.append(str(channel.id))
        elif action == "remove" and str(channel.id) in allowed:
            allowed.remove(str(channel.id))
        await self.bot.configs.save(cfg.model_copy(update={"allowed_channel_ids": allowed}))
        listed = ", ".join(f"<#{c}>" for c in allowed) or "every channel"
        await self._done(interaction, f"Images can be made in {listed}.")

    @config.command(name="exempt", description="Whether admins are exempt from quotas")
    async def config_exempt(self, interaction: discord.Interaction, enabled: bool) -> None:
        await defer(interaction, ephemeral=True)
        cfg = await self.bot.configs.get(self._guild(interaction))
        await self.bot.configs.save(cfg.model_copy(update={"admin_exempt": enabled}))
        state = "exempt from" if enabled else "subject to"
        await self._done(interaction, f"Admins are now {state} quotas.")


def alerts_place(channel_id: str | None) -> str:
    return f"<#{channel_id}>" if channel_id else "the server owner, by direct message"


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, WanBot)
    await bot.add_cog(Admin(bot))

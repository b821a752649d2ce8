"""/usage: how many images I have left, and when that resets."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord import render
from bot.discord.bot import WanBot
from bot.discord.jobs import JobOrigin
from bot.discord.respond import answer, defer


class Usage(commands.Cog):
    def __init__(self, bot: WanBot) -> None:
        self.bot = bot

    @app_commands.command(name="usage", description="Your image quota on this server")
    @app_commands.guild_only()
    async def usage(self, interaction: discord.Interaction) -> None:
        origin = JobOrigin.from_interaction(interaction)
        await defer(interaction, ephemeral=True)
        requester = origin.requester()
        assert requester.guild_id is not None
        report = await self.bot.rt.quotas.usage(
            requester.guild_id, requester.user_id, requester.role_ids, requester.is_admin
        )
        await answer(interaction, embed=render.usage_embed(report), ephemeral=True)


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, WanBot)
    await bot.add_cog(Usage(bot))

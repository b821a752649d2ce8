"""/usage: how many images I have left, and when that resets."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.bot import WanBot
from bot.discord.front import DiscordFront


class Usage(commands.Cog):
    def __init__(self, front: DiscordFront) -> None:
        self.front = front

    @app_commands.command(name="usage", description="Your image quota on this server")
    @app_commands.guild_only()
    async def usage(self, interaction: discord.Interaction) -> None:
        await self.front.answer_card(interaction, self.front.chat.admin.usage)


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, WanBot)
    await bot.add_cog(Usage(bot.front))

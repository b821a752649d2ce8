"""/help: what the bot does and how to use it here."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.cards import help_card
from bot.discord import embeds
from bot.discord.bot import WanBot


class Help(commands.Cog):
    def __init__(self, bot: WanBot) -> None:
        self.bot = bot  # whether the bot can read other people's messages

    @app_commands.command(name="help", description="How to make and edit images with the bot")
    async def help(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(embed=self.embed(), ephemeral=True)

    def embed(self) -> discord.Embed:
        reply = (
            "Reply to a message with an image, mention me and say what to change."
            if self.bot.message_content
            else "Reply to a message, mention me and attach the image to your reply. "
            "(This bot can't read other people's messages: its Message Content intent is "
            "off, so it only sees images attached to the reply itself.)"
        )
        card = help_card(
            self.bot.front.caps,
            embeds.STYLE,
            imagine="`/imagine prompt [negative] [aspect] [count] [image1..]`",
            edit_how=f"Right-click (long-press) a message → **Apps → Edit image**.\n{reply}",
        )
        return embeds.embed(card)


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, WanBot)
    await bot.add_cog(Help(bot))

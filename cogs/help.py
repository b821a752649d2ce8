"""/help: what the bot does and how to use it here."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord import render
from bot.discord.bot import WanBot


class Help(commands.Cog):
    def __init__(self, bot: WanBot) -> None:
        self.bot = bot

    @app_commands.command(name="help", description="How to make and edit images with the bot")
    async def help(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(embed=self.embed(), ephemeral=True)

    def embed(self) -> discord.Embed:
        caps = self.bot.rt.provider.capabilities
        ratios = ", ".join(dict.fromkeys([*caps.aspect_ratios_t2i, *caps.aspect_ratios_i2i]))
        embed = discord.Embed(title="Wan 2.5 images", colour=render.BLURPLE)
        embed.add_field(
            name="Make images",
            value=(
                "`/imagine prompt [negative] [aspect] [count] [image1..]`\n"
                f"Up to {caps.max_count} images at once; aspect ratios: {ratios}. "
                f"Attach up to {caps.max_input_images} images to edit or combine them "
                "(JPEG, PNG, BMP or WebP, 384-5000 px per side, at most 10 MB)."
            ),
            inline=False,
        )
        reply = (
            "Reply to a message with an image, mention me and say what to change."
            if self.bot.message_content
            else "Reply to a message, mention me and attach the image to your reply. "
            "(This bot can't read other people's messages: its Message Content intent is "
            "off, so it only sees images attached to the reply itself.)"
        )
        embed.add_field(
            name="Edit images",
            value=f"Right-click (long-press) a message → **Apps → Edit image**.\n{reply}",
            inline=False,
        )
        embed.add_field(
            name="Results",
            value=(
                "Results come back as attachments with buttons: **Reroll** (same request, "
                "new images), **Edit N** (change one image), **Info** (parameters, cost, "
                "timings) and **Delete** (yours, or any as an admin)."
            ),
            inline=False,
        )
        embed.add_field(
            name="Your jobs and quota",
            value=(
                "`/jobs` your recent jobs · `/show id` brings a result back · "
                "`/cancel id` stops a job · `/usage` your quota and when it resets. "
                "Failed images are never charged."
            ),
            inline=False,
        )
        embed.add_field(
            name="Admins",
            value="`/quota` limits, grants, blocks, budget and report · `/config` results "
            "mode, image repair, allowed channels.",
            inline=False,
        )
        return embed


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, WanBot)
    await bot.add_cog(Help(bot))

"""/show, /jobs and /cancel: a user's own jobs."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.bot import WanBot
from bot.discord.front import DiscordFront


@app_commands.guild_only()
class Jobs(commands.Cog):
    def __init__(self, front: DiscordFront) -> None:
        self.front = front

    @app_commands.command(name="show", description="Bring back a job's result card")
    @app_commands.describe(job_id="The job id (in the result's footer or /jobs)")
    async def show(
        self, interaction: discord.Interaction, job_id: app_commands.Range[str, 1, 40]
    ) -> None:
        actions = self.front.chat.actions
        await self.front.answer_card(interaction, lambda conv: actions.show(conv, job_id))

    @app_commands.command(name="jobs", description="Your recent jobs on this server")
    async def jobs(self, interaction: discord.Interaction) -> None:
        await self.front.answer_card(interaction, self.front.chat.actions.jobs)

    @app_commands.command(name="cancel", description="Cancel one of your jobs")
    @app_commands.describe(job_id="The job id (in the status message or /jobs)")
    async def cancel(
        self, interaction: discord.Interaction, job_id: app_commands.Range[str, 1, 40]
    ) -> None:
        actions = self.front.chat.actions
        await self.front.answer_card(interaction, lambda conv: actions.cancel(conv, job_id))


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, WanBot)
    await bot.add_cog(Jobs(bot.front))

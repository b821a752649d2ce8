"""/show, /jobs and /cancel: a user's own jobs."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.bot import WanBot


@app_commands.guild_only()
class Jobs(commands.Cog):
    def __init__(self, bot: WanBot) -> None:
        self.bot = bot

    @app_commands.command(name="show", description="Bring back a job's result card")
    @app_commands.describe(job_id="The job id (in the result's footer or /jobs)")
    async def show(
        self, interaction: discord.Interaction, job_id: app_commands.Range[str, 1, 40]
    ) -> None:
        await self.bot.actions.show(interaction, job_id)

    @app_commands.command(name="jobs", description="Your recent jobs on this server")
    async def jobs(self, interaction: discord.Interaction) -> None:
        await self.bot.actions.jobs(interaction)

    @app_commands.command(name="cancel", description="Cancel one of your jobs")
    @app_commands.describe(job_id="The job id (in the status message or /jobs)")
    async def cancel(
        self, interaction: discord.Interaction, job_id: app_commands.Range[str, 1, 40]
    ) -> None:
        await self.bot.actions.cancel(interaction, job_id)


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, WanBot)
    await bot.add_cog(Jobs(bot))

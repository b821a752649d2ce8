"""The command tree: every error gets exactly one answer.

User errors (WanbotError, failed checks) are answered privately and specifically.
Anything else is a bug: it is logged with an error id (the job id when there is
one) and the user gets a short apology quoting that id.
"""

from __future__ import annotations

import logging
import secrets

import discord
from discord import app_commands

from bot.chat.wording import refusal
from bot.core.clock import Clock, SystemClock
from bot.core.errors import WanbotError
from bot.discord.embeds import STYLE
from bot.discord.respond import answer

log = logging.getLogger(__name__)


def _permission_name(flag: str) -> str:
    return flag.replace("_", " ").replace("guild", "server").title()


def user_message(error: BaseException, now: float) -> str | None:
    """The text for an error the user can act on, None for a bug."""
    if isinstance(error, WanbotError):
        return refusal(error, STYLE, now)
    if isinstance(error, app_commands.MissingPermissions):
        names = ", ".join(_permission_name(p) for p in error.missing_permissions)
        return f"You need the **{names}** permission to use this command."
    if isinstance(error, app_commands.BotMissingPermissions):
        names = ", ".join(_permission_name(p) for p in error.missing_permissions)
        return f"I'm missing the **{names}** permission here; ask a server admin to grant it."
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command only works in a server."
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down: try again in {error.retry_after:.0f} s."
    if isinstance(error, app_commands.TransformerError):
        return f"I couldn't understand `{error.value}` as a {error.type.name.lower()}."
    if isinstance(error, app_commands.CheckFailure):
        return str(error) or "You can't use this command here."
    return None


class WanTree(app_commands.CommandTree[discord.Client]):
    clock: Clock = SystemClock()  # the bot sets its own (quota reset times are relative)

    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        await self.report(interaction, error)

    async def report(self, interaction: discord.Interaction, error: BaseException) -> None:
        """Answer `error` once, whether the interaction is fresh, deferred or expired."""
        if isinstance(error, app_commands.CommandInvokeError):
            error = error.original
        text = user_message(error, self.clock.now())
        if text is None:
            error_id = str(interaction.extras.get("job_id") or secrets.token_hex(4))
            name = interaction.command.qualified_name if interaction.command else "component"
            log.error("unexpected error in %s (error id %s)", name, error_id, exc_info=error)
            text = (
                f"Sorry, something went wrong on our side. If it keeps happening, give "
                f"a server admin this error id: `{error_id}`."
            )
        try:
            await answer(interaction, text, ephemeral=True)
        except discord.HTTPException as exc:
            log.warning("could not tell the user about an error: %s", exc)

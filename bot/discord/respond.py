"""Answering an interaction exactly once, whatever state it is in.

Fresh: the first response. Deferred: a follow-up (after removing a public
"thinking" message when the answer must be private). Expired (the 3 s window
or the 15 min token passed): the log. Job results never depend on the token:
delivery posts through the channel (see delivery.py).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import discord

log = logging.getLogger(__name__)

# interaction.extras key: the original response is (or will be) a public message.
PUBLIC_ORIGINAL = "wanbot_public_original"
# Unknown interaction, unknown webhook, invalid webhook token.
TOKEN_DEAD_CODES = frozenset({10062, 10015, 50027})


def _acknowledged(interaction: discord.Interaction) -> None:
    """Report how long the user waited for the first answer (the ack-latency metric)."""
    observe = getattr(interaction.client, "observe_ack", None)
    if observe is not None:
        observe(interaction)


def token_dead(exc: BaseException) -> bool:
    """The interaction can no longer be answered through its token."""
    return isinstance(exc, discord.HTTPException) and (
        exc.code in TOKEN_DEAD_CODES or exc.status == 401
    )


async def defer(interaction: discord.Interaction, *, ephemeral: bool = False) -> None:
    """Acknowledge within the 3 s window; the answer follows later."""
    if interaction.response.is_done():
        return
    await interaction.response.defer(ephemeral=ephemeral, thinking=True)
    _acknowledged(interaction)
    interaction.extras[PUBLIC_ORIGINAL] = not ephemeral


async def answer(
    interaction: discord.Interaction,
    content: str | None = None,
    *,
    embed: discord.Embed | None = None,
    embeds: list[discord.Embed] | None = None,
    view: discord.ui.View | None = None,
    file: discord.File | None = None,
    ephemeral: bool = True,
) -> None:
    """Send `content`/`embed` as the interaction's answer; when the token is dead (the
    user already saw "The application did not respond"), log it."""
    kwargs: dict[str, Any] = {"ephemeral": ephemeral}
    if content is not None:
        kwargs["content"] = content
    if embed is not None:
        kwargs["embed"] = embed
    if embeds:
        kwargs["embeds"] = embeds
    if view is not None:
        kwargs["view"] = view
    if file is not None:
        kwargs["file"] = file
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(**kwargs)
            _acknowledged(interaction)
            return
        if ephemeral and interaction.extras.get(PUBLIC_ORIGINAL):
            # The deferred "thinking" message is public; a private answer replaces it.
            with contextlib.suppress(discord.HTTPException):
                await interaction.delete_original_response()
            interaction.extras[PUBLIC_ORIGINAL] = False
        await interaction.followup.send(**kwargs)
    except discord.HTTPException as exc:
        if not token_dead(exc):
            raise
        log.info("interaction %s expired before it could be answered", interaction.id)

"""Answering an interaction exactly once, whatever state it is in.

Fresh: the first response. Deferred: a follow-up (after removing a public
"thinking" message when the answer must be private). Expired (the 3 s window
or the 15 min token passed, or the bot restarted): the channel, or just the log.
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
    interaction.extras[PUBLIC_ORIGINAL] = not ephemeral


async def answer(
    interaction: discord.Interaction,
    content: str | None = None,
    *,
    embed: discord.Embed | None = None,
    embeds: list[discord.Embed] | None = None,
    view: discord.ui.View | None = None,
    ephemeral: bool = True,
    public_fallback: bool = False,
) -> None:
    """Send `content`/`embed` as the interaction's answer. When the token is dead,
    post in the channel (mentioning the user) if `public_fallback`, else log."""
    kwargs: dict[str, Any] = {"ephemeral": ephemeral}
    if content is not None:
        kwargs["content"] = content
    if embed is not None:
        kwargs["embed"] = embed
    if embeds:
        kwargs["embeds"] = embeds
    if view is not None:
        kwargs["view"] = view
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(**kwargs)
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
        await _channel_fallback(interaction, content, embed, public_fallback)


async def _channel_fallback(
    interaction: discord.Interaction,
    content: str | None,
    embed: discord.Embed | None,
    public: bool,
) -> None:
    channel = interaction.channel
    if not public or channel is None or not isinstance(channel, discord.abc.Messageable):
        return
    text = f"{interaction.user.mention} {content or ''}".strip()
    try:
        await channel.send(
            text,
            embed=embed if embed is not None else discord.utils.MISSING,
            allowed_mentions=discord.AllowedMentions(users=[interaction.user]),
        )
    except discord.HTTPException:
        log.warning("could not answer interaction %s in its channel either", interaction.id)

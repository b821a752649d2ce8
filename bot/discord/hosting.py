"""An ImageHost that makes normalised input images fetchable by the provider:
it posts them in the job's channel and hands back the attachment URL."""

from __future__ import annotations

import io
import logging

import discord

from bot.core.errors import WanbotError

log = logging.getLogger(__name__)


class HostingFailed(WanbotError):
    """The adjusted image could not be posted (a Discord problem, not the user's)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"I could not upload the adjusted input image: {reason}", code="hosting")
        self.reason = reason


class DiscordImageHost:
    """Hosts the images of one request; `withdraw` removes them if it is refused."""

    def __init__(self, channel: discord.abc.Messageable, owner: discord.abc.User) -> None:
        self._channel = channel
        self._owner = owner
        self._posted: list[discord.Message] = []

    async def host(self, data: bytes, content_type: str, filename: str) -> str:
        try:
            message = await self._channel.send(
                content=f"Input image for {self._owner.mention}, adjusted to what the "
                "image service accepts.",
                file=discord.File(io.BytesIO(data), filename=filename),
                silent=True,
                allowed_mentions=discord.AllowedMentions.none(),
            )
        except discord.HTTPException as exc:
            raise HostingFailed(exc.text or str(exc.status)) from exc
        self._posted.append(message)
        if not message.attachments:
            raise HostingFailed("Discord did not keep the adjusted image")
        return message.attachments[0].url

    async def withdraw(self) -> None:
        """Delete what was posted (best effort: a message already gone is fine)."""
        posted, self._posted = self._posted, []
        for message in posted:
            try:
                await message.delete()
            except discord.HTTPException as exc:
                log.info("could not delete hosted input image %s: %s", message.id, exc)

"""Hosting repaired input images on Discord so the provider can fetch them: posted in
the job's channel, the attachment URL handed over, and the message deleted when the
request is refused or the job ends."""

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


async def _delete(messages: list[discord.Message]) -> None:
    for message in messages:
        try:
            await message.delete()
        except discord.HTTPException as exc:  # already gone is fine
            log.info("could not delete hosted input image %s: %s", message.id, exc)


class HostedInputs:
    """The input images hosted for running jobs, by job id (in memory; each job also
    stores their references, `kept()`, for whichever process ends it)."""

    def __init__(self) -> None:
        self._by_job: dict[str, list[discord.Message]] = {}

    def session(
        self, channel: discord.abc.Messageable, owner: discord.abc.User
    ) -> DiscordImageHost:
        return DiscordImageHost(channel, owner, self)

    def keep(self, job_id: str, messages: list[discord.Message]) -> None:
        if messages:
            self._by_job.setdefault(job_id, []).extend(messages)

    async def release(self, job_id: str, stored: list[str], http: discord.http.HTTPClient) -> None:
        """Delete a job's hosted images: the messages this process posted, else (the job
        was admitted by another process, or before a restart) the ones stored with it."""
        held = self._by_job.pop(job_id, [])
        if held:
            await _delete(held)
            return
        for ref in stored:
            channel_id, _, message_id = ref.partition("/")
            try:
                await http.delete_message(int(channel_id), int(message_id))
            except (ValueError, discord.HTTPException) as exc:  # already gone is fine
                log.info("could not delete hosted input image %s: %s", ref, exc)


class DiscordImageHost:
    """Hosts the images of one request (`HostSession`)."""

    def __init__(
        self, channel: discord.abc.Messageable, owner: discord.abc.User, kept: HostedInputs
    ) -> None:
        self._channel = channel
        self._owner = owner
        self._kept = kept
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
        """The request was refused: delete what was posted."""
        posted, self._posted = self._posted, []
        await _delete(posted)

    def bind(self, job_id: str) -> None:
        posted, self._posted = self._posted, []
        self._kept.keep(job_id, posted)

    def kept(self) -> list[str]:
        return [f"{m.channel.id}/{m.id}" for m in self._posted]

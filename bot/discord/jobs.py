"""Starting a job from Discord: the same steps for /imagine, buttons, the menu and replies.

Callers run the instant checks (`precheck`, option and metadata validation), acknowledge
the interaction, then call `start`: it loads the server's settings, prepares the
images (download, checks, normalisation), posts the status message and submits.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import discord

from bot.core.errors import NotAllowed, QuotaDenied, QuotaReason, ValidationFailed, WanbotError
from bot.core.models import (
    Capabilities,
    GenerationRequest,
    GuildConfig,
    Job,
    JobState,
    ProgressUpdate,
    Requester,
)
from bot.core.quota import QuotaDefaults, QuotaFacts, decide
from bot.core.validation import (
    CheckedOptions,
    Fetcher,
    ImageMeta,
    ImageSource,
    check_metadata,
    check_options,
    prepare_images,
)
from bot.discord import render
from bot.discord.configs import require_allowed_channel
from bot.discord.delivery import INPUT_NOTES, Target
from bot.discord.hosting import DiscordImageHost
from bot.discord.permissions import is_admin, is_thread, require_job_permissions
from bot.discord.respond import PUBLIC_ORIGINAL, token_dead

if TYPE_CHECKING:
    from bot.discord.bot import WanBot

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (
    ".png",
    ".jpg",
    ".jpeg",
    ".webp",
    ".bmp",
    ".gif",
    ".heic",
    ".heif",
    ".tif",
    ".tiff",
)


@dataclass
class JobOrigin:
    """Who asked, where, and how to answer: an interaction, or a message (reply flow)."""

    guild: discord.Guild
    channel: discord.abc.Messageable
    member: discord.Member
    bot_permissions: discord.Permissions
    member_permissions: discord.Permissions
    interaction: discord.Interaction | None = None
    message: discord.Message | None = None

    @classmethod
    def from_interaction(cls, interaction: discord.Interaction) -> JobOrigin:
        if interaction.guild is None or not isinstance(interaction.user, discord.Member):
            raise NotAllowed("Images can only be made in a server channel.", code="guild_only")
        channel = interaction.channel
        if not isinstance(channel, discord.abc.Messageable):
            raise NotAllowed("Images can't be made in this kind of channel.", code="channel_type")
        return cls(
            guild=interaction.guild,
            channel=channel,
            member=interaction.user,
            bot_permissions=interaction.app_permissions,
            member_permissions=interaction.permissions,
            interaction=interaction,
        )

    @classmethod
    def from_message(cls, message: discord.Message) -> JobOrigin:
        guild = message.guild
        if guild is None or guild.me is None or not isinstance(message.author, discord.Member):
            raise NotAllowed("Images can only be made in a server channel.", code="guild_only")
        channel = message.channel
        if not isinstance(channel, discord.TextChannel | discord.Thread):
            raise NotAllowed("Images can't be made in this kind of channel.", code="channel_type")
        return cls(
            guild=guild,
            channel=channel,
            member=message.author,
            bot_permissions=channel.permissions_for(guild.me),
            member_permissions=channel.permissions_for(message.author),
            message=message,
        )

    @property
    def in_thread(self) -> bool:
        return is_thread(self.channel)

    def requester(self) -> Requester:
        return Requester(
            platform="discord",
            user_id=str(self.member.id),
            guild_id=str(self.guild.id),
            channel_id=str(getattr(self.channel, "id", "")),
            role_ids=[str(role.id) for role in self.member.roles if not role.is_default()],
            is_admin=is_admin(self.member_permissions),
            display_name=self.member.display_name,
        )


def attachment_source(attachment: discord.Attachment, index: int) -> ImageSource:
    return ImageSource.from_url(
        attachment.url,
        ImageMeta(
            index=index,
            filename=attachment.filename,
            size=attachment.size,
            content_type=attachment.content_type,
            width=attachment.width,
            height=attachment.height,
        ),
    )


def looks_like_image(attachment: discord.Attachment) -> bool:
    if attachment.content_type:
        return attachment.content_type.startswith("image/")
    return PurePosixPath(attachment.filename.lower()).suffix in IMAGE_SUFFIXES


def message_image_sources(messages: Sequence[discord.Message]) -> list[ImageSource]:
    """Images in messages, in order: attachments, then embed images (deduplicated)."""
    sources: list[ImageSource] = []
    seen: set[str] = set()
    for message in messages:
        for attachment in message.attachments:
            if looks_like_image(attachment) and attachment.url not in seen:
                seen.add(attachment.url)
                sources.append(attachment_source(attachment, len(sources) + 1))
        for embed in message.embeds:
            for url in (embed.image.url, embed.thumbnail.url if not embed.image.url else None):
                if url and url not in seen and not url.startswith("attachment://"):
                    seen.add(url)
                    meta = ImageMeta(index=len(sources) + 1, filename=url_filename(url))
                    sources.append(ImageSource.from_url(url, meta))
    return sources


def url_filename(url: str) -> str | None:
    name = PurePosixPath(url.split("?", 1)[0]).name
    return name or None


def instant_checks(
    prompt: str | None,
    negative: str | None,
    aspect: str | None,
    count: int | None,
    sources: Sequence[ImageSource],
    caps: Capabilities,
    normalize: bool,
) -> CheckedOptions:
    """Validation stage 1 (no I/O): options and attachment metadata, every problem at once."""
    problems: list[str] = []
    options: CheckedOptions | None = None
    try:
        options = check_options(prompt, negative, aspect, count, len(sources), caps)
    except ValidationFailed as exc:
        problems += exc.problems
    try:
        check_metadata([s.metadata(i) for i, s in enumerate(sources, 1)], caps, normalize)
    except ValidationFailed as exc:
        problems += exc.problems
    if problems or options is None:
        raise ValidationFailed(list(dict.fromkeys(problems)))
    return options


class JobStarter:
    def __init__(self, bot: WanBot) -> None:
        self._bot = bot

    def precheck(self, origin: JobOrigin, config: GuildConfig | None) -> None:
        """Instant checks (no I/O): the channel is allowed and the bot can post there.
        Without a cached config only the permissions every mode needs are checked."""
        if config is not None:
            require_allowed_channel(config, origin.channel)
        creates_thread = (
            config is not None and config.delivery_mode == "thread" and not origin.in_thread
        )
        require_job_permissions(
            origin.bot_permissions, in_thread=origin.in_thread, creates_thread=creates_thread
        )

    async def start(
        self,
        origin: JobOrigin,
        options: CheckedOptions,
        sources: Sequence[ImageSource] = (),
        *,
        parent_job_id: str | None = None,
        fetch: Fetcher | None = None,
    ) -> Job:
        """Prepare the images and submit. Raises WanbotError (ValidationFailed,
        QuotaDenied, NotAllowed) with nothing spent and nothing left behind.
        `fetch` downloads the images (default: the runtime's downloader)."""
        rt = self._bot.rt
        config = await self._bot.configs.get(str(origin.guild.id))
        self.precheck(origin, config)
        if not sources:
            request = options.to_request()
            return await self.submit(
                origin, request, config, notes=options.notes, parent_job_id=parent_job_id
            )
        await self._quota_precheck(origin, options.count)
        host = DiscordImageHost(origin.channel, origin.member)
        try:
            prepared = await prepare_images(
                sources,
                rt.provider.capabilities,
                normalize=config.normalize_images,
                fetch=fetch or rt.downloader,
                host=host,
                executor=rt.image_executor,
            )
            request = options.to_request(prepared.refs)
            notes = [*options.notes, *prepared.notes]
            return await self.submit(
                origin, request, config, notes=notes, parent_job_id=parent_job_id
            )
        except BaseException:
            # Refused after all: repaired copies posted for the provider must not stay
            # up in public for a job that does not exist.
            await host.withdraw()
            raise

    async def submit(
        self,
        origin: JobOrigin,
        request: GenerationRequest,
        config: GuildConfig,
        *,
        notes: Sequence[str] = (),
        parent_job_id: str | None = None,
    ) -> Job:
        rt = self._bot.rt
        queued = ProgressUpdate(state=JobState.QUEUED)
        embed = render.status_embed(
            request, queued, requester_id=str(origin.member.id), notes=notes
        )
        status, via_token = await self._post_status(origin, embed)
        target = Target(
            channel_id=str(getattr(origin.channel, "id", "")),
            guild_id=str(origin.guild.id),
            status_message_id=str(status.id),
            status_channel_id=str(status.channel.id),
            in_thread=origin.in_thread,
            mode=config.delivery_mode,
            upload_limit=self._upload_limit(origin),
        )
        if via_token and origin.interaction is not None:
            self._bot.delivery.remember_interaction(status.id, origin.interaction)
        try:
            job = await rt.engine.submit(
                origin.requester(),
                request,
                # The notes (what validation changed) stay on the status card and results.
                delivery={**target.to_delivery(), INPUT_NOTES: list(notes)},
                parent_job_id=parent_job_id,
            )
        except BaseException as exc:
            # Whatever went wrong, the card must not say "waiting" for a job that is not.
            await self._withdraw_status(origin, status, via_token, exc, request)
            raise
        if origin.interaction is not None:
            origin.interaction.extras["job_id"] = job.id
        log.info(
            "job %s submitted by %s in guild %s (%s)",
            job.id,
            origin.member.id,
            origin.guild.id,
            request.mode.value,
        )
        return job

    @staticmethod
    def _upload_limit(origin: JobOrigin) -> int:
        limits = [origin.guild.filesize_limit]
        if origin.interaction is not None:
            limits.append(origin.interaction.filesize_limit)
        return min(limits)

    async def _quota_precheck(self, origin: JobOrigin, images: int) -> None:
        """Refuse before downloading (and posting repaired copies of) images that could
        not be used anyway. Admission stays the real, atomic check."""
        requester = origin.requester()
        assert requester.guild_id is not None
        report = await self._bot.rt.quotas.usage(
            requester.guild_id, requester.user_id, requester.role_ids, requester.is_admin
        )
        if report.blocked:
            raise QuotaDenied(
                QuotaReason.BLOCKED, "You are blocked from generating images on this server."
            )
        await self._job_limit_precheck(requester)
        if report.remaining is not None and report.remaining < images:
            raise QuotaDenied(
                QuotaReason.USER_LIMIT,
                f"This needs {images} image(s) but you have {report.remaining} of "
                f"{report.limit} left this {report.period.value}; more "
                f"{render.timestamp(report.resets_at)}.",
                remaining=report.remaining,
                resets_at=report.resets_at,
            )
        budget = report.server_budget
        if budget is not None and report.server_used + images > budget:
            raise QuotaDenied(
                QuotaReason.SERVER_BUDGET,
                "This server's monthly image budget is used up.",
                remaining=max(0, budget - report.server_used),
            )

    async def _job_limit_precheck(self, requester: Requester) -> None:
        """The running/waiting job caps, from the user's latest jobs (an unfinished job
        older than those is missed: admission still refuses, and hosted copies go)."""
        rt = self._bot.rt
        defaults = QuotaDefaults.from_settings(rt.settings)
        cap = defaults.max_running + defaults.max_queued
        recent = await rt.jobs.user_jobs(requester.platform, requester.user_id, limit=cap + 10)
        queued = sum(1 for job in recent if job.state is JobState.QUEUED)
        running = sum(1 for job in recent if not job.state.final) - queued
        # Only the job caps can refuse zero images: the same rule and words as admission.
        denied = decide(
            QuotaFacts(running=running, queued=queued),
            defaults,
            images=0,
            is_admin=requester.is_admin,
            now=rt.clock.now(),
        )
        if denied is not None:
            raise denied

    @staticmethod
    async def _post_status(origin: JobOrigin, embed: discord.Embed) -> tuple[discord.Message, bool]:
        """The status message, and whether it is the interaction's own answer."""
        if origin.interaction is not None:
            try:
                # The deferred "thinking" message becomes the status message.
                message = await origin.interaction.edit_original_response(embed=embed)
            except discord.HTTPException as exc:
                if not token_dead(exc):
                    raise
                # Preparing took longer than the token lives: carry on in the channel.
                return await origin.channel.send(
                    content=origin.member.mention,
                    embed=embed,
                    allowed_mentions=discord.AllowedMentions(users=[origin.member]),
                ), False
            origin.interaction.extras[PUBLIC_ORIGINAL] = True
            return message, True
        assert origin.message is not None
        return await origin.message.reply(embed=embed, mention_author=False), False

    @staticmethod
    async def _withdraw_status(
        origin: JobOrigin,
        status: discord.Message,
        via_token: bool,
        error: BaseException,
        request: GenerationRequest,
    ) -> None:
        """The job was refused (or submitting failed): its status must not linger as if
        queued. The interaction's answer replaces it (private); a reply's status makes
        way for the cog's reply; a status posted in the channel (the token had expired)
        shows the refusal itself."""
        with contextlib.suppress(discord.HTTPException):
            if via_token:
                return
            if origin.interaction is None:
                await status.delete()
                return
            text = (
                render.user_error_text(error)
                if isinstance(error, WanbotError)
                else "Something went wrong on our side, so nothing was started or charged."
            )
            await status.edit(embed=render.refusal_embed(request, text))

"""A request from Discord (an interaction, or a message that mentions the bot) as the
chat layer sees it: who asked, where, and how to answer them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import discord

from bot.chat.cards import Card
from bot.chat.configs import require_allowed_channel
from bot.chat.surface import HostSession
from bot.core.errors import NotAllowed
from bot.core.models import GuildConfig, Requester
from bot.core.validation import ImageMeta, ImageSource
from bot.discord import embeds
from bot.discord.hosting import DiscordImageHost
from bot.discord.permissions import is_admin, is_thread, require_job_permissions
from bot.discord.respond import PUBLIC_ORIGINAL, answer, token_dead
from bot.discord.surface import DiscordRef, DiscordSurface

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
class DiscordConversation:
    surface: DiscordSurface
    guild: discord.Guild
    channel: discord.abc.Messageable
    member: discord.Member
    bot_permissions: discord.Permissions
    member_permissions: discord.Permissions
    interaction: discord.Interaction | None = None
    message: discord.Message | None = None
    _config: GuildConfig | None = field(default=None, repr=False)

    @classmethod
    def of_interaction(
        cls, interaction: discord.Interaction, surface: DiscordSurface
    ) -> DiscordConversation:
        if interaction.guild is None or not isinstance(interaction.user, discord.Member):
            raise NotAllowed("Images can only be made in a server channel.", code="guild_only")
        channel = interaction.channel
        if not isinstance(channel, discord.abc.Messageable):
            raise NotAllowed("Images can't be made in this kind of channel.", code="channel_type")
        return cls(
            surface=surface,
            guild=interaction.guild,
            channel=channel,
            member=interaction.user,
            bot_permissions=interaction.app_permissions,
            member_permissions=interaction.permissions,
            interaction=interaction,
        )

    @classmethod
    def of_message(cls, message: discord.Message, surface: DiscordSurface) -> DiscordConversation:
        guild = message.guild
        if guild is None or guild.me is None or not isinstance(message.author, discord.Member):
            raise NotAllowed("Images can only be made in a server channel.", code="guild_only")
        channel = message.channel
        if not isinstance(channel, discord.TextChannel | discord.Thread):
            raise NotAllowed("Images can't be made in this kind of channel.", code="channel_type")
        return cls(
            surface=surface,
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

    @property
    def style(self) -> embeds.DiscordStyle:
        return embeds.STYLE

    @property
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

    def check_place(self, config: GuildConfig | None) -> None:
        """The channel is allowed and the bot can post there (no I/O). Without a cached
        config only the permissions every mode needs are checked."""
        if config is not None:
            self._config = config
            home = self.channel.parent_id if isinstance(self.channel, discord.Thread) else None
            home_id = home or getattr(self.channel, "id", None)
            require_allowed_channel(config, str(home_id) if home_id else None, self.style)
        creates_thread = (
            config is not None and config.delivery_mode == "thread" and not self.in_thread
        )
        require_job_permissions(
            self.bot_permissions, in_thread=self.in_thread, creates_thread=creates_thread
        )

    def image_host(self) -> HostSession:
        host: DiscordImageHost = self.surface.inputs.session(self.channel, self.member)
        return host

    def upload_limit(self) -> int:
        limits = [self.guild.filesize_limit]
        if self.interaction is not None:
            limits.append(self.interaction.filesize_limit)
        return min(limits)

    async def post_status(self, card: Card) -> dict[str, Any]:
        status = await self._post(embeds.embed(card))
        mode = self._config.delivery_mode if self._config is not None else "thread"
        return DiscordRef(
            channel_id=str(getattr(self.channel, "id", "")),
            guild_id=str(self.guild.id),
            status_message_id=str(status.id),
            status_channel_id=str(status.channel.id),
            in_thread=self.in_thread,
            mode=mode,
            upload_limit=self.upload_limit(),
        ).stored(self.requester)

    async def _post(self, embed: discord.Embed) -> discord.Message:
        if self.interaction is not None:
            try:
                # The deferred "thinking" message becomes the status message.
                message = await self.interaction.edit_original_response(embed=embed)
            except discord.HTTPException as exc:
                if not token_dead(exc):
                    raise
                # Preparing took longer than the token lives: carry on in the channel.
                return await self.channel.send(
                    content=self.member.mention,
                    embed=embed,
                    allowed_mentions=discord.AllowedMentions(users=[self.member]),
                )
            self.interaction.extras[PUBLIC_ORIGINAL] = True
            self.surface.remember_interaction(str(message.id), self.interaction)
            return message
        assert self.message is not None
        return await self.message.reply(embed=embed, mention_author=False)

    async def answer(self, card: Card | str, *, files: Sequence[discord.File] = ()) -> None:
        """Privately to the person (a reply, for a message)."""
        if isinstance(card, str):
            text, shown, view = card, [], None
        else:
            text, view = None, embeds.view(card.actions)
            job_id = card.actions[0].job_id if card.actions else ""
            shown = embeds.gallery(card, job_id, card.image_urls)
        if self.interaction is not None:
            file = files[0] if files else None
            await answer(self.interaction, text, embeds=shown, view=view, file=file, ephemeral=True)
            return
        assert self.message is not None
        await self.message.reply(content=text, embeds=shown, mention_author=False)


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
                    name = PurePosixPath(url.split("?", 1)[0]).name or None
                    sources.append(ImageSource.from_url(url, ImageMeta(len(sources) + 1, name)))
    return sources

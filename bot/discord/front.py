"""The Discord side of every use case: turn an interaction into a conversation, ask
the chat layer, draw its answer. Buttons and cogs call this; no flow lives here."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable
from pathlib import PurePosixPath

import discord

from bot.chat.actions import result_filename
from bot.chat.cards import Card
from bot.chat.service import ChatService
from bot.core.errors import NotFound
from bot.core.models import Capabilities, Job, Space
from bot.core.validation import CheckedOptions, ImageSource, check_options
from bot.discord.conversation import DiscordConversation
from bot.discord.respond import defer
from bot.discord.surface import DiscordSurface
from bot.discord.views import PromptModal


class DiscordFront:
    def __init__(self, chat: ChatService, surface: DiscordSurface) -> None:
        self.chat = chat
        self.surface = surface

    @property
    def caps(self) -> Capabilities:
        return self.chat.deps.provider.capabilities

    def conversation(self, interaction: discord.Interaction) -> DiscordConversation:
        return DiscordConversation.of_interaction(interaction, self.surface)

    def checked(self, conv: DiscordConversation) -> DiscordConversation:
        """The instant place check (cached settings only: the 3 s window)."""
        conv.check_place(self.chat.configs.peek(conv.requester.space))
        return conv

    def normalize(self, guild_id: int | None) -> bool:
        if guild_id is None:
            return True
        config = self.chat.configs.peek(Space(platform="discord", id=str(guild_id)))
        return config.normalize_images if config is not None else True

    async def start(
        self,
        conv: DiscordConversation,
        options: CheckedOptions,
        sources: list[ImageSource] | None = None,
    ) -> Job:
        """After the instant checks: acknowledge, then prepare and submit."""
        if conv.interaction is not None:
            await defer(conv.interaction)
        job = await self.chat.starter.start(conv, options, sources or [])
        if conv.interaction is not None:
            conv.interaction.extras["job_id"] = job.id
        return job

    # ------------------------------------------------------------------ buttons
    async def on_button(
        self, interaction: discord.Interaction, action: str, job_id: str, index: int | None
    ) -> None:
        if action == "edit":
            await self.open_edit(interaction, job_id, index or 0)
            return
        if action == "delete":
            await interaction.response.defer()  # a silent acknowledgement
            message = interaction.message
            if message is None:
                raise NotFound("That message is already gone.", code="message_not_found")
            await self.chat.actions.delete(self.conversation(interaction), job_id, message.delete)
            return
        if action == "info":
            await defer(interaction, ephemeral=True)
            conv = self.conversation(interaction)
            await conv.answer(await self.chat.actions.info(conv, job_id))
            return
        conv = self.checked(self.conversation(interaction))
        await defer(interaction)
        if action == "reroll":
            job = await self.chat.actions.reroll(conv, job_id)
        else:
            job = await self.chat.actions.retry(conv, job_id)
            if interaction.message is not None:
                # Tried again: the button goes, so the card cannot start a second job.
                with contextlib.suppress(discord.HTTPException):
                    await interaction.message.edit(view=None)
        interaction.extras["job_id"] = job.id

    async def open_edit(self, interaction: discord.Interaction, job_id: str, index: int) -> None:
        # A modal must be the first answer: nothing slow before it.
        url = result_image_url(interaction.message, job_id, index)
        modal = PromptModal(
            title=f"Edit image {index + 1}",
            on_prompt=functools.partial(self._edit_submitted, job_id=job_id, index=index, url=url),
            max_length=self.caps.max_prompt_chars,
        )
        await interaction.response.send_modal(modal)

    async def _edit_submitted(
        self,
        interaction: discord.Interaction,
        prompt: str,
        *,
        job_id: str,
        index: int,
        url: str | None,
    ) -> None:
        check_options(prompt, None, None, 1, 1, self.caps)  # refused before the ack
        conv = self.checked(self.conversation(interaction))
        await defer(interaction)
        job = await self.chat.actions.edit_result(conv, job_id, index, prompt, url)
        interaction.extras["job_id"] = job.id

    # ----------------------------------------------------------------- commands
    async def answer_card(
        self,
        interaction: discord.Interaction,
        make: Callable[[DiscordConversation], Awaitable[Card | str]],
    ) -> None:
        """A private answer from a use case that returns a card or a sentence."""
        await defer(interaction, ephemeral=True)
        conv = self.conversation(interaction)
        await conv.answer(await make(conv))


def result_image_url(message: discord.Message | None, job_id: str, index: int) -> str | None:
    """The URL of result image `index` of `job_id` on a result message or card."""
    if message is None:
        return None
    stem = PurePosixPath(result_filename(job_id, index, "x")).stem
    for attachment in message.attachments:
        if PurePosixPath(attachment.filename).stem == stem:
            return attachment.url
    for embed in message.embeds:
        url = embed.image.url
        if url and PurePosixPath(url.split("?", 1)[0]).stem == stem:
            return url
    return None

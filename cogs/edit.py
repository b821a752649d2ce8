"""Editing existing images: reply to a message with images while mentioning the bot,
or pick "Edit image" in a message's Apps menu (which works without the Message
Content intent: Discord sends the target message with the interaction)."""

from __future__ import annotations

import functools
import logging
import re
import secrets
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat import wording
from bot.core.errors import ValidationFailed, WanbotError
from bot.core.validation import ImageSource, check_metadata, check_options
from bot.discord.bot import WanBot
from bot.discord.conversation import DiscordConversation, message_image_sources
from bot.discord.embeds import STYLE
from bot.discord.front import DiscordFront
from bot.discord.views import PromptModal

log = logging.getLogger(__name__)

_MENTION = re.compile(r"<@!?(\d+)>")


class Edit(commands.Cog):
    def __init__(
        self, bot: WanBot, front: DiscordFront, tree: app_commands.CommandTree[Any]
    ) -> None:
        self.bot = bot  # the client: who the bot is, and whether it can read messages
        self.front = front
        self.tree = tree
        self.menu = app_commands.ContextMenu(name="Edit image", callback=self.edit_menu)
        self.menu = app_commands.guild_only(self.menu)

    async def cog_load(self) -> None:
        self.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.tree.remove_command(self.menu.name, type=self.menu.type)

    # ------------------------------------------------------------ the menu
    async def edit_menu(self, interaction: discord.Interaction, message: discord.Message) -> None:
        caps = self.front.caps
        sources = message_image_sources([message])[: caps.max_input_images]
        if not sources:
            raise ValidationFailed(["that message has no image to edit"])
        conv = self.front.conversation(interaction)
        normalize = self.front.normalize(interaction.guild_id)
        check_metadata([s.metadata(i) for i, s in enumerate(sources, 1)], caps, normalize)
        self.front.checked(conv)
        modal = PromptModal(
            title="Edit image",
            on_prompt=functools.partial(self._menu_prompt, sources=sources),
            max_length=caps.max_prompt_chars,
        )
        await interaction.response.send_modal(modal)

    async def _menu_prompt(
        self, interaction: discord.Interaction, prompt: str, *, sources: list[ImageSource]
    ) -> None:
        options = check_options(prompt, None, None, 1, len(sources), self.front.caps)
        await self.front.start(self.front.conversation(interaction), options, sources)

    # ------------------------------------------------------- reply + mention
    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        me = self.bot.user
        if me is None or message.author.bot or message.guild is None:
            return
        if message.reference is None or not self._mentions(message, me.id):
            return
        try:
            await self._edit_by_reply(message)
        except WanbotError as exc:
            now = self.front.chat.deps.clock.now()
            await self._reply(message, wording.refusal(exc, STYLE, now))
        except Exception:
            error_id = secrets.token_hex(4)
            log.exception("edit by reply failed (error id %s)", error_id)
            await self._reply(
                message, f"Sorry, something went wrong on our side (error id `{error_id}`)."
            )

    @staticmethod
    def _mentions(message: discord.Message, bot_id: int) -> bool:
        # A reply pings its author through `mentions` too: look at the text as well.
        return any(int(uid) == bot_id for uid in _MENTION.findall(message.content))

    async def _edit_by_reply(self, message: discord.Message) -> None:
        caps = self.front.caps
        referenced = await self._referenced(message)
        sources = message_image_sources([m for m in (referenced, message) if m is not None])
        if not sources:
            hint = (
                ""
                if self.bot.message_content
                else " (I can't see other people's images here: use **Edit image** in the "
                "message's Apps menu instead)"
            )
            raise ValidationFailed([f"I found no image in the message you replied to{hint}"])
        prompt = _MENTION.sub("", message.content).strip()
        conv = DiscordConversation.of_message(message, self.front.surface)
        config = await self.front.chat.configs.get(conv.requester.space)
        sources = sources[: caps.max_input_images]
        options = self.front.chat.check(
            prompt, None, None, 1, sources, normalize=config.normalize_images
        )
        await self.front.start(self.front.checked(conv), options, sources)

    @staticmethod
    async def _referenced(message: discord.Message) -> discord.Message | None:
        ref = message.reference
        if ref is None or ref.message_id is None:
            return None
        if isinstance(ref.resolved, discord.Message):
            return ref.resolved
        channel = message.channel
        if ref.channel_id != channel.id:
            guild = message.guild
            found = guild.get_channel_or_thread(ref.channel_id) if guild else None
            if not isinstance(found, discord.abc.Messageable):
                return None
            channel = found
        try:
            return await channel.fetch_message(ref.message_id)
        except discord.NotFound:
            return None
        except discord.HTTPException as exc:
            raise ValidationFailed(
                [f"I couldn't read the message you replied to ({exc.text or exc.status})"]
            ) from exc

    @staticmethod
    async def _reply(message: discord.Message, text: str) -> None:
        try:
            await message.reply(wording.clip(text, 1900), mention_author=False)
        except discord.HTTPException as exc:
            log.info("could not answer a reply in %s: %s", message.channel.id, exc)


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, WanBot)
    await bot.add_cog(Edit(bot, bot.front, bot.tree))

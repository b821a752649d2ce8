"""Editing existing images: reply to a message with images while mentioning the bot,
or pick "Edit image" in a message's Apps menu (which works without the Message
Content intent: Discord sends the target message with the interaction)."""

from __future__ import annotations

import functools
import logging
import re
import secrets

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.errors import ValidationFailed, WanbotError
from bot.core.validation import ImageSource, check_metadata, check_options
from bot.discord import render
from bot.discord.bot import WanBot
from bot.discord.jobs import JobOrigin, instant_checks, message_image_sources
from bot.discord.respond import defer
from bot.discord.views import PromptModal

log = logging.getLogger(__name__)

_MENTION = re.compile(r"<@!?(\d+)>")


class Edit(commands.Cog):
    def __init__(self, bot: WanBot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(name="Edit image", callback=self.edit_menu)
        self.menu = app_commands.guild_only(self.menu)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    # ------------------------------------------------------------ the menu
    async def edit_menu(self, interaction: discord.Interaction, message: discord.Message) -> None:
        caps = self.bot.rt.provider.capabilities
        sources = message_image_sources([message])[: caps.max_input_images]
        if not sources:
            raise ValidationFailed(["that message has no image to edit"])
        origin = JobOrigin.from_interaction(interaction)
        config = self.bot.configs.peek(str(origin.guild.id))
        normalize = config.normalize_images if config is not None else True
        check_metadata([s.metadata(i) for i, s in enumerate(sources, 1)], caps, normalize)
        self.bot.starter.precheck(origin, config)
        modal = PromptModal(
            title="Edit image",
            on_prompt=functools.partial(self._menu_prompt, sources=sources),
            max_length=caps.max_prompt_chars,
        )
        await interaction.response.send_modal(modal)

    async def _menu_prompt(
        self, interaction: discord.Interaction, prompt: str, *, sources: list[ImageSource]
    ) -> None:
        caps = self.bot.rt.provider.capabilities
        options = check_options(prompt, None, None, 1, len(sources), caps)
        origin = JobOrigin.from_interaction(interaction)
        await defer(interaction)
        await self.bot.starter.start(origin, options, sources)

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
            await self._reply(message, render.user_error_text(exc))
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
        caps = self.bot.rt.provider.capabilities
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
        origin = JobOrigin.from_message(message)
        config = await self.bot.configs.get(str(origin.guild.id))
        sources = sources[: caps.max_input_images]
        options = instant_checks(prompt, None, None, 1, sources, caps, config.normalize_images)
        self.bot.starter.precheck(origin, config)
        await self.bot.starter.start(origin, options, sources)

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
            await message.reply(render.clip(text, 1900), mention_author=False)
        except discord.HTTPException as exc:
            log.info("could not answer a reply in %s: %s", message.channel.id, exc)


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, WanBot)
    await bot.add_cog(Edit(bot))

"""/imagine: text-to-image, or image-to-image with up to three attached images.

Choices and ranges come from the provider's capabilities, so the command offers
only what the provider accepts. Instant checks answer at once (privately); the
interaction is deferred before anything slow (database, downloads, Pillow).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.models import Capabilities
from bot.discord.bot import WanBot
from bot.discord.conversation import attachment_source
from bot.discord.front import DiscordFront

IMAGE_PARAMS = ("image1", "image2", "image3")


class Imagine(commands.Cog):
    def __init__(self, front: DiscordFront, tree: app_commands.CommandTree[Any]) -> None:
        self.front = front
        self.tree = tree
        self.command = build_imagine_command(self, front.caps)

    async def cog_load(self) -> None:
        self.tree.add_command(self.command)

    async def cog_unload(self) -> None:
        self.tree.remove_command(self.command.name)

    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: str,
        negative: str | None = None,
        aspect: str | None = None,
        count: int | None = None,
        images: Sequence[discord.Attachment | None] = (),
    ) -> None:
        attachments = [a for a in images if a is not None]
        sources = [attachment_source(a, i) for i, a in enumerate(attachments, start=1)]
        conv = self.front.conversation(interaction)
        normalize = self.front.normalize(interaction.guild_id)
        options = self.front.chat.check(
            prompt, negative, aspect, count, sources, normalize=normalize
        )
        await self.front.start(self.front.checked(conv), options, sources)


def build_imagine_command(cog: Imagine, caps: Capabilities) -> app_commands.Command[Any, Any, None]:
    """The /imagine command for `caps`: its signature (and so Discord's options) is
    built at setup, with one image option per image the provider accepts."""

    async def imagine(interaction: discord.Interaction, **options: Any) -> None:
        images = [options.pop(name, None) for name in IMAGE_PARAMS]
        await cog.imagine(interaction, images=images, **options)

    kind = inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter(
            "interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=discord.Interaction
        ),
        inspect.Parameter(
            "prompt", kind, annotation=app_commands.Range[str, 1, caps.max_prompt_chars]
        ),
        inspect.Parameter(
            "negative",
            kind,
            default=None,
            annotation=app_commands.Range[str, 1, caps.max_negative_chars],
        ),
        inspect.Parameter("aspect", kind, default=None, annotation=str),
        inspect.Parameter(
            "count", kind, default=None, annotation=app_commands.Range[int, 1, caps.max_count]
        ),
    ]
    image_names = IMAGE_PARAMS[: caps.max_input_images]
    params += [
        inspect.Parameter(name, kind, default=None, annotation=discord.Attachment)
        for name in image_names
    ]
    imagine.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command: app_commands.Command[Any, Any, None] = app_commands.Command(
        name="imagine",
        description="Make images from a prompt (attach images to edit or combine them)",
        callback=imagine,
    )
    ratios = list(dict.fromkeys([*caps.aspect_ratios_t2i, *caps.aspect_ratios_i2i]))[:25]
    descriptions = {
        "prompt": "What the image should show",
        "negative": "What to avoid"
        + ("" if caps.supports_negative_prompt else f" (ignored by {caps.name})"),
        "aspect": "Shape of the image (default 1:1)",
        "count": f"How many images (1-{caps.max_count}, default 1)",
        **{
            name: f"Input image {i} (JPEG, PNG, BMP or WebP; 384 px or more)"
            for i, name in enumerate(image_names, start=1)
        },
    }
    command = app_commands.describe(**descriptions)(command)
    command = app_commands.choices(
        aspect=[app_commands.Choice(name=ratio, value=ratio) for ratio in ratios]
    )(command)
    return app_commands.guild_only(command)


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, WanBot)
    await bot.add_cog(Imagine(bot.front, bot.tree))

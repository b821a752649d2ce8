"""Buttons on results and the prompt modal.

Buttons are DynamicItems whose custom_id encodes the job id (`wanbot:reroll:<job>`,
`wanbot:edit:<job>:<n>`, ...), so they keep working after a restart without any
per-message state: the bot registers the class once in `setup_hook`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import discord

if TYPE_CHECKING:
    from bot.discord.bot import WanBot

ACTIONS = ("reroll", "edit", "delete", "info", "retry")
CUSTOM_ID = re.compile(
    r"wanbot:(?P<action>reroll|edit|delete|info|retry):(?P<job>[0-9a-z]{10})"
    r"(?::(?P<index>\d{1,2}))?"
)


def custom_id(action: str, job_id: str, index: int | None = None) -> str:
    suffix = f":{index}" if index is not None else ""
    return f"wanbot:{action}:{job_id}{suffix}"


def _bot(interaction: discord.Interaction) -> WanBot:
    return cast("WanBot", interaction.client)


class ResultButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=CUSTOM_ID):
    def __init__(
        self, action: str, job_id: str, index: int | None = None, *, row: int | None = None
    ) -> None:
        self.action = action
        self.job_id = job_id
        self.index = index
        label, style, emoji = _LOOKS[action]
        if action == "edit" and index is not None:
            label = f"Edit {index + 1}"
        super().__init__(
            discord.ui.Button(
                label=label, style=style, emoji=emoji, custom_id=custom_id(action, job_id, index)
            ),
            row=row,
        )

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> ResultButton:
        index = match["index"]
        return cls(match["action"], match["job"], int(index) if index is not None else None)

    async def callback(self, interaction: discord.Interaction) -> None:
        bot = _bot(interaction)
        try:
            await bot.front.on_button(interaction, self.action, self.job_id, self.index)
        except Exception as exc:  # every error gets exactly one answer
            await bot.report_error(interaction, exc)


_LOOKS: dict[str, tuple[str, discord.ButtonStyle, str | None]] = {
    "reroll": ("Reroll", discord.ButtonStyle.primary, "🔁"),
    "edit": ("Edit", discord.ButtonStyle.secondary, "✏️"),
    "delete": ("Delete", discord.ButtonStyle.danger, "🗑️"),
    "info": ("Info", discord.ButtonStyle.secondary, "ℹ️"),
    "retry": ("Try again", discord.ButtonStyle.primary, "🔄"),
}


OnPrompt = Callable[[discord.Interaction, str], Awaitable[None]]


class PromptModal(discord.ui.Modal):
    """Asks what to change in an image; `on_prompt` does the rest."""

    prompt: discord.ui.TextInput[PromptModal]

    def __init__(self, *, title: str, on_prompt: OnPrompt, max_length: int = 2000) -> None:
        super().__init__(title=title[:45], timeout=15 * 60)
        self._on_prompt = on_prompt
        self.prompt = discord.ui.TextInput(
            label="What should change?",
            style=discord.TextStyle.paragraph,
            placeholder="e.g. make it night time, add snow",
            max_length=max_length,
            required=True,
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await self._on_prompt(interaction, self.prompt.value)

    async def on_error(  # type: ignore[override]  # discord.py: Modal drops `item`
        self, interaction: discord.Interaction, error: Exception, /
    ) -> None:
        await _bot(interaction).report_error(interaction, error)

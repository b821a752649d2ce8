"""Drawing chat cards on Discord: embeds, colours, buttons, and Discord's markup."""

from __future__ import annotations

import discord

from bot.chat.cards import Action, Card, Tone
from bot.chat.wording import clip
from bot.core.models import JobState
from bot.discord.views import ResultButton

BLURPLE = discord.Colour.blurple()
GREEN = discord.Colour.green()
RED = discord.Colour.red()
GREY = discord.Colour.light_grey()
_COLOURS = {Tone.NEUTRAL: BLURPLE, Tone.WORKING: BLURPLE, Tone.SUCCESS: GREEN, Tone.ERROR: RED}
GALLERY = "https://wanbot.invalid/jobs/"  # embeds sharing a URL show as one gallery
MAX_BUTTONS_PER_ROW = 5


class DiscordStyle:
    """Mentions, channel links and timestamp tags each reader's client renders."""

    def user(self, user_id: str) -> str:
        return f"<@{user_id}>"

    def channel(self, channel_id: str) -> str:
        return f"<#{channel_id}>"

    def relative(self, at: float, now: float) -> str:
        return f"<t:{int(at)}:R>"

    def date(self, at: float) -> str:
        return f"<t:{int(at)}:f>"

    def code(self, text: str) -> str:
        return f"`{text}`"

    def bold(self, text: str) -> str:
        return f"**{text}**"

    def command(self, name: str) -> str:
        return f"`/{name}`"


STYLE = DiscordStyle()


def embed(card: Card, *, image_url: str | None = None) -> discord.Embed:
    colour = GREY if card.state is JobState.QUEUED else _COLOURS[card.tone]
    out = discord.Embed(title=clip(card.title, 256), colour=colour)
    if card.text:
        out.description = clip(card.text, 4000)
    for item in card.fields[:24]:
        out.add_field(name=item.name, value=clip(item.value, 1024) or "—", inline=item.inline)
    if card.notes:
        out.add_field(name="Notes", value=clip("\n".join(card.notes), 1000), inline=False)
    if card.footer:
        out.set_footer(text=card.footer)
    if image_url:
        out.set_image(url=image_url)
    return out


def gallery(card: Card, job_id: str, image_urls: list[str]) -> list[discord.Embed]:
    """One embed per image sharing a URL, so clients show them as one gallery; the
    card's words on the first."""
    embeds = []
    for position, url in enumerate(image_urls[:10]):
        part = embed(card, image_url=url) if position == 0 else discord.Embed(colour=GREEN)
        part.url = GALLERY + job_id
        if position:
            part.set_image(url=url)
        embeds.append(part)
    return embeds or [embed(card)]


def view(actions: list[Action]) -> discord.ui.View | None:
    """Reroll / Info / Delete / Try again on the first row, one Edit per image below."""
    if not actions:
        return None
    out = discord.ui.View(timeout=None)
    edits = [a for a in actions if a.kind == "edit"]
    for action in actions:
        if action.kind != "edit":
            out.add_item(ResultButton(action.kind.value, action.job_id, row=0))
    for position, action in enumerate(edits[: MAX_BUTTONS_PER_ROW * 3]):
        row = 1 + position // MAX_BUTTONS_PER_ROW
        out.add_item(ResultButton("edit", action.job_id, action.index, row=row))
    return out

"""Slack's markup for the few things a sentence refers to (the chat layer's `Style`):
mentions, channel links, date tags each reader's client shows in their own time
zone [docs.slack.dev/messaging/formatting-message-text#date-formatting]."""

from __future__ import annotations

import time

from bot.chat.style import seconds_text

IMAGINE = "imagine"  # its own slash command; every other command is a /wanbot word


class SlackStyle:
    def user(self, user_id: str) -> str:
        return f"<@{user_id}>"

    def channel(self, channel_id: str) -> str:
        return f"<#{channel_id}>"

    def relative(self, at: float, now: float) -> str:
        seconds = at - now
        fallback = "now" if seconds <= 0 else f"in {seconds_text(seconds)}"
        if seconds < 90:
            return fallback  # a date tag would say "Today 14:02": the seconds say more
        return f"<!date^{int(at)}^{{date_short_pretty}} {{time}}|{fallback}>"

    def date(self, at: float) -> str:
        fallback = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))
        return f"<!date^{int(at)}^{{date_short_pretty}} {{time}}|{fallback}>"

    def code(self, text: str) -> str:
        return f"`{text}`"

    def bold(self, text: str) -> str:
        return f"*{text}*"

    def command(self, name: str) -> str:
        if name == IMAGINE or name.startswith(IMAGINE + " "):
            return f"`/{name}`"
        return f"`/wanbot {name}`"


STYLE = SlackStyle()

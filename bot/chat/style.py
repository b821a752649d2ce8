"""How a platform marks up the few things a sentence refers to: a user, a channel,
a time, a code. Wording is written once; each surface passes its `Style`."""

from __future__ import annotations

import time
from typing import Protocol

from bot.core.quota import format_duration


class Style(Protocol):
    def user(self, user_id: str) -> str: ...

    def channel(self, channel_id: str) -> str: ...

    def relative(self, at: float, now: float) -> str:
        """`at` as seen from `now`: 'in 3 h' (or a tag each reader's client renders)."""
        ...

    def date(self, at: float) -> str: ...

    def code(self, text: str) -> str: ...

    def bold(self, text: str) -> str: ...

    def command(self, name: str) -> str:
        """How the user types command `name` here: '`/usage`', '`/wanbot usage`'."""
        ...


class PlainStyle:
    """Terminal text: no markup, times spelled out from `now`."""

    def __init__(self, me: str | None = None) -> None:
        self._me = me  # the local user's id, shown as "you"

    def user(self, user_id: str) -> str:
        return "you" if user_id == self._me else user_id

    def channel(self, channel_id: str) -> str:
        return f"#{channel_id}"

    def relative(self, at: float, now: float) -> str:
        seconds = at - now
        if abs(seconds) < 1:
            return "now"
        if seconds < 0:
            return f"{seconds_text(-seconds)} ago"
        return f"in {seconds_text(seconds)}"

    def date(self, at: float) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(at))

    def code(self, text: str) -> str:
        return f"`{text}`"

    def bold(self, text: str) -> str:
        return text

    def command(self, name: str) -> str:
        return f"`/{name}`"


def seconds_text(seconds: float) -> str:
    """Seconds while short (progress ETAs), else the quota's minute-based wording."""
    if seconds < 90:
        return f"{max(0, round(seconds))} s"
    return format_duration(seconds)

"""Where discord.py talks to: Discord itself, or a fake / self-hosted gateway.

discord.py keeps its REST base and gateway URL in class attributes; the
interaction webhook adapter builds its URLs from the same REST base.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import discord.gateway
import discord.http
import yarl


def use_endpoints(api_base_url: str | None, gateway_url: str | None) -> tuple[str, yarl.URL]:
    """Point discord.py at other endpoints (None keeps the current one).
    Returns the previous (REST base, gateway) so a caller can restore them."""
    previous = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    if api_base_url:
        discord.http.Route.BASE = api_base_url.rstrip("/")
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    return previous


@contextlib.contextmanager
def endpoints(api_base_url: str | None, gateway_url: str | None) -> Iterator[None]:
    """`use_endpoints` for a block, restored afterwards (tests run several bots)."""
    base, gateway = use_endpoints(api_base_url, gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE = base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway

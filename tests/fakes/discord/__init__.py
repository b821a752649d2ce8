"""A fake Discord (REST, gateway, CDN) for running the real discord.py client offline."""

from tests.fakes.discord.payloads import (
    ATTACH_FILES,
    CREATE_PUBLIC_THREADS,
    EMBED_LINKS,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    FakeAttachment,
    FakeChannel,
    FakeRole,
    FakeUser,
)
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.discord.wire import FakeInteraction, RecordedRequest

__all__ = [
    "ATTACH_FILES",
    "CREATE_PUBLIC_THREADS",
    "EMBED_LINKS",
    "SEND_MESSAGES",
    "SEND_MESSAGES_IN_THREADS",
    "FakeAttachment",
    "FakeChannel",
    "FakeDiscord",
    "FakeInteraction",
    "FakeRole",
    "FakeUser",
    "RecordedRequest",
]

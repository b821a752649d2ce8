"""Wire-format building blocks of the fake Discord: ids, permission bits, objects.

Only what discord.py 2.7 reads is produced, with Discord's field names and
string-encoded snowflakes and permission integers.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

DISCORD_EPOCH_MS = 1_420_070_400_000

# Permission bits (Discord API docs, "Permissions").
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_APPLICATION_COMMANDS = 1 << 31
MANAGE_THREADS = 1 << 34
CREATE_PUBLIC_THREADS = 1 << 35
SEND_MESSAGES_IN_THREADS = 1 << 38

MEMBER_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_APPLICATION_COMMANDS
    | CREATE_PUBLIC_THREADS
    | SEND_MESSAGES_IN_THREADS
)
BOT_PERMISSIONS = MEMBER_PERMISSIONS | MANAGE_THREADS
ADMIN_PERMISSIONS = (1 << 41) - 1  # an administrator holds every permission

# Channel types.
GUILD_TEXT = 0
PUBLIC_THREAD = 11

# Message flags.
EPHEMERAL = 1 << 6
LOADING = 1 << 7


class Snowflakes:
    """Real-looking snowflakes from the wall clock (discord.py derives times from them)."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def next(self, *, shard: tuple[int, int] | None = None) -> str:
        """A new id; with `shard` (id, count), one that shard owns: Discord routes a
        guild to shard (guild_id >> 22) % count, so the time part is moved a few ms on."""
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        if shard is not None:
            ms += (shard[0] - ms) % shard[1]
        return str((ms << 22) | (1 << 17) | (next(self._counter) & 0xFFF))


def shard_of(guild_id: str | int, count: int) -> int:
    """The shard that receives a guild's events (Discord's gateway docs, "Sharding")."""
    return (int(guild_id) >> 22) % count


def iso_now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class FakeGuild:
    """A server the bot is in. The first one is the world's `guild_id`; more are added
    with `add_guild` (for sharding: each goes to the shard that owns its id)."""

    id: str
    name: str
    general: FakeChannel | None = None  # its first text channel


@dataclass
class FakeUser:
    id: str
    username: str
    bot: bool = False
    admin: bool = False  # holds ADMINISTRATOR (and so MANAGE_GUILD)
    role_ids: list[str] = field(default_factory=list)
    permissions: int | None = None  # overrides the default member permissions

    def payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "discriminator": "0",
            "global_name": self.username,
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
        }

    def guild_permissions(self) -> int:
        if self.permissions is not None:
            return self.permissions
        return ADMIN_PERMISSIONS if self.admin else MEMBER_PERMISSIONS

    def member_payload(self, *, with_user: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "roles": list(self.role_ids),
            "joined_at": "2024-01-01T00:00:00+00:00",
            "flags": 0,
            "deaf": False,
            "mute": False,
            "nick": None,
            "avatar": None,
            "premium_since": None,
            "pending": False,
        }
        if with_user:
            data["user"] = self.payload()
        return data


@dataclass
class FakeRole:
    id: str
    name: str
    permissions: int = 0

    def payload(self, position: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": position,
            "permissions": str(self.permissions),
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }


@dataclass
class FakeChannel:
    id: str
    guild_id: str
    name: str
    type: int = GUILD_TEXT
    parent_id: str | None = None  # a thread's channel
    owner_id: str | None = None  # a thread's creator
    bot_deny: int = 0  # permissions taken from the bot by an overwrite
    position: int = 0
    message_count: int = 0

    @property
    def is_thread(self) -> bool:
        return self.type == PUBLIC_THREAD

    def payload(self, bot_id: str) -> dict[str, Any]:
        if self.is_thread:
            return {
                "id": self.id,
                "guild_id": self.guild_id,
                "parent_id": self.parent_id,
                "owner_id": self.owner_id,
                "name": self.name,
                "type": self.type,
                "last_message_id": None,
                "message_count": self.message_count,
                "member_count": 1,
                "total_message_sent": self.message_count,
                "rate_limit_per_user": 0,
                "flags": 0,
                "thread_metadata": {
                    "archived": False,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": iso_now(),
                    "locked": False,
                    "create_timestamp": iso_now(),
                },
            }
        overwrites = []
        if self.bot_deny:
            overwrites.append({"id": bot_id, "type": 1, "allow": "0", "deny": str(self.bot_deny)})
        return {
            "id": self.id,
            "guild_id": self.guild_id,
            "name": self.name,
            "type": self.type,
            "position": self.position,
            "parent_id": None,
            "topic": None,
            "nsfw": False,
            "rate_limit_per_user": 0,
            "last_message_id": None,
            "permission_overwrites": overwrites,
            "default_auto_archive_duration": 1440,
            "flags": 0,
        }


@dataclass
class FakeAttachment:
    """A file stored on the fake CDN."""

    id: str
    channel_id: str
    filename: str
    content_type: str
    data: bytes
    url: str
    width: int | None = None
    height: int | None = None

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "filename": self.filename,
            "size": len(self.data),
            "url": self.url,
            "proxy_url": self.url,
            "content_type": self.content_type,
        }
        if self.width is not None and self.height is not None:
            data["width"] = self.width
            data["height"] = self.height
        return data


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height as Discord reports them for an image upload (None otherwise)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:
        return None

"""The fake Discord's state: the guild, its members, roles, channels, threads, messages
and CDN files, the permission model, and the JSON payloads built from them."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from aiohttp import web

from bot.core.clock import Clock, SystemClock
from tests.fakes.discord.payloads import (
    ADMIN_PERMISSIONS,
    ADMINISTRATOR,
    BOT_PERMISSIONS,
    LOADING,
    PUBLIC_THREAD,
    FakeAttachment,
    FakeChannel,
    FakeGuild,
    FakeRole,
    FakeUser,
    Snowflakes,
    image_size,
    iso_now,
)
from tests.fakes.discord.wire import (
    API_PREFIX,
    MESSAGE_CONTENT_INTENT,
    FakeInteraction,
    GatewayConnection,
    HangRule,
    IdentifyRecord,
    RecordedFile,
    RecordedRequest,
    ScriptedFailure,
    guess_type,
)

T = TypeVar("T")


class World:
    CALLBACK_WINDOW = 3.0
    TOKEN_LIFETIME = 15 * 60.0
    MAX_FILES = 10
    # Discord checks `enforce_nonce` uniqueness only "in the past few minutes".
    NONCE_WINDOW = 5 * 60.0

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        attachment_size_limit: int = 10 * 1024 * 1024,
        enforce_real_time_window: bool = True,
        message_content_allowed: bool = True,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.attachment_size_limit = attachment_size_limit
        # Real Discord also measures the 3 s window in real time; tests that
        # inject a clock may turn this off to isolate the injected clock.
        self.enforce_real_time_window = enforce_real_time_window
        # The portal switch: without it, an IDENTIFY asking for MESSAGE_CONTENT is closed
        # with 4014, and other people's message content arrives empty.
        self.message_content_allowed = message_content_allowed
        self._ids = Snowflakes()
        self.application_id = self._ids.next()
        self.bot = FakeUser(id=self.application_id, username="wanbot", bot=True)
        self.guild_id = self._ids.next()
        self.guilds: dict[str, FakeGuild] = {self.guild_id: FakeGuild(self.guild_id, "Fake Guild")}
        self.owner = FakeUser(id=self._ids.next(), username="owner", admin=True)
        self.everyone = FakeRole(id=self.guild_id, name="@everyone", permissions=0)
        self.bot_role = FakeRole(id=self._ids.next(), name="wanbot", permissions=BOT_PERMISSIONS)
        self.bot.role_ids = [self.bot_role.id]
        self.roles: dict[str, FakeRole] = {r.id: r for r in (self.everyone, self.bot_role)}
        self.users: dict[str, FakeUser] = {u.id: u for u in (self.bot, self.owner)}
        self.channels: dict[str, FakeChannel] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.attachments: dict[str, FakeAttachment] = {}
        self.interactions: dict[str, FakeInteraction] = {}
        self._by_token: dict[str, FakeInteraction] = {}
        self.requests: list[RecordedRequest] = []
        self.identifies: list[dict[str, Any]] = []
        # Sharding (gateway.py): what /gateway/bot answers, whether an IDENTIFY without
        # a shard is refused (4011, as for a bot in 2,500+ servers), each IDENTIFY's
        # shard, rate-limit bucket and time.
        self.recommended_shards = 1
        self.max_concurrency = 1
        self.sharding_required = False
        self.identify_log: list[IdentifyRecord] = []
        self.errors: list[Exception] = []  # exceptions inside the fake's handlers
        self.in_flight = 0  # REST requests being answered
        self.commands: dict[str | None, list[dict[str, Any]]] = {}
        self._command_ids: dict[str, str] = {}
        self._nonces: dict[tuple[str, str], tuple[str, float]] = {}  # -> (message, clock)
        self._scripted: list[ScriptedFailure] = []
        # Direct messages (dms.py): channel id -> recipient id, messages sent, users
        # who refuse DMs from the bot.
        self.dm_channels: dict[str, str] = {}
        self.dm_messages: list[dict[str, Any]] = []
        self.dms_closed: set[str] = set()
        # Requests that never get an answer (server.hang_next), and those caught so far.
        self._hangs: list[HangRule] = []
        self.hung: list[RecordedRequest] = []
        self.hanging = 0  # hung requests whose client still waits
        self._hang_release = asyncio.Event()
        self._connections: list[GatewayConnection] = []
        self._seq = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.general = self.add_channel("general")
        self.guilds[self.guild_id].general = self.general

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(self, check: Callable[[], T | None], *, timeout: float = 5.0) -> T:
        """Wait (real time, bounded) until `check()` returns something truthy."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._changed:
            while True:
                value = check()
                if value:
                    return value
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError("fake Discord: condition not met in time")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 0.05))

    def add_user(self, name: str, *, admin: bool = False, role_ids: Sequence[str] = ()) -> FakeUser:
        user = FakeUser(id=self._ids.next(), username=name, admin=admin, role_ids=list(role_ids))
        self.users[user.id] = user
        return user

    def add_role(self, name: str, permissions: int = 0) -> FakeRole:
        role = FakeRole(id=self._ids.next(), name=name, permissions=permissions)
        self.roles[role.id] = role
        return role

    def add_guild(self, name: str, *, shard: tuple[int, int] | None = None) -> FakeGuild:
        """Another server the bot is in, with a "general" channel; with `shard` (id,
        count), one whose events go to that shard. Add guilds before the bot connects
        (no GUILD_CREATE is sent for one added later)."""
        guild = FakeGuild(self._ids.next(shard=shard), name)
        self.guilds[guild.id] = guild
        guild.general = self.add_channel("general", guild=guild)
        return guild

    def add_channel(
        self, name: str, *, bot_deny: int = 0, guild: FakeGuild | None = None
    ) -> FakeChannel:
        guild_id = guild.id if guild is not None else self.guild_id
        channel = FakeChannel(
            id=self._ids.next(),
            guild_id=guild_id,
            name=name,
            bot_deny=bot_deny,
            position=sum(1 for c in self.channels.values() if c.guild_id == guild_id),
        )
        self.channels[channel.id] = channel
        return channel

    def bot_permissions(self, channel: FakeChannel) -> int:
        base = self.everyone.permissions | self.bot_role.permissions
        if base & ADMINISTRATOR:
            return ADMIN_PERMISSIONS
        parent = self.channels.get(channel.parent_id or "") if channel.is_thread else channel
        deny = parent.bot_deny if parent is not None else 0
        return base & ~deny

    def upload(
        self,
        data: bytes,
        filename: str,
        content_type: str | None = None,
        *,
        channel: FakeChannel | None = None,
    ) -> FakeAttachment:
        """Put a file on the fake CDN (as a user's upload would be)."""
        return self._store_attachment(
            (channel or self.general).id, filename, content_type or guess_type(filename), data
        )

    def _store_attachment(
        self, channel_id: str, filename: str, content_type: str, data: bytes
    ) -> FakeAttachment:
        att_id = self._ids.next()
        # Signed like Discord's CDN URLs (ex/is/hm); the query is ignored when serving.
        url = (
            f"{self.base_url}/attachments/{channel_id}/{att_id}/{filename}"
            f"?ex={int(time.time()) + 86400:x}&is={int(time.time()):x}&hm={secrets.token_hex(8)}"
        )
        size = image_size(data) if content_type.startswith("image/") else None
        attachment = FakeAttachment(
            id=att_id,
            channel_id=channel_id,
            filename=filename,
            content_type=content_type,
            data=data,
            url=url,
            width=size[0] if size else None,
            height=size[1] if size else None,
        )
        self.attachments[att_id] = attachment
        return attachment

    def messages_in(self, channel: FakeChannel | str) -> list[dict[str, Any]]:
        channel_id = channel if isinstance(channel, str) else channel.id
        return [m for m in self.messages.values() if m["channel_id"] == channel_id]

    def replies_to(self, message_id: str) -> list[dict[str, Any]]:
        """Messages that reply to `message_id`, oldest first."""
        return [
            m
            for m in self.messages.values()
            if m.get("message_reference", {}).get("message_id") == message_id
        ]

    def threads(self) -> list[FakeChannel]:
        return [c for c in self.channels.values() if c.is_thread]

    @staticmethod
    def custom_ids(message: Mapping[str, Any]) -> list[str]:
        found = []
        for row in message.get("components") or []:
            for item in row.get("components") or []:
                if item.get("custom_id"):
                    found.append(item["custom_id"])
        return found

    @property
    def intents(self) -> int:
        return int(self.identifies[-1]["intents"]) if self.identifies else 0

    def _content_visible(self) -> bool:
        return self.message_content_allowed and bool(self.intents & MESSAGE_CONTENT_INTENT)

    def _channel_payload(self, channel: FakeChannel) -> dict[str, Any]:
        return channel.payload(self.bot.id)

    def _new_thread(
        self, thread_id: str, parent: FakeChannel, name: str, owner: FakeUser
    ) -> FakeChannel:
        thread = FakeChannel(
            id=thread_id,
            guild_id=parent.guild_id,
            name=name,
            type=PUBLIC_THREAD,
            parent_id=parent.id,
            owner_id=owner.id,
        )
        self.channels[thread.id] = thread
        return thread

    def guild_of(self, channel_id: str) -> str:
        """The guild a channel or thread belongs to."""
        channel = self.channels.get(channel_id)
        return channel.guild_id if channel is not None else self.guild_id

    def _guild_payload(self, guild_id: str | None = None) -> dict[str, Any]:
        guild = self.guilds[guild_id or self.guild_id]
        # Every guild has the same roles and members; @everyone's id is the guild's.
        roles = [
            (FakeRole(guild.id, r.name, r.permissions) if r is self.everyone else r).payload(i)
            for i, r in enumerate(self.roles.values())
        ]
        members = [u.member_payload() for u in self.users.values()]
        mine = [c for c in self.channels.values() if c.guild_id == guild.id]
        channels = [self._channel_payload(c) for c in mine if not c.is_thread]
        threads = [self._channel_payload(c) for c in mine if c.is_thread]
        return {
            "id": guild.id,
            "name": guild.name,
            "icon": None,
            "owner_id": self.owner.id,
            "roles": roles,
            "emojis": [],
            "stickers": [],
            "features": [],
            "channels": channels,
            "threads": threads,
            "members": members,
            "member_count": len(members),
            "large": False,
            "unavailable": False,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "joined_at": "2024-01-01T00:00:00+00:00",
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "mfa_level": 0,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "system_channel_flags": 0,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
        }

    def _new_message(
        self,
        channel: FakeChannel,
        author: FakeUser,
        *,
        content: str = "",
        attachments: list[dict[str, Any]] | None = None,
        embeds: list[dict[str, Any]] | None = None,
        components: list[dict[str, Any]] | None = None,
        flags: int = 0,
        reply_to: str | None = None,
        nonce: str | None = None,
        message_type: int = 0,
    ) -> dict[str, Any]:
        mid = self._ids.next()
        mentions = [
            u.payload()
            for u in self.users.values()
            if f"<@{u.id}>" in content or f"<@!{u.id}>" in content
        ]
        msg: dict[str, Any] = {
            "id": mid,
            "channel_id": channel.id,
            "type": 19 if reply_to else message_type,
            "content": content,
            "author": author.payload(),
            "attachments": attachments or [],
            "embeds": embeds or [],
            "components": components or [],
            "mentions": mentions,
            "mention_roles": [],
            "mention_everyone": False,
            "pinned": False,
            "tts": False,
            "timestamp": iso_now(),
            "edited_timestamp": None,
            "flags": flags,
        }
        if author.bot:
            msg["application_id"] = self.application_id
        if nonce is not None:
            msg["nonce"] = nonce
        if reply_to is not None:
            ref = self.messages.get(reply_to)
            msg["message_reference"] = {
                "type": 0,
                "message_id": reply_to,
                "channel_id": ref["channel_id"] if ref else channel.id,
                "guild_id": channel.guild_id,
            }
            msg["referenced_message"] = ref
        channel.message_count += 1
        self.messages[mid] = msg
        return msg

    def _visible(self, msg: dict[str, Any]) -> dict[str, Any]:
        """A message as the bot receives it: without the MESSAGE_CONTENT intent, content,
        embeds, attachments and components of other people's messages arrive empty unless
        the bot is mentioned."""
        if self._content_visible() or msg["author"]["id"] == self.bot.id:
            return msg
        if any(m["id"] == self.bot.id for m in msg.get("mentions", [])):
            return msg
        return {**msg, "content": "", "embeds": [], "attachments": [], "components": []}

    def _gateway_message(self, msg: dict[str, Any]) -> dict[str, Any]:
        event = {**self._visible(msg), "guild_id": self.guild_of(msg["channel_id"])}
        author = self.users.get(msg["author"]["id"])
        if author is not None:
            event["member"] = author.member_payload(with_user=False)
        if event.get("referenced_message"):
            event["referenced_message"] = self._visible(event["referenced_message"])
        return event

    def _files_to_attachments(
        self, channel: FakeChannel, payload: Mapping[str, Any], files: Sequence[RecordedFile]
    ) -> list[dict[str, Any]]:
        described = {str(a.get("id")): a for a in payload.get("attachments") or []}
        stored = []
        for index, upload in enumerate(files):
            meta = described.get(str(index), {})
            content_type = upload.content_type or "application/octet-stream"
            if content_type == "application/octet-stream":
                content_type = guess_type(upload.filename)
            attachment = self._store_attachment(
                channel.id, meta.get("filename") or upload.filename, content_type, upload.data
            )
            data = attachment.payload()
            if meta.get("description"):
                data["description"] = meta["description"]
            stored.append(data)
        return stored

    @staticmethod
    def _resolve_embeds(
        embeds: list[dict[str, Any]], attachments: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        by_name = {a["filename"]: a for a in attachments}
        resolved = []
        for embed in embeds:
            embed = json.loads(json.dumps(embed))
            for key in ("image", "thumbnail"):
                url = (embed.get(key) or {}).get("url", "")
                if url.startswith("attachment://") and url[13:] in by_name:
                    att = by_name[url[13:]]
                    embed[key] = {
                        "url": att["url"],
                        "proxy_url": att["proxy_url"],
                        "width": att.get("width"),
                        "height": att.get("height"),
                    }
            embed.setdefault("type", "rich")
            resolved.append(embed)
        return resolved

    def _message_from_payload(
        self,
        channel: FakeChannel,
        payload: Mapping[str, Any],
        files: Sequence[RecordedFile],
        *,
        flags: int = 0,
        reply_to: str | None = None,
        nonce: Any = None,
    ) -> dict[str, Any]:
        attachments = self._files_to_attachments(channel, payload, files)
        embeds = self._resolve_embeds(list(payload.get("embeds") or []), attachments)
        if not self.bot_permissions(channel) & (1 << 14):  # EMBED_LINKS: Discord drops embeds
            embeds = []
        return self._new_message(
            channel,
            self.bot,
            content=str(payload.get("content") or ""),
            attachments=attachments,
            embeds=embeds,
            components=list(payload.get("components") or []),
            flags=flags,
            reply_to=reply_to,
            nonce=None if nonce is None else str(nonce),
        )

    def _edit_message(
        self,
        message: dict[str, Any],
        payload: Mapping[str, Any],
        files: Sequence[RecordedFile],
    ) -> dict[str, Any]:
        channel = self.channels[message["channel_id"]]
        if "content" in payload:
            message["content"] = str(payload.get("content") or "")
        if "components" in payload:
            message["components"] = list(payload.get("components") or [])
        new = self._files_to_attachments(channel, payload, files)
        if "attachments" in payload:
            keep = {str(a.get("id")) for a in payload.get("attachments") or []}
            message["attachments"] = [a for a in message["attachments"] if a["id"] in keep]
        message["attachments"] = message["attachments"] + new
        if "embeds" in payload:
            message["embeds"] = self._resolve_embeds(
                list(payload.get("embeds") or []), message["attachments"]
            )
        message["flags"] = message["flags"] & ~LOADING
        message["edited_timestamp"] = iso_now()
        return message

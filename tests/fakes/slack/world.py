"""The fake Slack's state: one workspace with users, channels, messages and files."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.fakes.slack.wire import Ids

TEAM_ID = "T0FAKE"
TEAM_DOMAIN = "fake"
APP_ID = "A0FAKE"
BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"
BOT_TOKEN = "xoxb-fake-bot-token"
APP_TOKEN = "xapp-fake-app-token"


@dataclass
class SlackUser:
    id: str
    name: str
    is_admin: bool = False
    is_owner: bool = False
    is_primary_owner: bool = False
    is_bot: bool = False

    def wire(self) -> dict[str, Any]:
        """As `users.info` returns it (the fields the bot reads)."""
        return {
            "id": self.id,
            "team_id": TEAM_ID,
            "name": self.name,
            "real_name": self.name.title(),
            "deleted": False,
            "is_admin": self.is_admin,
            "is_owner": self.is_owner,
            "is_primary_owner": self.is_primary_owner,
            "is_bot": self.is_bot,
            "profile": {"display_name": self.name, "real_name": self.name.title()},
        }

    def brief(self) -> dict[str, Any]:
        """As interaction payloads carry the user."""
        return {"id": self.id, "username": self.name, "name": self.name, "team_id": TEAM_ID}


@dataclass
class SlackChannel:
    id: str
    name: str
    is_private: bool = False
    members: set[str] = field(default_factory=set)

    def wire(self, viewer: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "is_channel": not self.is_private,
            "is_group": self.is_private,
            "is_im": False,
            "is_private": self.is_private,
            "is_archived": False,
            "is_member": viewer in self.members,
            "context_team_id": TEAM_ID,
        }


@dataclass
class SlackFile:
    id: str
    name: str
    title: str
    mimetype: str
    filetype: str
    data: bytes
    user: str
    created: int
    base_url: str  # http://127.0.0.1:P
    original_w: int | None = None
    original_h: int | None = None
    # channel -> [{"ts": message ts, "thread_ts"?: root}], as files.info `shares.public`
    shares: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    public: bool = True
    uploaded: bool = True  # False between getUploadURLExternal and the upload POST

    @property
    def url_private(self) -> str:
        return f"{self.base_url}/files-pri/{TEAM_ID}-{self.id}/{self.name}"

    @property
    def url_private_download(self) -> str:
        return f"{self.base_url}/files-pri/{TEAM_ID}-{self.id}/download/{self.name}"

    def wire(self) -> dict[str, Any]:
        """The file object of events, `files.info` and upload completions."""
        wire: dict[str, Any] = {
            "id": self.id,
            "created": self.created,
            "timestamp": self.created,
            "name": self.name,
            "title": self.title,
            "mimetype": self.mimetype,
            "filetype": self.filetype,
            "pretty_type": self.filetype.upper(),
            "user": self.user,
            "user_team": TEAM_ID,
            "size": len(self.data),
            "mode": "hosted",
            "is_external": False,
            "is_public": self.public,
            "url_private": self.url_private,
            "url_private_download": self.url_private_download,
            "permalink": f"https://{TEAM_DOMAIN}.slack.com/files/{self.user}/{self.id}/{self.name}",
        }
        if self.original_w is not None:
            wire["original_w"] = self.original_w
            wire["original_h"] = self.original_h
        if self.shares:
            wire["shares"] = {("public" if self.public else "private"): self.shares}
        return wire


@dataclass
class Trigger:
    user: str
    issued_at: float  # the clock's monotonic time
    used: bool = False


class World:
    """Users, channels, messages (by channel and ts, with thread_ts) and files."""

    def __init__(self, ids: Ids) -> None:
        self.ids = ids
        self.users: dict[str, SlackUser] = {
            BOT_USER_ID: SlackUser(BOT_USER_ID, "wanbot", is_bot=True)
        }
        self.channels: dict[str, SlackChannel] = {}
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.deleted: list[dict[str, Any]] = []
        self.ephemerals: list[dict[str, Any]] = []
        self.files: dict[str, SlackFile] = {}
        self.views: dict[str, dict[str, Any]] = {}
        self.triggers: dict[str, Trigger] = {}
        self.responses: list[dict[str, Any]] = []  # bodies POSTed to response_url

    def add_user(
        self, name: str, *, admin: bool = False, owner: bool = False, primary: bool = False
    ) -> SlackUser:
        user = SlackUser(
            self.ids.make("U"),
            name,
            is_admin=admin or owner,
            is_owner=owner or primary,
            is_primary_owner=primary,
        )
        self.users[user.id] = user
        return user

    def add_channel(
        self, name: str, *, bot_member: bool = True, private: bool = False
    ) -> SlackChannel:
        channel = SlackChannel(self.ids.make("C"), name, is_private=private)
        channel.members.update(u for u in self.users if u != BOT_USER_ID)
        if bot_member:
            channel.members.add(BOT_USER_ID)
        self.channels[channel.id] = channel
        return channel

    def store_message(self, channel: str, message: dict[str, Any]) -> dict[str, Any]:
        message.setdefault("type", "message")
        self.messages[(channel, message["ts"])] = message
        root = message.get("thread_ts")
        if root and root != message["ts"] and (channel, root) in self.messages:
            parent = self.messages[(channel, root)]
            parent["thread_ts"] = root
            parent["reply_count"] = int(parent.get("reply_count", 0)) + 1
        return message

    def channel_messages(self, channel: str) -> list[dict[str, Any]]:
        found = [m for (c, _), m in self.messages.items() if c == channel]
        return sorted(found, key=lambda m: float(m["ts"]))

    def thread(self, channel: str, root: str) -> list[dict[str, Any]]:
        """The root then its replies, oldest first (as conversations.replies)."""
        return [
            m
            for m in self.channel_messages(channel)
            if m["ts"] == root or m.get("thread_ts") == root
        ]

    def files_in(self, channel: str, thread_ts: str | None = None) -> list[SlackFile]:
        """Files shared into the channel (into that thread when given), in share order."""
        found = []
        for message in self.channel_messages(channel):
            if thread_ts is not None and message.get("thread_ts") != thread_ts:
                continue
            found += [self.files[f["id"]] for f in message.get("files") or []]
        return found

"""The fake Discord's wire format: recorded requests, interactions, error envelopes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.discord.payloads import (
    EPHEMERAL,
    LOADING,
    FakeUser,
    shard_of,
)

JSON_TYPE = "application/json"  # exactly: discord.py parses JSON only with this header
API_PREFIX = "/api/v10"
MESSAGE_CONTENT_INTENT = 1 << 15
GATEWAY_MESSAGE_CONTENT_LIMITED = 1 << 19  # application flag: the portal switch is on
DISALLOWED_INTENTS = 4014  # gateway close code
INVALID_SHARD = 4010  # gateway close code: a shard out of range (or already connected here)
SHARDING_REQUIRED = 4011  # gateway close code: the bot is in too many guilds for one session

# Interaction types and callback types (Discord API docs).
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
MODAL_SUBMIT = 5
CALLBACK_MESSAGE = 4
CALLBACK_DEFERRED_MESSAGE = 5
CALLBACK_DEFERRED_UPDATE = 6
CALLBACK_UPDATE_MESSAGE = 7
CALLBACK_MODAL = 9


@dataclass
class RecordedFile:
    field: str
    filename: str
    content_type: str | None
    data: bytes


@dataclass
class RecordedRequest:
    seq: int
    method: str
    path: str  # without the /api/v10 prefix
    query: dict[str, str]
    json: Any  # the JSON body, or the multipart payload_json
    files: list[RecordedFile]
    clock_at: float  # the injected clock's monotonic time
    real_at: float  # time.monotonic()
    status: int = 0
    response: Any = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def matches(self, method: str, pattern: str) -> bool:
        return self.method == method and re.fullmatch(pattern, self.path) is not None


@dataclass
class FakeInteraction:
    id: str
    token: str
    type: int
    payload: dict[str, Any]
    channel_id: str
    user: FakeUser
    dispatched_clock: float
    dispatched_real: float
    callback: dict[str, Any] | None = None
    callback_clock: float | None = None
    callback_real: float | None = None
    original_message_id: str | None = None
    answers: list[dict[str, Any]] = field(default_factory=list)  # messages it produced

    @property
    def callback_type(self) -> int | None:
        return None if self.callback is None else int(self.callback["type"])

    def answer(self, *, ephemeral: bool | None = None) -> dict[str, Any] | None:
        """The latest finished message this interaction produced (not a "thinking" one)."""
        for message in reversed(self.answers):
            if message["flags"] & LOADING or message.get("deleted"):
                continue
            if ephemeral is None or bool(message["flags"] & EPHEMERAL) == ephemeral:
                return message
        return None

    def text(self) -> str:
        """Content and embed texts of the latest answer, for assertions."""
        message = self.answer()
        if message is None:
            return ""
        parts = [message.get("content") or ""]
        for embed in message.get("embeds") or []:
            parts += [embed.get("title") or "", embed.get("description") or ""]
            parts += [f"{f.get('name')}: {f.get('value')}" for f in embed.get("fields") or []]
        return "\n".join(p for p in parts if p)

    @property
    def ack_real_seconds(self) -> float | None:
        """Real seconds between dispatch and the first response, as Discord would see it."""
        return None if self.callback_real is None else self.callback_real - self.dispatched_real


@dataclass
class ScriptedFailure:
    method: str
    pattern: str
    status: int
    code: int
    message: str
    times: int
    retry_after: float | None
    via: bool
    is_global: bool


@dataclass
class HangRule:
    """The next `times` requests matching `method`, the path regex and `when` (given
    the recorded request, files included) are never answered."""

    method: str
    pattern: str
    times: int
    when: Callable[[RecordedRequest], bool] | None = None
    # Handled first (a message is stored), then the answer never goes out.
    after_storing: bool = False


class ApiError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": JSON_TYPE, **(headers or {})},
    )


def error_response(exc: ApiError) -> web.Response:
    return json_response({"message": exc.message, "code": exc.code}, exc.status)


@dataclass
class GatewayConnection:
    ws: web.WebSocketResponse
    seq: int = 0
    ready: bool = False
    shard: tuple[int, int] | None = None  # (id, count) from IDENTIFY; None: every guild

    def owns(self, guild_id: str | None) -> bool:
        """Whether this session gets the guild's events (no guild: DMs, on shard 0)."""
        if self.shard is None:
            return True
        shard_id, count = self.shard
        if guild_id is None:
            return shard_id == 0
        return shard_of(guild_id, count) == shard_id


@dataclass
class IdentifyRecord:
    """One IDENTIFY the fake gateway accepted or refused."""

    shard: tuple[int, int] | None
    bucket: int  # shard_id % max_concurrency (0 without a shard)
    clock_at: float  # the injected clock's monotonic time
    real_at: float  # time.monotonic()
    close_code: int | None = None  # set when the session was refused


@dataclass
class Upload:
    payload: dict[str, Any]
    files: list[RecordedFile] = field(default_factory=list)


UPLOAD: web.RequestKey[Upload] = web.RequestKey("upload", Upload)


def walk_components(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Components in order, through action rows (1) and labels (18)."""
    found: list[dict[str, Any]] = []
    for component in components:
        found.append(component)
        found += walk_components(component.get("components") or [])
        if component.get("component"):
            found += walk_components([component["component"]])
    return found


def guess_type(filename: str) -> str:
    lower = filename.lower()
    for suffix, ctype in (
        (".png", "image/png"),
        (".jpg", "image/jpeg"),
        (".jpeg", "image/jpeg"),
        (".webp", "image/webp"),
        (".bmp", "image/bmp"),
        (".gif", "image/gif"),
    ):
        if lower.endswith(suffix):
            return ctype
    return "application/octet-stream"

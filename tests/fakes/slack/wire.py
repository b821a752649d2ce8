"""The fake Slack's wire format: envelopes, recorded calls, scripted faults, ids.

Slack answers every Web API call with HTTP 200 and `{"ok": ...}` (errors included:
`{"ok": false, "error": "not_in_channel"}`), except rate limits: HTTP 429 with a
`Retry-After` header in seconds and `{"ok": false, "error": "ratelimited"}`
[docs.slack.dev/apis/web-api/rate-limits]. Bodies are JSON with charset=utf-8.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

# Exactly what slack.com sends.
JSON_TYPE = "application/json; charset=utf-8"
API_PREFIX = "/api/"


@dataclass
class RecordedCall:
    """One Web API call as the fake read it (query, form and JSON merged into `args`)."""

    seq: int
    method: str  # the API method, e.g. "chat.postMessage"
    http_method: str
    args: dict[str, Any]
    token: str | None  # from the Authorization header, else the `token` argument
    content_type: str
    clock_at: float
    real_at: float
    response: dict[str, Any] | None = None
    status: int = 0

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response and self.response.get("ok"))

    @property
    def error(self) -> str | None:
        return None if self.response is None else self.response.get("error")


@dataclass
class RecordedFetch:
    """One GET on the file host: which host was asked and whether a token came with it."""

    path: str
    host: str
    authorization: str | None
    status: int = 0


@dataclass
class Fault:
    """The next `times` calls of `method` fail: `error` in an ok:false envelope with
    `status` (429 adds Retry-After), or never answered when `hang`."""

    method: str
    error: str
    status: int = 200
    retry_after: int | None = None
    times: int = 1
    hang: bool = False


class SlackError(Exception):
    """Raised by a handler: answered as `{"ok": false, "error": code}` with HTTP 200."""

    def __init__(self, code: str, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.extra = extra


def ok_response(data: Mapping[str, Any] | None = None) -> web.Response:
    return json_response({"ok": True, **(data or {})})


def json_response(
    data: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": JSON_TYPE, **(headers or {})},
    )


def fault_response(fault: Fault) -> web.Response:
    if fault.status == 429:
        headers = {"Retry-After": str(fault.retry_after if fault.retry_after is not None else 1)}
        return json_response({"ok": False, "error": fault.error}, 429, headers)
    return json_response({"ok": False, "error": fault.error}, fault.status)


def decode_args(value: Any) -> Any:
    """Slack's form encoding carries nested values (blocks, files, view) as JSON text."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class Ids:
    """Slack-shaped ids and message timestamps ("1700000000.000100"), unique per fake."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def make(self, prefix: str) -> str:
        return f"{prefix}{next(self._counter):08X}"

    def ts(self, now: float) -> str:
        # Microsecond field from a counter: two messages in one second stay ordered.
        return f"{int(now)}.{next(self._counter) % 1_000_000:06d}"


@dataclass
class Ack:
    envelope_id: str
    payload: dict[str, Any] | None
    latency: float  # real seconds from sending the envelope to reading its ack


@dataclass
class Envelope:
    """One Socket Mode delivery; `acked` resolves with the app's ack."""

    envelope_id: str
    type: str  # events_api | slash_commands | interactive
    payload: dict[str, Any]
    sent_real: float
    retry_attempt: int = 0
    retry_reason: str = ""
    ack: Ack | None = None
    acked: asyncio.Event = field(default_factory=asyncio.Event)

    def frame(self) -> dict[str, Any]:
        frame: dict[str, Any] = {
            "envelope_id": self.envelope_id,
            "payload": self.payload,
            "type": self.type,
            "accepts_response_payload": self.type != "events_api",
        }
        if self.type == "events_api":
            frame["retry_attempt"] = self.retry_attempt
            frame["retry_reason"] = self.retry_reason
        return frame


def matches(pattern: str, method: str) -> bool:
    return re.fullmatch(pattern, method) is not None

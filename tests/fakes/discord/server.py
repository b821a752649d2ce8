"""A fake Discord: REST (/api/v10), the gateway websocket and the CDN on one
aiohttp server on 127.0.0.1, close enough to the real one that the REAL
discord.py client runs against it unchanged.

It records every REST call (multipart uploads included), keeps channels,
threads and messages with snowflake ids, dispatches gateway events, and
enforces Discord's rules with an injectable clock: the 3 s interaction
callback window (404/10062), the 15 min token (401/50027), the upload limit
(413/40005), at most 10 files (400/30015), channel permissions (403/50013),
nonces with `enforce_nonce` (a repeated nonce returns the existing message),
plus scripted failures (429 with Via + retry_after, 5xx, anything).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import BodyPartReader, WSMsgType, web

from bot.core.clock import Clock, SystemClock
from tests.fakes.discord.payloads import (
    ADMIN_PERMISSIONS,
    ADMINISTRATOR,
    ATTACH_FILES,
    BOT_PERMISSIONS,
    CREATE_PUBLIC_THREADS,
    EPHEMERAL,
    GUILD_TEXT,
    LOADING,
    PUBLIC_THREAD,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    VIEW_CHANNEL,
    FakeAttachment,
    FakeChannel,
    FakeRole,
    FakeUser,
    Snowflakes,
    image_size,
    iso_now,
)

T = TypeVar("T")
JSON_TYPE = "application/json"  # exactly: discord.py parses JSON only with this header
API_PREFIX = "/api/v10"
MESSAGE_CONTENT_INTENT = 1 << 15
GATEWAY_MESSAGE_CONTENT_LIMITED = 1 << 19  # application flag: the portal switch is on
DISALLOWED_INTENTS = 4014

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
class _ScriptedFailure:
    method: str
    pattern: str
    status: int
    code: int
    message: str
    times: int
    retry_after: float | None
    via: bool
    is_global: bool


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
class _Connection:
    ws: web.WebSocketResponse
    seq: int = 0
    ready: bool = False


@dataclass
class _Upload:
    payload: dict[str, Any]
    files: list[RecordedFile] = field(default_factory=list)


UPLOAD: web.RequestKey[_Upload] = web.RequestKey("upload", _Upload)


class FakeDiscord:
    CALLBACK_WINDOW = 3.0
    TOKEN_LIFETIME = 15 * 60.0
    MAX_FILES = 10

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
        self.errors: list[Exception] = []  # exceptions inside the fake's handlers
        self.in_flight = 0  # REST requests being answered
        self.commands: dict[str | None, list[dict[str, Any]]] = {}
        self._command_ids: dict[str, str] = {}
        self._nonces: dict[tuple[str, str], str] = {}
        self._scripted: list[_ScriptedFailure] = []
        self._connections: list[_Connection] = []
        self._seq = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.general = self.add_channel("general")

    # ------------------------------------------------------------------ server
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def start(self) -> FakeDiscord:
        app = web.Application(middlewares=[self._middleware], client_max_size=200 * 1024 * 1024)
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def close(self) -> None:
        for conn in list(self._connections):
            await conn.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _routes(self, app: web.Application) -> None:
        api = API_PREFIX
        r = app.router
        r.add_get("/gateway", self._gateway)
        r.add_get("/attachments/{channel}/{attachment}/{filename}", self._cdn)
        r.add_get(api + "/users/@me", self._me)
        r.add_get(api + "/users/{user}", self._get_user)
        r.add_get(api + "/oauth2/applications/@me", self._app_info)
        r.add_get(api + "/applications/@me", self._app_info)
        r.add_get(api + "/gateway", self._gateway_info)
        r.add_get(api + "/gateway/bot", self._gateway_info)
        r.add_put(api + "/applications/{app}/commands", self._put_commands)
        r.add_get(api + "/applications/{app}/commands", self._get_commands)
        r.add_put(api + "/applications/{app}/guilds/{guild}/commands", self._put_commands)
        r.add_get(api + "/applications/{app}/guilds/{guild}/commands", self._get_commands)
        r.add_post(api + "/interactions/{id}/{token}/callback", self._callback)
        r.add_post(api + "/webhooks/{app}/{token}", self._followup)
        r.add_route("*", api + "/webhooks/{app}/{token}/messages/{message}", self._webhook_message)
        r.add_get(api + "/channels/{channel}", self._get_channel)
        r.add_post(api + "/channels/{channel}/messages", self._post_message)
        r.add_route("*", api + "/channels/{channel}/messages/{message}", self._channel_message)
        r.add_post(
            api + "/channels/{channel}/messages/{message}/threads", self._thread_from_message
        )
        r.add_post(api + "/channels/{channel}/threads", self._thread_without_message)
        r.add_post(api + "/channels/{channel}/typing", self._typing)
        r.add_get(api + "/guilds/{guild}/members/{user}", self._get_member)

    # ------------------------------------------------------------- recording
    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        if request.path == "/gateway":
            response: web.StreamResponse = await handler(request)
            return response
        path = request.path.removeprefix(API_PREFIX)
        upload = await self._read_body(request)
        rec = RecordedRequest(
            seq=next(self._seq),
            method=request.method,
            path=path,
            query=dict(request.query),
            json=upload.payload if upload.payload or upload.files else None,
            files=upload.files,
            clock_at=self.clock.monotonic(),
            real_at=time.monotonic(),
        )
        request[UPLOAD] = upload
        self.requests.append(rec)
        self.in_flight += 1
        try:
            return await self._answer(request, handler, rec)
        finally:
            self.in_flight -= 1

    async def _answer(
        self, request: web.Request, handler: Callable[[web.Request], Any], rec: RecordedRequest
    ) -> web.StreamResponse:
        path = rec.path
        scripted = self._take_failure(request.method, path)
        if scripted is not None:
            response = self._scripted_response(scripted)
        else:
            try:
                response = await handler(request)
            except ApiError as exc:
                response = error_response(exc)
            except Exception as exc:  # a bug of the fake: fail loudly, without 5xx retries
                self.errors.append(exc)
                response = error_response(ApiError(400, 0, f"fake Discord bug: {exc!r}"))
        rec.status = response.status
        if (
            isinstance(response, web.Response)
            and response.body
            and JSON_TYPE in (response.content_type or "")
        ):
            rec.response = json.loads(response.body)  # type: ignore[arg-type]
        await self._notify()
        return response

    async def _read_body(self, request: web.Request) -> _Upload:
        if request.method in ("GET", "DELETE") or not request.body_exists:
            return _Upload(payload={})
        if request.content_type.startswith("multipart/"):
            upload = _Upload(payload={})
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    continue
                data = bytes(await part.read(decode=False))
                if part.name == "payload_json":
                    upload.payload = json.loads(data)
                elif part.filename is not None:
                    upload.files.append(
                        RecordedFile(
                            field=part.name or "",
                            filename=part.filename,
                            content_type=part.headers.get("Content-Type"),
                            data=data,
                        )
                    )
            return upload
        raw = await request.read()
        return _Upload(payload=json.loads(raw) if raw else {})

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

    async def wait_for(
        self,
        predicate: Callable[[RecordedRequest], bool],
        *,
        timeout: float = 5.0,
        after: int = 0,
    ) -> RecordedRequest:
        """The first answered request (with seq > `after`) that matches `predicate`."""

        def find() -> RecordedRequest | None:
            return next(
                (r for r in self.requests if r.seq > after and r.status and predicate(r)), None
            )

        return await self.wait_until(find, timeout=timeout)

    async def wait_request(
        self, method: str, pattern: str, *, timeout: float = 5.0, after: int = 0
    ) -> RecordedRequest:
        return await self.wait_for(
            lambda r: r.matches(method, pattern), timeout=timeout, after=after
        )

    def find_requests(self, method: str, pattern: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.matches(method, pattern)]

    @property
    def last_seq(self) -> int:
        return self.requests[-1].seq if self.requests else 0

    # ------------------------------------------------------------- scripting
    def fail_next(
        self,
        method: str,
        pattern: str,
        status: int,
        *,
        code: int = 0,
        message: str = "scripted failure",
        times: int = 1,
        retry_after: float | None = None,
        via: bool = True,
        is_global: bool = False,
    ) -> None:
        """The next `times` requests matching `method` and the path regex fail."""
        self._scripted.append(
            _ScriptedFailure(
                method, pattern, status, code, message, times, retry_after, via, is_global
            )
        )

    def _take_failure(self, method: str, path: str) -> _ScriptedFailure | None:
        for failure in self._scripted:
            if failure.method == method and re.fullmatch(failure.pattern, path):
                failure.times -= 1
                if failure.times <= 0:
                    self._scripted.remove(failure)
                return failure
        return None

    @staticmethod
    def _scripted_response(failure: _ScriptedFailure) -> web.Response:
        if failure.status == 429:
            retry_after = failure.retry_after if failure.retry_after is not None else 0.01
            headers = {"Retry-After": str(max(1, round(retry_after)))}
            if failure.via:
                headers["Via"] = "1.1 google"
            body = {
                "message": "You are being rate limited.",
                "retry_after": retry_after,
                "global": failure.is_global,
            }
            return json_response(body, 429, headers)
        return json_response({"message": failure.message, "code": failure.code}, failure.status)

    # ---------------------------------------------------------- world state
    def add_user(self, name: str, *, admin: bool = False, role_ids: Sequence[str] = ()) -> FakeUser:
        user = FakeUser(id=self._ids.next(), username=name, admin=admin, role_ids=list(role_ids))
        self.users[user.id] = user
        return user

    def add_role(self, name: str, permissions: int = 0) -> FakeRole:
        role = FakeRole(id=self._ids.next(), name=name, permissions=permissions)
        self.roles[role.id] = role
        return role

    def add_channel(self, name: str, *, bot_deny: int = 0) -> FakeChannel:
        channel = FakeChannel(
            id=self._ids.next(),
            guild_id=self.guild_id,
            name=name,
            bot_deny=bot_deny,
            position=len(self.channels),
        )
        self.channels[channel.id] = channel
        return channel

    async def create_channel(self, name: str, *, bot_deny: int = 0) -> FakeChannel:
        """A channel made while the bot is connected (CHANNEL_CREATE follows)."""
        channel = self.add_channel(name, bot_deny=bot_deny)
        await self._dispatch_all("CHANNEL_CREATE", self._channel_payload(channel))
        return channel

    async def delete_message(self, message_id: str) -> None:
        """Someone (a moderator, the author) deletes a message."""
        await self._delete_message(self.messages[message_id])

    async def add_thread(self, parent: FakeChannel, name: str, owner: FakeUser) -> FakeChannel:
        thread = self._new_thread(self._ids.next(), parent, name, owner)
        await self._dispatch_all(
            "THREAD_CREATE", {**self._channel_payload(thread), "newly_created": True}
        )
        return thread

    async def set_bot_deny(self, channel: FakeChannel, deny: int) -> None:
        """Change the bot's permission overwrite in a channel (CHANNEL_UPDATE follows)."""
        channel.bot_deny = deny
        await self._dispatch_all("CHANNEL_UPDATE", self._channel_payload(channel))

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
            (channel or self.general).id, filename, content_type or _guess_type(filename), data
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

    # ------------------------------------------------------------ dispatching
    @property
    def connected(self) -> bool:
        return any(c.ready for c in self._connections)

    async def wait_connected(self, timeout: float = 5.0) -> None:
        await self.wait_until(lambda: self.connected, timeout=timeout)

    @property
    def intents(self) -> int:
        return int(self.identifies[-1]["intents"]) if self.identifies else 0

    def _content_visible(self) -> bool:
        return self.message_content_allowed and bool(self.intents & MESSAGE_CONTENT_INTENT)

    async def _dispatch_all(self, event: str, data: dict[str, Any]) -> None:
        for conn in list(self._connections):
            if conn.ready and not conn.ws.closed:
                await self._send_dispatch(conn, event, data)
        await self._notify()

    async def _send_dispatch(self, conn: _Connection, event: str, data: dict[str, Any]) -> None:
        conn.seq += 1
        await conn.ws.send_str(json.dumps({"op": 0, "t": event, "s": conn.seq, "d": data}))

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send one gateway event to the connected bot."""
        if not self.connected:
            raise RuntimeError("no bot is connected to the fake gateway")
        await self._dispatch_all(event, data)

    async def post_user_message(
        self,
        author: FakeUser,
        content: str = "",
        *,
        channel: FakeChannel | None = None,
        attachments: Sequence[FakeAttachment] = (),
        embeds: Sequence[dict[str, Any]] = (),
        reply_to: str | None = None,
        mention_bot: bool = False,
        include_referenced: bool = True,
    ) -> dict[str, Any]:
        """A user posts a message (MESSAGE_CREATE goes to the bot)."""
        channel = channel or self.general
        if mention_bot:
            content = f"<@{self.bot.id}> {content}".strip()
        msg = self._new_message(
            channel,
            author,
            content=content,
            attachments=[a.payload() for a in attachments],
            embeds=list(embeds),
            reply_to=reply_to,
        )
        event = self._gateway_message(msg)
        if not include_referenced:
            event.pop("referenced_message", None)
        await self.dispatch("MESSAGE_CREATE", event)
        return msg

    def _interaction(
        self,
        itype: int,
        user: FakeUser,
        channel: FakeChannel,
        data: dict[str, Any],
        message: dict[str, Any] | None = None,
    ) -> FakeInteraction:
        iid = self._ids.next()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)
        permissions = user.guild_permissions()
        payload: dict[str, Any] = {
            "id": iid,
            "application_id": self.application_id,
            "type": itype,
            "token": token,
            "version": 1,
            "attachment_size_limit": self.attachment_size_limit,
            "guild_id": self.guild_id,
            "guild": {"id": self.guild_id, "locale": "en-US", "features": []},
            "channel_id": channel.id,
            "channel": {**self._channel_payload(channel), "permissions": str(permissions)},
            "member": {**user.member_payload(), "permissions": str(permissions)},
            "app_permissions": str(self.bot_permissions(channel)),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": self.guild_id},
            "context": 0,
            "data": data,
        }
        if message is not None:
            payload["message"] = message
        return FakeInteraction(
            id=iid,
            token=token,
            type=itype,
            payload=payload,
            channel_id=channel.id,
            user=user,
            dispatched_clock=0.0,
            dispatched_real=0.0,
        )

    async def _send_interaction(self, interaction: FakeInteraction) -> FakeInteraction:
        self.interactions[interaction.id] = interaction
        self._by_token[interaction.token] = interaction
        interaction.dispatched_clock = self.clock.monotonic()
        interaction.dispatched_real = time.monotonic()
        await self.dispatch("INTERACTION_CREATE", interaction.payload)
        return interaction

    def _command_id(self, name: str) -> str:
        return self._command_ids.setdefault(name, self._ids.next())

    async def slash(
        self,
        name: str,
        user: FakeUser,
        options: Mapping[str, Any] | None = None,
        *,
        channel: FakeChannel | None = None,
        subcommand: str | None = None,
        group: str | None = None,
    ) -> FakeInteraction:
        """A user runs `/name [group] [subcommand] options...` (values: str, int, float,
        bool, FakeAttachment, FakeUser, FakeRole or FakeChannel)."""
        channel = channel or self.general
        resolved: dict[str, dict[str, Any]] = {}
        opts = [self._option(k, v, resolved) for k, v in (options or {}).items()]
        if subcommand is not None:
            opts = [{"name": subcommand, "type": 1, "options": opts}]
        if group is not None:
            opts = [{"name": group, "type": 2, "options": opts}]
        data: dict[str, Any] = {
            "id": self._command_id(name),
            "name": name,
            "type": 1,
            "options": opts,
        }
        if resolved:
            data["resolved"] = resolved
        return await self._send_interaction(
            self._interaction(APPLICATION_COMMAND, user, channel, data)
        )

    def _option(self, name: str, value: Any, resolved: dict[str, dict[str, Any]]) -> dict[str, Any]:
        if isinstance(value, FakeAttachment):
            resolved.setdefault("attachments", {})[value.id] = value.payload()
            return {"name": name, "type": 11, "value": value.id}
        if isinstance(value, FakeUser):
            resolved.setdefault("users", {})[value.id] = value.payload()
            member = {**value.member_payload(with_user=False)}
            member["permissions"] = str(value.guild_permissions())
            resolved.setdefault("members", {})[value.id] = member
            return {"name": name, "type": 6, "value": value.id}
        if isinstance(value, FakeRole):
            position = list(self.roles).index(value.id)
            resolved.setdefault("roles", {})[value.id] = value.payload(position)
            return {"name": name, "type": 8, "value": value.id}
        if isinstance(value, FakeChannel):
            channel = {**self._channel_payload(value), "permissions": str(ADMIN_PERMISSIONS)}
            resolved.setdefault("channels", {})[value.id] = channel
            return {"name": name, "type": 7, "value": value.id}
        if isinstance(value, bool):
            return {"name": name, "type": 5, "value": value}
        if isinstance(value, int):
            return {"name": name, "type": 4, "value": value}
        if isinstance(value, float):
            return {"name": name, "type": 10, "value": value}
        return {"name": name, "type": 3, "value": str(value)}

    async def message_command(self, name: str, user: FakeUser, message_id: str) -> FakeInteraction:
        """A user picks `name` in a message's Apps menu (resolved message included,
        whatever the MESSAGE_CONTENT intent)."""
        message = self.messages[message_id]
        channel = self.channels[message["channel_id"]]
        data = {
            "id": self._command_id(name),
            "name": name,
            "type": 3,
            "target_id": message_id,
            "resolved": {"messages": {message_id: message}},
        }
        return await self._send_interaction(
            self._interaction(APPLICATION_COMMAND, user, channel, data)
        )

    async def click(self, user: FakeUser, message_id: str, custom_id: str) -> FakeInteraction:
        message = self.messages[message_id]
        if custom_id not in self.custom_ids(message):
            raise AssertionError(f"message {message_id} has no button {custom_id!r}")
        channel = self.channels[message["channel_id"]]
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._send_interaction(
            self._interaction(MESSAGE_COMPONENT, user, channel, data, message=message)
        )

    async def submit_modal(
        self,
        user: FakeUser,
        custom_id: str,
        values: Mapping[str, str],
        *,
        channel: FakeChannel | None = None,
    ) -> FakeInteraction:
        rows = [
            {"type": 1, "components": [{"type": 4, "custom_id": key, "value": value}]}
            for key, value in values.items()
        ]
        data = {"custom_id": custom_id, "components": rows}
        return await self._send_interaction(
            self._interaction(MODAL_SUBMIT, user, channel or self.general, data)
        )

    async def fill_modal(
        self, opened: FakeInteraction, *values: str, user: FakeUser | None = None
    ) -> FakeInteraction:
        """Submit the modal `opened` answered with, filling its text inputs in order."""
        callback = await self.wait_callback(opened)
        if callback.get("type") != CALLBACK_MODAL:
            raise AssertionError(f"the interaction was answered with {callback}, not a modal")
        modal = callback["data"]
        inputs = [c["custom_id"] for c in _walk(modal["components"]) if c.get("type") == 4]
        return await self.submit_modal(
            user or opened.user,
            modal["custom_id"],
            dict(zip(inputs, values, strict=False)),
            channel=self.channels[opened.channel_id],
        )

    async def wait_callback(
        self, interaction: FakeInteraction, timeout: float = 5.0
    ) -> dict[str, Any]:
        return await self.wait_until(lambda: interaction.callback, timeout=timeout)

    # ----------------------------------------------------------- payloads
    def _channel_payload(self, channel: FakeChannel) -> dict[str, Any]:
        return channel.payload(self.bot.id)

    def _new_thread(
        self, thread_id: str, parent: FakeChannel, name: str, owner: FakeUser
    ) -> FakeChannel:
        thread = FakeChannel(
            id=thread_id,
            guild_id=self.guild_id,
            name=name,
            type=PUBLIC_THREAD,
            parent_id=parent.id,
            owner_id=owner.id,
        )
        self.channels[thread.id] = thread
        return thread

    def _guild_payload(self) -> dict[str, Any]:
        roles = [role.payload(i) for i, role in enumerate(self.roles.values())]
        members = [u.member_payload() for u in self.users.values()]
        channels = [self._channel_payload(c) for c in self.channels.values() if not c.is_thread]
        threads = [self._channel_payload(c) for c in self.threads()]
        return {
            "id": self.guild_id,
            "name": "Fake Guild",
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
                "guild_id": self.guild_id,
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
        event = {**self._visible(msg), "guild_id": self.guild_id}
        author = self.users.get(msg["author"]["id"])
        if author is not None:
            event["member"] = author.member_payload(with_user=False)
        if event.get("referenced_message"):
            event["referenced_message"] = self._visible(event["referenced_message"])
        return event

    # ------------------------------------------------------- REST: session
    def _check_auth(self, request: web.Request) -> None:
        if not request.headers.get("Authorization", "").startswith("Bot "):
            raise ApiError(401, 0, "401: Unauthorized")

    async def _me(self, request: web.Request) -> web.Response:
        self._check_auth(request)
        return json_response(
            {**self.bot.payload(), "verified": True, "mfa_enabled": False, "flags": 0}
        )

    async def _get_user(self, request: web.Request) -> web.Response:
        user = self.users.get(request.match_info["user"])
        if user is None:
            raise ApiError(404, 10013, "Unknown User")
        return json_response(user.payload())

    async def _app_info(self, request: web.Request) -> web.Response:
        self._check_auth(request)
        return json_response(
            {
                "id": self.application_id,
                "name": "wanbot",
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self.owner.payload(),
                "verify_key": "0" * 64,
                "flags": GATEWAY_MESSAGE_CONTENT_LIMITED if self.message_content_allowed else 0,
                "team": None,
                "summary": "",
            }
        )

    async def _gateway_info(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 1000,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        )

    async def _put_commands(self, request: web.Request) -> web.Response:
        self._check_auth(request)
        if request.match_info["app"] != self.application_id:
            raise ApiError(403, 50001, "Missing Access")
        guild = request.match_info.get("guild")
        echoed = []
        for command in request[UPLOAD].payload or []:
            cmd = {
                "id": self._command_id(command["name"]),
                "application_id": self.application_id,
                "version": self._ids.next(),
                "description": command.get("description", ""),
                **command,
            }
            if guild:
                cmd["guild_id"] = guild
            echoed.append(cmd)
        self.commands[guild] = echoed
        return json_response(echoed)

    async def _get_commands(self, request: web.Request) -> web.Response:
        return json_response(self.commands.get(request.match_info.get("guild"), []))

    # --------------------------------------------------- REST: interactions
    def _interaction_by_token(self, app_id: str, token: str) -> FakeInteraction:
        interaction = self._by_token.get(token)
        if interaction is None or app_id != self.application_id:
            raise ApiError(404, 10015, "Unknown Webhook")
        if self.clock.monotonic() - interaction.dispatched_clock > self.TOKEN_LIFETIME:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        return interaction

    def _check_files(self, files: Sequence[RecordedFile]) -> None:
        if len(files) > self.MAX_FILES:
            raise ApiError(
                400, 30015, f"Maximum number of attachments in a message reached ({self.MAX_FILES})"
            )
        if any(len(f.data) > self.attachment_size_limit for f in files):
            raise ApiError(413, 40005, "Request entity too large")

    async def _callback(self, request: web.Request) -> web.Response:
        interaction = self.interactions.get(request.match_info["id"])
        if interaction is None or interaction.token != request.match_info["token"]:
            raise ApiError(404, 10062, "Unknown interaction")
        late_clock = self.clock.monotonic() - interaction.dispatched_clock > self.CALLBACK_WINDOW
        late_real = time.monotonic() - interaction.dispatched_real > self.CALLBACK_WINDOW
        if late_clock or (self.enforce_real_time_window and late_real):
            raise ApiError(404, 10062, "Unknown interaction")
        if interaction.callback is not None:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        upload = request[UPLOAD]
        body = upload.payload
        ctype = int(body.get("type", 0))
        data = body.get("data") or {}
        self._check_files(upload.files)
        channel = self.channels[interaction.channel_id]
        message: dict[str, Any] | None = None
        if ctype == CALLBACK_MESSAGE:
            message = self._message_from_payload(
                channel, data, upload.files, flags=int(data.get("flags", 0)) & EPHEMERAL
            )
        elif ctype == CALLBACK_DEFERRED_MESSAGE:
            flags = (int(data.get("flags", 0)) & EPHEMERAL) | LOADING
            message = self._new_message(channel, self.bot, flags=flags)
        elif ctype == CALLBACK_UPDATE_MESSAGE:
            target = interaction.payload.get("message")
            if target is None:
                raise ApiError(400, 40060, "Interaction has no message to update")
            message = self._edit_message(self.messages[target["id"]], data, upload.files)
        elif ctype not in (CALLBACK_DEFERRED_UPDATE, CALLBACK_MODAL):
            raise ApiError(400, 50035, f"Invalid Form Body: unknown callback type {ctype}")
        interaction.callback = body
        interaction.callback_clock = self.clock.monotonic()
        interaction.callback_real = time.monotonic()
        answer: dict[str, Any] = {
            "interaction": {
                "id": interaction.id,
                "type": interaction.type,
                "response_message_loading": ctype == CALLBACK_DEFERRED_MESSAGE,
                "response_message_ephemeral": bool(message and message["flags"] & EPHEMERAL),
            }
        }
        if message is not None:
            if ctype != CALLBACK_UPDATE_MESSAGE:
                interaction.original_message_id = message["id"]
                interaction.answers.append(message)
                await self._announce(message)
            answer["interaction"]["response_message_id"] = message["id"]
            answer["resource"] = {"type": ctype, "message": message}
        return json_response(answer)

    async def _followup(self, request: web.Request) -> web.Response:
        interaction = self._interaction_by_token(
            request.match_info["app"], request.match_info["token"]
        )
        if interaction.callback is None:
            raise ApiError(404, 10015, "Unknown Webhook")
        upload = request[UPLOAD]
        self._check_files(upload.files)
        original = self.messages.get(interaction.original_message_id or "")
        if original is not None and original["flags"] & LOADING:
            # Discord: the first follow-up after a deferral replaces the "thinking" message.
            message = self._edit_message(original, upload.payload, upload.files)
        else:
            channel = self.channels[interaction.channel_id]
            flags = int(upload.payload.get("flags", 0)) & EPHEMERAL
            message = self._message_from_payload(channel, upload.payload, upload.files, flags=flags)
            interaction.answers.append(message)
            await self._announce(message)
        if request.query.get("wait") in ("1", "true", "True"):
            return json_response(message)
        return web.Response(status=204)

    async def _webhook_message(self, request: web.Request) -> web.StreamResponse:
        interaction = self._interaction_by_token(
            request.match_info["app"], request.match_info["token"]
        )
        message_id = request.match_info["message"]
        if message_id == "@original":
            message_id = interaction.original_message_id or ""
        message = self.messages.get(message_id)
        if message is None:
            raise ApiError(404, 10008, "Unknown Message")
        if request.method == "GET":
            return json_response(message)
        if request.method == "PATCH":
            upload = request[UPLOAD]
            self._check_files(upload.files)
            return json_response(self._edit_message(message, upload.payload, upload.files))
        if request.method == "DELETE":
            await self._delete_message(message)
            return web.Response(status=204)
        raise ApiError(405, 0, "405: Method Not Allowed")

    # -------------------------------------------------------- REST: channels
    def _channel(self, request: web.Request) -> FakeChannel:
        channel = self.channels.get(request.match_info["channel"])
        if channel is None:
            raise ApiError(404, 10003, "Unknown Channel")
        if not self.bot_permissions(channel) & VIEW_CHANNEL:
            raise ApiError(403, 50001, "Missing Access")
        return channel

    def _require(self, channel: FakeChannel, needed: int) -> None:
        if self.bot_permissions(channel) & needed != needed:
            raise ApiError(403, 50013, "Missing Permissions")

    async def _get_channel(self, request: web.Request) -> web.Response:
        return json_response(self._channel_payload(self._channel(request)))

    async def _post_message(self, request: web.Request) -> web.Response:
        self._check_auth(request)
        channel = self._channel(request)
        upload = request[UPLOAD]
        payload = upload.payload
        self._require(channel, SEND_MESSAGES_IN_THREADS if channel.is_thread else SEND_MESSAGES)
        if upload.files:
            self._require(channel, ATTACH_FILES)
        self._check_files(upload.files)
        nonce = payload.get("nonce")
        if nonce is not None and payload.get("enforce_nonce"):
            existing = self.messages.get(self._nonces.get((self.bot.id, str(nonce)), ""))
            if existing is not None:
                return json_response(existing)
        reference = (payload.get("message_reference") or {}).get("message_id")
        reference = None if reference is None else str(reference)  # ints are snowflakes too
        if reference is not None and reference not in self.messages:
            if (payload.get("message_reference") or {}).get("fail_if_not_exists", True):
                raise ApiError(400, 50035, "Invalid Form Body: Unknown message")
            reference = None
        message = self._message_from_payload(
            channel, payload, upload.files, reply_to=reference, nonce=nonce
        )
        if nonce is not None:
            self._nonces[(self.bot.id, str(nonce))] = message["id"]
        await self._announce(message)
        return json_response(message)

    async def _channel_message(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        message = self.messages.get(request.match_info["message"])
        if message is None or message["channel_id"] != channel.id or message["flags"] & EPHEMERAL:
            raise ApiError(404, 10008, "Unknown Message")
        if request.method == "GET":
            return json_response(self._visible(message))
        if request.method == "PATCH":
            if message["author"]["id"] != self.bot.id:
                raise ApiError(403, 50005, "Cannot edit a message authored by another user")
            upload = request[UPLOAD]
            if upload.files:
                self._require(channel, ATTACH_FILES)
            self._check_files(upload.files)
            return json_response(self._edit_message(message, upload.payload, upload.files))
        if request.method == "DELETE":
            if message["author"]["id"] != self.bot.id:
                self._require(channel, 1 << 13)  # MANAGE_MESSAGES
            await self._delete_message(message)
            return web.Response(status=204)
        raise ApiError(405, 0, "405: Method Not Allowed")

    async def _thread_from_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        message = self.messages.get(request.match_info["message"])
        if message is None or message["channel_id"] != channel.id:
            raise ApiError(404, 10008, "Unknown Message")
        if channel.type != GUILD_TEXT:
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        self._require(channel, CREATE_PUBLIC_THREADS)
        if message["id"] in self.channels:
            raise ApiError(400, 160004, "A thread has already been created for this message")
        name = str(request[UPLOAD].payload.get("name") or "thread")[:100]
        # A thread started from a message has the message's id.
        thread = self._new_thread(message["id"], channel, name, self.bot)
        payload = self._channel_payload(thread)
        message["thread"] = payload
        await self._dispatch_all("THREAD_CREATE", {**payload, "newly_created": True})
        return json_response(payload, 201)

    async def _thread_without_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        if channel.type != GUILD_TEXT:
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        self._require(channel, CREATE_PUBLIC_THREADS)
        name = str(request[UPLOAD].payload.get("name") or "thread")[:100]
        thread = self._new_thread(self._ids.next(), channel, name, self.bot)
        payload = self._channel_payload(thread)
        await self._dispatch_all("THREAD_CREATE", {**payload, "newly_created": True})
        return json_response(payload, 201)

    async def _typing(self, request: web.Request) -> web.Response:
        self._channel(request)
        return web.Response(status=204)

    async def _get_member(self, request: web.Request) -> web.Response:
        user = self.users.get(request.match_info["user"])
        if user is None or request.match_info["guild"] != self.guild_id:
            raise ApiError(404, 10007, "Unknown Member")
        return json_response(user.member_payload())

    # ------------------------------------------------------ message helpers
    def _files_to_attachments(
        self, channel: FakeChannel, payload: Mapping[str, Any], files: Sequence[RecordedFile]
    ) -> list[dict[str, Any]]:
        described = {str(a.get("id")): a for a in payload.get("attachments") or []}
        stored = []
        for index, upload in enumerate(files):
            meta = described.get(str(index), {})
            content_type = upload.content_type or "application/octet-stream"
            if content_type == "application/octet-stream":
                content_type = _guess_type(upload.filename)
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

    async def _announce(self, message: dict[str, Any]) -> None:
        if not message["flags"] & EPHEMERAL:
            await self._dispatch_all("MESSAGE_CREATE", self._gateway_message(message))

    async def _delete_message(self, message: dict[str, Any]) -> None:
        self.messages.pop(message["id"], None)
        message["deleted"] = True
        await self._dispatch_all(
            "MESSAGE_DELETE",
            {"id": message["id"], "channel_id": message["channel_id"], "guild_id": self.guild_id},
        )

    # ------------------------------------------------------------------ CDN
    async def _cdn(self, request: web.Request) -> web.Response:
        attachment = self.attachments.get(request.match_info["attachment"])
        if attachment is None or attachment.filename != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=attachment.data, headers={"Content-Type": attachment.content_type})

    # -------------------------------------------------------------- gateway
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Connection(ws)
        self._connections.append(conn)
        try:
            await ws.send_str(
                json.dumps({"op": 10, "d": {"heartbeat_interval": 45000}, "s": None, "t": None})
            )
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                op = frame.get("op")
                if op == 1:
                    await ws.send_str(json.dumps({"op": 11}))
                elif op == 2:
                    await self._identify(conn, frame["d"])
                elif op == 6:
                    # No session resumption here: ask for a fresh IDENTIFY.
                    await ws.send_str(json.dumps({"op": 9, "d": False}))
        finally:
            self._connections.remove(conn)
            await self._notify()
        return ws

    async def _identify(self, conn: _Connection, data: dict[str, Any]) -> None:
        self.identifies.append(data)
        if (
            int(data.get("intents", 0)) & MESSAGE_CONTENT_INTENT
            and not self.message_content_allowed
        ):
            await conn.ws.close(code=DISALLOWED_INTENTS, message=b"Disallowed intent(s).")
            return
        ready = {
            "v": 10,
            "user": {**self.bot.payload(), "verified": True, "mfa_enabled": False, "flags": 0},
            "session_id": secrets.token_hex(16),
            "resume_gateway_url": self.gateway_url,
            "guilds": [{"id": self.guild_id, "unavailable": True}],
            "application": {"id": self.application_id, "flags": 0},
            "private_channels": [],
            "relationships": [],
        }
        await self._send_dispatch(conn, "READY", ready)
        await self._send_dispatch(conn, "GUILD_CREATE", self._guild_payload())
        conn.ready = True
        await self._notify()


def _walk(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Components in order, through action rows (1) and labels (18)."""
    found: list[dict[str, Any]] = []
    for component in components:
        found.append(component)
        found += _walk(component.get("components") or [])
        if component.get("component"):
            found += _walk([component["component"]])
    return found


def _guess_type(filename: str) -> str:
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

"""A fake Slack: the Web API (/api/<method>), Socket Mode (/link), file hosting and
upload URLs on one aiohttp server on 127.0.0.1, close enough to slack.com that the
REAL slack_bolt AsyncApp and slack_sdk AsyncWebClient run against it unchanged
(`AsyncWebClient(base_url=fake.api_base)`; the trailing slash matters).

Web API calls are read from the query string, a form or a JSON body (Slack takes
all three), recorded in `calls`, and answered from the World; `fail_next` scripts
errors (`not_in_channel`, 429 + Retry-After, ...) and `hang_next` silence.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from typing import Any

from aiohttp import web

from bot.core.clock import Clock, SystemClock
from tests.fakes.loopback import serve_loopback
from tests.fakes.slack.hosting import FileScript, HostingMixin
from tests.fakes.slack.push import PushMixin
from tests.fakes.slack.socket import SocketModeMixin
from tests.fakes.slack.web import WebApiMixin
from tests.fakes.slack.wire import (
    API_PREFIX,
    Ack,
    Envelope,
    Fault,
    Ids,
    RecordedCall,
    RecordedFetch,
    SlackError,
    decode_args,
    fault_response,
    json_response,
    ok_response,
)
from tests.fakes.slack.world import BOT_USER_ID, SlackFile, SlackUser, World


class FakeSlack(WebApiMixin, SocketModeMixin, PushMixin, HostingMixin):
    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self.ids = Ids()
        self.world = World(self.ids)
        self.calls: list[RecordedCall] = []
        self.envelopes: list[Envelope] = []
        self.acks: list[Ack] = []
        self.unknown_acks: list[dict[str, Any]] = []
        self.sockets: list[web.WebSocketResponse] = []
        self.answer_pings = True
        self.fetches: list[RecordedFetch] = []
        self.upload_bodies: list[bytes] = []
        self.uploads: dict[str, str] = {}
        self.file_script = FileScript()
        self.errors: list[BaseException] = []  # bugs of the fake itself
        self.faults: list[Fault] = []
        self.hung: list[RecordedCall] = []
        self._connected = asyncio.Event()
        self._hang_release = asyncio.Event()
        self._changed = asyncio.Condition()
        self._seq = itertools.count(1)
        self._methods = self.web_methods()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- life

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """For `AsyncWebClient(base_url=...)`: slack_sdk joins with urljoin, so the
        trailing slash is required (without it the last segment is replaced)."""
        return f"{self.base_url}{API_PREFIX}"

    @property
    def socket_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/link/"

    async def start(self) -> FakeSlack:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_route("*", API_PREFIX + "{method}", self._api)
        r.add_get("/link/", self._socket)
        r.add_get("/files-pri/{team_file}/{name}", self._file)
        r.add_get("/files-pri/{team_file}/download/{name}", self._file)
        r.add_get("/ext/{name}", self._external)
        r.add_post("/upload/v1/{token}", self._upload)
        r.add_post("/response/{id}", self._respond)
        self._runner, self.port = await serve_loopback(app, handler_cancellation=True)
        return self

    async def close(self) -> None:
        self._hang_release.set()
        for socket in list(self.sockets):
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- world shortcuts

    def add_user(self, name: str, **kw: bool) -> SlackUser:
        return self.world.add_user(name, **kw)

    def add_channel(self, name: str, **kw: bool) -> Any:
        return self.world.add_channel(name, **kw)

    def add_file(
        self,
        user: SlackUser,
        name: str,
        data: bytes,
        *,
        mimetype: str = "image/png",
        size: tuple[int, int] | None = None,
    ) -> SlackFile:
        """A file a user uploaded (share it with `user_message`/`mention`)."""
        file = SlackFile(
            id=self.ids.make("F"),
            name=name,
            title=name,
            mimetype=mimetype,
            filetype=name.rsplit(".", 1)[-1].lower(),
            data=data,
            user=user.id,
            created=int(self.clock.now()),
            base_url=self.base_url,
            original_w=size[0] if size else None,
            original_h=size[1] if size else None,
        )
        self.world.files[file.id] = file
        return file

    @property
    def bot_user_id(self) -> str:
        return BOT_USER_ID

    # -- faults

    def fail_next(
        self,
        method: str,
        error: str,
        *,
        status: int = 200,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` calls of `method` (a regex) answer `{"ok": false, "error"}`.
        `status=429` is a rate limit (Retry-After: `retry_after` seconds, default 1)."""
        self.faults.append(Fault(method, error, status, retry_after, times))

    def rate_limit_next(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        self.fail_next(method, "ratelimited", status=429, retry_after=retry_after, times=times)

    def hang_next(self, method: str, times: int = 1) -> None:
        """The next `times` calls of `method` are recorded (in `hung`) and never answered
        (until the fake closes: then 503)."""
        self.faults.append(Fault(method, "", times=times, hang=True))

    def _take_fault(self, method: str) -> Fault | None:
        for fault in self.faults:
            if re.fullmatch(fault.method, method):
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    # -- the Web API

    async def _api(self, request: web.Request) -> web.StreamResponse:
        call = await self._read_call(request)
        self.calls.append(call)
        fault = self._take_fault(call.method)
        if fault is not None and fault.hang:
            self.hung.append(call)
            await self._notify()
            await self._hang_release.wait()
            return web.Response(status=503)
        if fault is not None:
            response = fault_response(fault)
        else:
            response = await self._dispatch(call)
        call.status = response.status
        call.response = json.loads(response.body)  # type: ignore[arg-type]
        await self._notify()
        return response

    async def _dispatch(self, call: RecordedCall) -> web.Response:
        handler = self._methods.get(call.method)
        if handler is None:
            return json_response({"ok": False, "error": "unknown_method"})
        try:
            self.check_token(call)
            return ok_response(await handler(call))
        except SlackError as exc:
            return json_response({"ok": False, "error": exc.code, **exc.extra})
        except Exception as exc:  # a bug of the fake: visible in `errors`, not a 5xx retry
            self.errors.append(exc)
            return json_response({"ok": False, "error": f"fake_slack_bug: {exc!r}"})

    async def _read_call(self, request: web.Request) -> RecordedCall:
        args: dict[str, Any] = dict(request.query)
        ctype = request.content_type
        if request.body_exists:
            if ctype == "application/json":
                raw = await request.read()
                args.update(json.loads(raw) if raw else {})
            elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
                args.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        args = {k: decode_args(v) for k, v in args.items()}
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
        return RecordedCall(
            seq=next(self._seq),
            method=request.match_info["method"],
            http_method=request.method,
            args=args,
            token=token or args.get("token"),
            content_type=ctype,
            clock_at=self.clock.monotonic(),
            real_at=time.monotonic(),
        )

    # -- waiting

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_call(self, method: str, *, after: int = 0, timeout: float = 5.0) -> RecordedCall:
        """The first answered call of `method` with seq > `after`."""

        def find() -> RecordedCall | None:
            return next(
                (c for c in self.calls if c.seq > after and c.status and c.method == method),
                None,
            )

        async with asyncio.timeout(timeout), self._changed:
            while (found := find()) is None:
                await self._changed.wait()
        return found

    def calls_of(self, method: str) -> list[RecordedCall]:
        return [c for c in self.calls if c.method == method]

    @property
    def last_seq(self) -> int:
        return self.calls[-1].seq if self.calls else 0

    def bot_messages(self, channel: str) -> list[dict[str, Any]]:
        return [m for m in self.world.channel_messages(channel) if m.get("user") == BOT_USER_ID]

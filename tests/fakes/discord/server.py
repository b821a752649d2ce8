"""A fake Discord: REST (/api/v10), the gateway websocket and the CDN on one
aiohttp server on 127.0.0.1, close enough to the real one that the REAL
discord.py client runs against it unchanged.

It records every REST call (multipart uploads included), keeps channels,
threads and messages with snowflake ids, dispatches gateway events, and
enforces Discord's rules with an injectable clock: the 3 s interaction
callback window (404/10062), the 15 min token (401/50027), the upload limit
(413/40005), at most 10 files (400/30015), channel permissions (403/50013),
nonces with `enforce_nonce` (a nonce repeated within a few minutes returns the
existing message; later it posts again, as on Discord), message history,
direct messages (dms.py: POST /users/@me/channels, 403/50007 for users who refuse
DMs), plus scripted failures (429 with Via + retry_after, 5xx, anything) and
requests that never get an answer (`hang_next`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable
from typing import Any

from aiohttp import BodyPartReader, web

from tests.fakes.discord.dms import DmMixin
from tests.fakes.discord.rest import RestMixin
from tests.fakes.discord.users import UsersMixin
from tests.fakes.discord.wire import (
    API_PREFIX,
    JSON_TYPE,
    UPLOAD,
    ApiError,
    HangRule,
    RecordedFile,
    RecordedRequest,
    ScriptedFailure,
    Upload,
    error_response,
    json_response,
)
from tests.fakes.loopback import serve_loopback


class FakeDiscord(RestMixin, UsersMixin, DmMixin):
    """The server: routes, recording, scripted failures (state and handlers are in the
    mixins: world.py, gateway.py, users.py, rest.py)."""

    async def start(self) -> FakeDiscord:
        app = web.Application(middlewares=[self._middleware], client_max_size=200 * 1024 * 1024)
        self._routes(app)
        self._runner, self.port = await serve_loopback(app)
        return self

    async def close(self) -> None:
        self._hang_release.set()  # hung requests end (with a 503) so the server can stop
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
        r.add_post(api + "/users/@me/channels", self._open_dm)
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
        r.add_get(api + "/channels/{channel}/messages", self._history)
        r.add_route("*", api + "/channels/{channel}/messages/{message}", self._channel_message)
        r.add_post(
            api + "/channels/{channel}/messages/{message}/threads", self._thread_from_message
        )
        r.add_post(api + "/channels/{channel}/threads", self._thread_without_message)
        r.add_post(api + "/channels/{channel}/typing", self._typing)
        r.add_get(api + "/guilds/{guild}/members/{user}", self._get_member)

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        if request.path == "/gateway":
            response: web.StreamResponse = await handler(request)
            return response
        path = request.path.removeprefix(API_PREFIX)
        # Counted from the start: reading a multipart upload takes loop turns of its own.
        self.in_flight += 1
        try:
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
            hang = self._take_hang(rec)
            if hang is not None:
                if hang.after_storing:
                    await self._answer(request, handler, rec)
                return await self._hang(request, rec)
            if path.startswith("/channels/") and request.method == "POST":
                channel = request.match_info.get("channel", "")
                if self.is_dm_channel(channel) and path.endswith("/messages"):
                    return await self._answer(request, lambda _: self._post_dm(request), rec)
            return await self._answer(request, handler, rec)
        finally:
            self.in_flight -= 1

    def hang_next(
        self,
        method: str,
        pattern: str,
        *,
        times: int = 1,
        when: Callable[[RecordedRequest], bool] | None = None,
        after_storing: bool = False,
    ) -> None:
        """The next `times` matching requests are read and recorded (in `hung`), then
        never answered: nothing is stored, as when Discord hangs before handling it (with
        `after_storing`, handled first: the message exists, the answer is lost). They
        do not count as in flight (waiting for them is the point). When the fake closes
        they end with a 503."""
        self._hangs.append(HangRule(method, pattern, times, when, after_storing))

    def _take_hang(self, rec: RecordedRequest) -> HangRule | None:
        for rule in self._hangs:
            if rule.method == rec.method and re.fullmatch(rule.pattern, rec.path):
                if rule.when is not None and not rule.when(rec):
                    continue
                rule.times -= 1
                if rule.times <= 0:
                    self._hangs.remove(rule)
                return rule
        return None

    async def _hang(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        self.hung.append(rec)
        self.in_flight -= 1
        self.hanging += 1
        await self._notify()
        try:
            # Until the fake closes, or the client gives up (then it no longer waits, so
            # it stops counting as hanging; aiohttp has no event for that: look often).
            while not self._hang_release.is_set() and not _gone(request):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hang_release.wait(), timeout=0.01)
        finally:
            self.in_flight += 1
            self.hanging -= 1
            await self._notify()
        if not rec.status:  # one stored before hanging keeps its status: it was made
            rec.status = 503
        return json_response({"message": "the fake Discord is closing", "code": 0}, 503)

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

    async def _read_body(self, request: web.Request) -> Upload:
        if request.method in ("GET", "DELETE") or not request.body_exists:
            return Upload(payload={})
        if request.content_type.startswith("multipart/"):
            upload = Upload(payload={})
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
        return Upload(payload=json.loads(raw) if raw else {})

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
            ScriptedFailure(
                method, pattern, status, code, message, times, retry_after, via, is_global
            )
        )

    def _take_failure(self, method: str, path: str) -> ScriptedFailure | None:
        for failure in self._scripted:
            if failure.method == method and re.fullmatch(failure.pattern, path):
                failure.times -= 1
                if failure.times <= 0:
                    self._scripted.remove(failure)
                return failure
        return None

    @staticmethod
    def _scripted_response(failure: ScriptedFailure) -> web.Response:
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


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()

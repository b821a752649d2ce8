"""The bot's one HTTP server: provider callbacks, and `/healthz` + `/metrics`.

    POST {CALLBACK_PUBLIC_URL}/callback/{provider}/{job_id}/{token}
    GET  /healthz   200 or 503 with a JSON body naming the failed check
    GET  /metrics   Prometheus text format
    GET  /media/{token}/{filename}   an input image the bot serves to the provider
                                     (bot.media; 404 once released or expired)

Webhooks carry no signature, so nothing in them is believed. The URL names the
job and carries a random per-job token (stored with the job, checked in constant
time); a valid call only makes the engine query the task's status right away.
The body is never used: a forged call cannot inject result URLs or states, and a
call for an unknown job or with a wrong token changes nothing (404). A body over
MAX_BODY is refused (413) before the engine hears of the call: from its
Content-Length before anything is read, and for a chunked body as soon as more
than MAX_BODY bytes have arrived (read and dropped, never kept).

When CALLBACK_PORT and METRICS_PORT are the same, one server carries both.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from bot.media import HostedImage
from bot.ops.health import HealthChecks
from bot.ops.metrics import CONTENT_TYPE, PromMetrics

log = logging.getLogger(__name__)

# Providers' callbacks are a few hundred bytes of JSON.
MAX_BODY = 64 * 1024
# After a refusal, what the client already sent is drained for at most this long, so
# that it reads the 413 instead of a connection reset; then the connection is closed.
_LINGER_SECONDS = 1.0


class CallbackTarget(Protocol):
    async def on_callback_request(self, provider: str, job_id: str, token: str) -> bool: ...


class MediaSource(Protocol):
    def lookup(self, token: str, filename: str) -> HostedImage | None: ...


@dataclass
class OpsEndpoints:
    """What `/healthz` and `/metrics` read."""

    health: HealthChecks
    metrics: PromMetrics
    job_counts: Callable[[], Awaitable[Mapping[str, int]]]


class HttpServer:
    """One aiohttp server with the routes it was given (callbacks, ops or both)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        callbacks: CallbackTarget | None = None,
        ops: OpsEndpoints | None = None,
        media: MediaSource | None = None,
    ) -> None:
        self._target = callbacks
        self._ops = ops
        self._media = media
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        if self._target is not None:
            app.router.add_post("/callback/{provider}/{job_id}/{token}", self._callback)
        app.router.add_get("/healthz", self._health)
        if self._ops is not None:
            app.router.add_get("/metrics", self._metrics)
        if self._media is not None:
            # GET and HEAD of one image; nothing lists what is hosted.
            app.router.add_get("/media/{token}/{filename}", self._media_file)
        return app

    async def start(self) -> None:
        runner = web.AppRunner(
            self.app(), access_log=None, shutdown_timeout=1.0, lingering_time=_LINGER_SECONDS
        )
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._runner = runner
        address = runner.addresses[0]
        self.bound_port = int(address[1])
        routes = [
            name
            for name, on in (
                ("callbacks", self._target),
                ("health and metrics", self._ops),
                ("media", self._media),
            )
            if on is not None
        ]
        log.info(
            "HTTP server (%s) listening on %s:%d",
            " + ".join(routes) or "health",
            self._host,
            self.bound_port,
        )

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _callback(self, request: web.Request) -> web.Response:
        assert self._target is not None
        if await _too_big(request):
            log.warning("refused a callback with a body over %d bytes", MAX_BODY)
            response = web.json_response({"ok": False, "error": "body too large"}, status=413)
            response.force_close()
            return response
        info = request.match_info
        try:
            known = await self._target.on_callback_request(
                info["provider"], info["job_id"], info["token"]
            )
        except Exception:
            log.exception("callback handling failed")
            return web.json_response({"ok": False}, status=500)
        if not known:
            log.info("ignored a callback for an unknown job or with a wrong token")
            return web.json_response({"ok": False}, status=404)
        return web.json_response({"ok": True})

    async def _health(self, request: web.Request) -> web.Response:
        if self._ops is None:
            return web.json_response({"ok": True})
        ok, body = await self._ops.health.run()
        return web.json_response(body, status=200 if ok else 503, dumps=_dumps)

    async def _metrics(self, request: web.Request) -> web.Response:
        assert self._ops is not None
        try:
            await self._ops.metrics.refresh(self._ops.job_counts)
        except Exception as exc:
            # The process counters are still worth serving; jobs by state keep their last value.
            log.warning("metrics: jobs by state could not be read: %s", exc)
        response = web.Response(body=self._ops.metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    async def _media_file(self, request: web.Request) -> web.Response:
        assert self._media is not None
        info = request.match_info
        image = self._media.lookup(info["token"], info["filename"])
        if image is None:
            return web.Response(status=404, text="not found")
        return web.Response(
            body=image.data,
            headers={
                "Content-Type": image.content_type,
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )


class CallbackServer(HttpServer):
    """The server with the callback route only (tests, and callbacks without metrics)."""

    def __init__(self, target: CallbackTarget, host: str, port: int) -> None:
        super().__init__(host, port, callbacks=target)


async def _too_big(request: web.Request) -> bool:
    length = request.content_length
    if length is not None:
        return length > MAX_BODY
    if not request.body_exists:
        return False
    # Chunked: count what arrives and drop it; stop at the first byte over the limit.
    seen = 0
    while chunk := await request.content.readany():
        seen += len(chunk)
        if seen > MAX_BODY:
            return True
    return False


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True)

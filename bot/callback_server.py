"""The HTTP endpoint providers call when a task changes (APIXO, EvoLink webhooks).

    POST {CALLBACK_PUBLIC_URL}/callback/{provider}/{job_id}/{token}

Webhooks carry no signature, so nothing in them is believed. The URL names the
job and carries a random per-job token (stored with the job, checked in constant
time); a valid call only makes the engine query the task's status right away.
The body is never read: a forged call cannot inject result URLs or states, and a
call for an unknown job or with a wrong token changes nothing (404).
"""

from __future__ import annotations

import logging
from typing import Protocol

from aiohttp import web

log = logging.getLogger(__name__)

# Bodies are ignored; refuse big ones before they are even buffered.
MAX_BODY = 64 * 1024


class CallbackTarget(Protocol):
    async def on_callback_request(self, provider: str, job_id: str, token: str) -> bool: ...


class CallbackServer:
    def __init__(self, target: CallbackTarget, host: str, port: int) -> None:
        self._target = target
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/callback/{provider}/{job_id}/{token}", self._callback)
        app.router.add_get("/healthz", self._health)
        return app

    async def start(self) -> None:
        runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._runner = runner
        address = runner.addresses[0]
        self.bound_port = int(address[1])
        log.info("callback server listening on %s:%d", self._host, self.bound_port)

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _callback(self, request: web.Request) -> web.Response:
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
        return web.json_response({"ok": True})

"""Serving a fake on 127.0.0.1: the one place that starts an aiohttp app for tests."""

from __future__ import annotations

from typing import Any

from aiohttp import web


async def serve_loopback(
    app: web.Application, port: int = 0, **runner_options: Any
) -> tuple[web.AppRunner, int]:
    """Start `app` on 127.0.0.1 (`port` 0: any free one); returns the runner (call its
    `cleanup()` to stop) and the port it listens on."""
    runner = web.AppRunner(app, access_log=None, **runner_options)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, int(runner.addresses[0][1])

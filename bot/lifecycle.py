"""Run a service until SIGINT/SIGTERM, then shut it down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def run_until_stopped(
    serve: Callable[[asyncio.Event], Awaitable[int]],
) -> int:
    """Call `serve(stop)`; SIGINT or SIGTERM sets `stop`. `serve` must return once
    `stop` is set, after cancelling its tasks and closing its resources."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, _request_stop, stop, sig)
            installed.append(sig)
    try:
        return await serve(stop)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _request_stop(stop: asyncio.Event, sig: signal.Signals) -> None:
    if not stop.is_set():
        log.info("received %s: shutting down", sig.name)
    stop.set()

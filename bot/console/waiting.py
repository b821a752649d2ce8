"""Waiting for something unless a stop signal (Ctrl-C, SIGTERM) comes first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


class Stopped:
    """Returned instead of a result when the stop event won."""


STOPPED = Stopped()


async def unless_stopped(stop: asyncio.Event, work: Awaitable[T]) -> T | Stopped:
    """`work`'s result, or STOPPED (with `work` cancelled) if `stop` is set first."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    both: list[asyncio.Future[Any]] = [task, stopper]
    try:
        await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    return STOPPED

"""Waiting for something unless a stop signal (Ctrl-C, SIGTERM) comes first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from bot.core import retry

T = TypeVar("T")


class Stopped:
    """Returned instead of a result when the stop event won."""


STOPPED = Stopped()


async def unless_stopped(stop: asyncio.Event, work: Awaitable[T]) -> T | Stopped:
    """`work`'s result, or STOPPED (with `work` cancelled) if `stop` is set first: the
    core helper, with a sentinel in place of its exception for the console's loops."""
    try:
        return await retry.unless_stopped(work, stop)
    except retry.Stopped:
        return STOPPED

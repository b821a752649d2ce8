"""Deadlines on the injected clock, so a hung call is given up on in fake time too."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from bot.core.clock import Clock

T = TypeVar("T")


class DeadlinePassed(TimeoutError):
    """The call did not finish in time; it has been cancelled."""


async def within(clock: Clock, seconds: float, call: Awaitable[T]) -> T:
    """Await `call`, cancelling it after `seconds` of `clock` time (DeadlinePassed).
    asyncio.timeout would measure the loop's real time, which tests do not drive."""
    work = asyncio.ensure_future(call)
    timer = asyncio.ensure_future(clock.sleep(max(0.0, seconds)))
    try:
        await asyncio.wait((work, timer), return_when=asyncio.FIRST_COMPLETED)
        if work.done():
            return work.result()
        raise DeadlinePassed(f"no answer within {seconds:.0f} s")
    finally:
        timer.cancel()
        if not work.done():
            work.cancel()
            # Let it unwind (close its request) before the caller tries again; asyncio.wait
            # raises nothing of the call's, only a cancel of this task.
            await asyncio.wait((work,))
            if not work.cancelled():
                work.exception()  # retrieved: an error while unwinding is not news

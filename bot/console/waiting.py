"""Waiting for something unless a stop signal (Ctrl-C, SIGTERM) comes first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from bot.core import retry
from bot.core.ports import JobStore

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


_SETTLE_STEP_SECONDS = 0.01
_SETTLE_MAX_SECONDS = 5.0


async def wait_settled(jobs: JobStore, job_id: str) -> None:
    """Wait (briefly) until the job is final in the store.

    The engine records DONE just after the delivery port returns; closing the
    runtime before that would leave the job to be delivered again next start.
    """
    loop = asyncio.get_running_loop()
    give_up = loop.time() + _SETTLE_MAX_SECONDS
    while loop.time() < give_up:
        job = await jobs.get(job_id)
        if job is None or job.state.final:
            return
        await asyncio.sleep(_SETTLE_STEP_SECONDS)

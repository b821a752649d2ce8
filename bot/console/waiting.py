"""Waiting for something unless a stop signal (Ctrl-C, SIGTERM) comes first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from bot.core.ports import JobStore

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

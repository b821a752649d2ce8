"""Progress updates to front ends, at most one per job every `interval` seconds.

The first update of a job goes out at once, and so does a forced one (the last
before delivery). Others arriving too soon are kept as the job's pending update
(newer replaces older) and sent when the interval has passed, so the latest
state always shows without flooding a chat platform's rate limits. Sends of one
job never overlap, so updates cannot arrive out of order; `drain` waits for the
one in flight before the job's final message (results or failure) is posted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.core.clock import Clock
from bot.core.engine.timers import TimerHeap
from bot.core.models import ProgressUpdate
from bot.core.tasks import TaskGroup

log = logging.getLogger(__name__)

Sender = Callable[[str, ProgressUpdate], Awaitable[None]]


class _JobProgress:
    __slots__ = ("forced", "in_flight", "last_sent_at", "last_update", "pending")

    def __init__(self) -> None:
        self.last_sent_at: float | None = None
        self.last_update: ProgressUpdate | None = None
        self.pending: ProgressUpdate | None = None
        self.forced = False  # the pending update must not wait for the interval
        self.in_flight: asyncio.Task[None] | None = None


class ProgressThrottle:
    def __init__(
        self, clock: Clock, timers: TimerHeap, tasks: TaskGroup, interval: float, send: Sender
    ) -> None:
        self._clock = clock
        self._timers = timers
        self._tasks = tasks
        self._interval = interval
        self._send = send
        self._jobs: dict[str, _JobProgress] = {}
        self.sent = 0  # updates handed to front ends (for measurements)

    def publish(self, job_id: str, update: ProgressUpdate, *, force: bool = False) -> None:
        state = self._jobs.get(job_id)
        if state is None:
            state = self._jobs[job_id] = _JobProgress()
        if update == state.last_update and state.pending is None:
            return  # nothing new to show
        state.pending = update
        state.forced = state.forced or force
        now = self._clock.monotonic()
        if state.in_flight is not None:
            return  # sent when the current one is done
        if state.forced or state.last_sent_at is None:
            due = now
        else:
            due = state.last_sent_at + self._interval
        if due <= now:
            self._timers.cancel(("progress", job_id))
            self._start(job_id, state)
        else:
            self._timers.call_at(("progress", job_id), due, lambda: self._flush(job_id))

    def _flush(self, job_id: str) -> None:
        state = self._jobs.get(job_id)
        if state is not None and state.pending is not None and state.in_flight is None:
            self._start(job_id, state)

    def _start(self, job_id: str, state: _JobProgress) -> None:
        update, state.pending = state.pending, None
        state.forced = False
        if update is None:
            return
        state.last_sent_at = self._clock.monotonic()
        state.last_update = update
        self.sent += 1
        state.in_flight = self._tasks.create_task(
            self._run(job_id, state, update), name=f"progress-{job_id}"
        )

    async def _run(self, job_id: str, state: _JobProgress, update: ProgressUpdate) -> None:
        try:
            await self._send(job_id, update)
        except Exception:
            log.warning("job %s: progress update failed", job_id, exc_info=True)
        finally:
            state.in_flight = None
        if state.pending is not None and self._jobs.get(job_id) is state:
            assert state.last_sent_at is not None
            due = state.last_sent_at + (0.0 if state.forced else self._interval)
            self._timers.call_at(("progress", job_id), due, lambda: self._flush(job_id))

    async def drain(self, job_id: str, timeout: float = 10.0) -> None:
        """Drop the job's pending update and wait (bounded) for the one in flight."""
        state = self._jobs.pop(job_id, None)
        self._timers.cancel(("progress", job_id))
        if state is None:
            return
        state.pending = None
        task = state.in_flight
        if task is not None and task is not asyncio.current_task():
            await asyncio.wait({task}, timeout=timeout)

    def forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)
        self._timers.cancel(("progress", job_id))

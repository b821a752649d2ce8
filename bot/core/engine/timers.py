"""One timer heap for every job: polls, deadlines and delayed progress updates.

A sleeping task per job would cost a task object, a stack of coroutine frames
and a clock sleeper each; thousands of waiting jobs would wake the loop for
nothing. Here there is one driver task that sleeps on the injected clock until
the earliest due time. Entries are keyed (e.g. ("poll", job_id)); setting a
key again replaces its time, and replaced entries are dropped lazily when they
reach the top of the heap.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable, Hashable

from bot.core.clock import Clock

log = logging.getLogger(__name__)

Callback = Callable[[], None]


class TimerHeap:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Hashable]] = []
        self._entries: dict[Hashable, tuple[float, int, Callback]] = {}
        self._seq = itertools.count()
        self._waker: asyncio.Future[None] | None = None
        self._armed_for: float | None = None  # due time the driver is sleeping towards

    def __len__(self) -> int:
        return len(self._entries)

    def call_at(self, key: Hashable, when: float, callback: Callback) -> None:
        """Run `callback` (synchronously, in the driver) at monotonic time `when`."""
        seq = next(self._seq)
        self._entries[key] = (when, seq, callback)
        heapq.heappush(self._heap, (when, seq, key))
        if self._armed_for is None or when < self._armed_for:
            self._wake()

    def call_later(self, key: Hashable, delay: float, callback: Callback) -> None:
        self.call_at(key, self._clock.monotonic() + max(0.0, delay), callback)

    def when(self, key: Hashable) -> float | None:
        entry = self._entries.get(key)
        return entry[0] if entry else None

    def cancel(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None and entry[0] == self._armed_for:
            # The driver sleeps towards this one: re-arm it for the next, so no sleeper
            # is left on the clock for a timer that no longer exists.
            self._wake()

    def _wake(self) -> None:
        if self._waker is not None and not self._waker.done():
            self._waker.set_result(None)

    def _next_due(self) -> float | None:
        while self._heap:
            when, seq, key = self._heap[0]
            entry = self._entries.get(key)
            if entry is not None and entry[1] == seq:
                return when
            heapq.heappop(self._heap)  # replaced or cancelled
        return None

    def _fire_due(self, now: float) -> None:
        while True:
            due = self._next_due()
            if due is None or due > now:
                return
            _, _, key = heapq.heappop(self._heap)
            _, _, callback = self._entries.pop(key)
            try:
                callback()
            except Exception:
                log.exception("timer %r failed", key)

    async def run(self) -> None:
        """The driver loop; run it as one background task."""
        loop = asyncio.get_running_loop()
        while True:
            self._fire_due(self._clock.monotonic())
            due = self._next_due()
            self._waker = loop.create_future()
            self._armed_for = due
            try:
                if due is None:
                    await self._waker
                    continue
                sleeper = asyncio.ensure_future(self._clock.sleep(due - self._clock.monotonic()))
                try:
                    await asyncio.wait((sleeper, self._waker), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    sleeper.cancel()
            finally:
                self._armed_for = None
                self._waker = None

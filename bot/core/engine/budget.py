"""A cap on the result bytes that deliveries hold at once (downloaded, not yet posted).

Wan returns PNGs of a few MB and a job may ask for four: a burst of finishing jobs
would otherwise download them all at once. A delivery reserves its estimated size
before downloading, corrects it to the real size once downloaded (without waiting:
the bytes are already here) and gives it back when the post is done. Waiters are
served in order; one delivery alone always proceeds, even past the cap, so a job
never waits for bytes that can never be freed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

_INITIAL_PER_IMAGE = 4 * 1024 * 1024  # a Wan PNG; corrected by what is observed
_SMOOTHING = 0.2


class ByteBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0  # the most ever held at once, for measurements
        self._per_image = float(_INITIAL_PER_IMAGE)
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        # Called (on the loop) each time the bytes held fall back to zero, with the
        # most held since the last call: a burst of deliveries has ended (the runtime
        # returns the freed memory to the system when that burst was big).
        self.on_drained: Callable[[int], None] | None = None
        self._burst = 0  # the most held since the bytes last drained

    def estimate(self, images: int) -> int:
        """What a delivery of `images` results is expected to hold."""
        return max(1, round(images * self._per_image))

    def observe(self, images: int, size: int) -> None:
        """Learn the size of results from one delivery's real bytes."""
        if images > 0:
            self._per_image += _SMOOTHING * (size / images - self._per_image)

    async def acquire(self, size: int) -> Hold:
        if not self._waiters and self._fits(size):
            return self._grant(size)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, future)
        self._waiters.append(entry)
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                self._release(size)  # granted as it was cancelled: give it back
            else:
                with contextlib.suppress(ValueError):  # _wake may have dropped it
                    self._waiters.remove(entry)
                self._wake()
            raise
        return Hold(self, size)

    def _fits(self, size: int) -> bool:
        return self.held == 0 or self.held + size <= self.limit

    def _grant(self, size: int) -> Hold:
        self.held += size
        self._note_peak()
        return Hold(self, size)

    def _note_peak(self) -> None:
        self.peak = max(self.peak, self.held)
        self._burst = max(self._burst, self.held)

    def _release(self, size: int) -> None:
        self.held -= size
        self._wake()
        if self.held == 0:
            burst, self._burst = self._burst, 0
            if self.on_drained is not None:
                self.on_drained(burst)

    def _wake(self) -> None:
        while self._waiters and self._fits(self._waiters[0][0]):
            size, future = self._waiters.popleft()
            if not future.done():
                self.held += size
                self._note_peak()
                future.set_result(None)


class Hold:
    """Bytes one delivery holds; `resize` to the real size, `release` when posted."""

    def __init__(self, budget: ByteBudget, size: int) -> None:
        self._budget = budget
        self.size = size

    def resize(self, size: int) -> None:
        budget = self._budget
        budget.held += size - self.size
        budget._note_peak()
        self.size = size
        budget._wake()

    def release(self) -> None:
        size, self.size = self.size, 0
        if size:
            self._budget._release(size)

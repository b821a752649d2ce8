"""Give the memory of a burst of big images back to the system (glibc's allocator).

Result and input images are buffers of 1-10 MB that live a second or two. glibc
serves the first ones with mmap, but each time it frees one it raises its mmap
threshold to that size (up to 32 MB), so after a few deliveries images come from
its heaps, where freed space stays resident: measured in `bench bigimages`, RSS
636 MB after a burst of 200 jobs while 19 MB were in use (550 MB free, kept), and
back to 87 MB only after malloc_trim(0). So: fragmentation, not held references.

Forcing mmap for big buffers (a fixed M_MMAP_THRESHOLD) also returns the memory,
but every image then costs a page fault per 4 KB (8 ms per 4 MB here, against 1.7
ms from the heap): CPU per job rose by a third. Instead the heaps keep serving
images during a burst, and once the deliveries have drained (no result bytes held)
malloc_trim(0) runs in a worker thread, at most every MIN_INTERVAL seconds with one
more after the last drain. Threads get at most ARENAS heaps of their own.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from concurrent.futures import Executor
from typing import Any

log = logging.getLogger(__name__)

_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)
ARENAS = 2
MIN_INTERVAL = 5.0  # seconds between two trims
# Bursts that held less than this leave too little behind to be worth a trim (each
# trim makes the next allocations fault their pages in again).
MIN_BURST_BYTES = 32 * 1024 * 1024


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def tune_allocator() -> bool:
    """Cap glibc's arenas (harmless to repeat). False where there is nothing to tune."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, ARENAS) == 1)


def trim() -> bool:
    """Return free heap memory to the system (blocking: run it in a thread)."""
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(0)
    return True


class Trimmer:
    """Call `drained()` when a burst of big buffers has ended; trims follow, spaced."""

    def __init__(self, executor: Executor | None, min_interval: float = MIN_INTERVAL) -> None:
        self._executor = executor
        self._min_interval = min_interval
        self._last = -min_interval
        self._later: asyncio.TimerHandle | None = None
        self._running: asyncio.Future[bool] | None = None
        self.trims = 0

    def drained(self, burst: int = MIN_BURST_BYTES) -> None:
        """The big buffers were freed; `burst`: the most bytes they held at once."""
        if burst < MIN_BURST_BYTES and self._later is None:
            return
        loop = asyncio.get_running_loop()
        wait = self._last + self._min_interval - loop.time()
        if wait > 0 or (self._running is not None and not self._running.done()):
            if self._later is None:  # one trim after the last drain, not one per drain
                self._later = loop.call_later(max(wait, 0.5), self._fire)
            return
        self._start(loop)

    def _fire(self) -> None:
        self._later = None
        self.drained(MIN_BURST_BYTES)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._last = loop.time()
        self._running = loop.run_in_executor(self._executor, trim)
        self._running.add_done_callback(self._done)

    def _done(self, future: asyncio.Future[bool]) -> None:
        if future.cancelled():
            return
        if (error := future.exception()) is not None:
            log.warning("malloc_trim failed: %r", error)
        else:
            self.trims += 1

    def close(self) -> None:
        if self._later is not None:
            self._later.cancel()
            self._later = None

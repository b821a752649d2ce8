"""Reading the user's lines without blocking the event loop.

A daemon thread does the blocking read, one line per request, and hands it to
the loop. A daemon thread (rather than the loop's default executor) matters:
asyncio.run() waits for executor threads on exit, so a pending read would keep
the process alive until the user pressed Enter.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from typing import TextIO

_Request = tuple[asyncio.AbstractEventLoop, "asyncio.Future[str | None]"]


class LineReader:
    def __init__(self, stream: TextIO, out: TextIO | None = None, prompt: str = "> ") -> None:
        """With `out`, `prompt` is written there before each read (interactive use;
        the terminal itself echoes and edits the line)."""
        self._stream = stream
        self._out = out
        self.prompt = prompt
        self._eof = False
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.waiting = False  # a prompt is on screen, waiting for the user

    async def readline(self) -> str | None:
        """The next line without its newline, or None at end of input."""
        if self._eof:
            return None
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="stdin", daemon=True)
            self._thread.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str | None] = loop.create_future()
        self._requests.put((loop, future))
        line = await future
        self._eof = line is None
        return line

    def _read(self) -> str | None:
        if self._out is not None:
            self._out.write(self.prompt)
            self._out.flush()
        self.waiting = True
        try:
            line = self._stream.readline()
        finally:
            self.waiting = False
        return line.rstrip("\r\n") if line else None

    def _run(self) -> None:
        while True:
            loop, future = self._requests.get()
            try:
                line = self._read()
            except (EOFError, OSError, ValueError):  # end of input, or a closed stream
                line = None
            try:
                loop.call_soon_threadsafe(_set_result, future, line)
            except RuntimeError:  # the loop has closed: nobody is listening any more
                return
            if line is None:
                return


def _set_result(future: asyncio.Future[str | None], line: str | None) -> None:
    with contextlib.suppress(asyncio.InvalidStateError):  # the reader was cancelled
        future.set_result(line)

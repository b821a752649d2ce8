"""One process per SQLite file: an OS lock on `<database>.lock`.

Two bots on one database would both resume the same stored jobs and submit them
twice (two paid tasks). `fcntl.flock` on a file next to the database is held for
the life of the process and released by the OS however it ends, SIGKILL included,
so a crashed bot never blocks the next start. The file holds the holder's PID for
the message only: the lock, not the text, decides.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from storage.errors import DatabaseInUse

_MEMORY = ":memory:"


def lock_path(database: str | Path) -> Path | None:
    """`<database>.lock`; None for an in-memory database (nothing to share). Blocking
    (one lstat): a symlink to the database shares the real file's lock, since the lock
    is one per file, not one per name."""
    if str(database) == _MEMORY:
        return None
    path = Path(database)
    if path.is_symlink():
        path = path.resolve()
    return path.with_name(path.name + ".lock")


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


class ProcessLock:
    """An exclusive, non-blocking lock on one database. Blocking file calls: run
    `acquire` off the event loop (they are quick, but the loop owes no one a wait)."""

    def __init__(self, database: str | Path) -> None:
        self.database = str(database)
        self.path: Path | None = None  # found in acquire (off the loop)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise DatabaseInUse naming the holder's PID."""
        if self._fd is not None:
            return
        self.path = lock_path(self.database)
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise DatabaseInUse(self.database, pid) from None
        except BaseException:
            os.close(fd)
            raise
        # Ours now: whatever PID text a dead holder left is replaced.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        """Let go (closing the descriptor releases the lock). The file stays: removing
        it would let a process that opened the old file and one that creates a new
        one both believe they hold the lock."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


def current_holder(database: str | Path) -> DatabaseInUse | None:
    """Who holds `database` (as the error a start would raise), or None when nobody
    does. Reads only: never creates the lock file, never keeps the lock."""
    path = lock_path(database)
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            # A shared lock is refused while anyone holds the exclusive one.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return DatabaseInUse(str(database), _read_pid(fd))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)

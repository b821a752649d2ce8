"""`wanbot backup`: a consistent copy of the live SQLite database.

SQLite's online backup API copies the database page by page inside one read
transaction: in WAL mode the running bot keeps writing meanwhile, and the copy is
the database as it was at one instant (a plain `cp` of a WAL database can miss
committed pages still in the -wal file). It blocks, so callers run it in a thread.
The copy is written next to its destination and renamed into place only once it
has passed an integrity check: a failed backup leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path


class BackupError(Exception):
    """The backup could not be made; the message says why, in one line."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size_bytes: int
    schema_version: int
    jobs: int
    ledger_rows: int


def backup_sqlite(source: str | Path, destination: str | Path) -> BackupResult:
    """Copy `source` to `destination` (a new file; an existing folder gets a file named
    after the source). Blocking: run it off the event loop."""
    src = Path(source)
    if not src.is_file():
        raise BackupError(f"no database at {src}")
    dest = Path(destination)
    if dest.is_dir():
        dest = dest / src.name
    if dest.exists():
        raise BackupError(f"{dest} already exists; choose a new file name")
    if not dest.parent.is_dir():
        raise BackupError(f"the folder {dest.parent} does not exist")
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    try:
        # mode=ro: the backup reads only; it never creates or migrates anything.
        with (
            contextlib.closing(sqlite3.connect(read_only_uri(src), uri=True)) as live,
            contextlib.closing(sqlite3.connect(partial)) as copy,
        ):
            live.backup(copy)  # one step: one consistent snapshot
            result = _check(copy, dest)
        os.replace(partial, dest)
    except sqlite3.Error as exc:
        raise BackupError(f"backup of {src} failed: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return BackupResult(dest, dest.stat().st_size, *result)


def read_only_uri(path: Path) -> str:
    """`file:...?mode=ro` with the path quoted: a `?` or `#` in a folder name would
    otherwise end the path and open (or fail to open) another file."""
    return f"{path.absolute().as_uri()}?mode=ro"


def _check(copy: sqlite3.Connection, dest: Path) -> tuple[int, int, int]:
    verdict = copy.execute("PRAGMA integrity_check").fetchone()[0]
    if verdict != "ok":
        raise BackupError(f"the copy failed its integrity check: {verdict}")
    # A copy must open on its own: no WAL file travels with it.
    copy.execute("PRAGMA journal_mode=DELETE")
    version = int(copy.execute("PRAGMA user_version").fetchone()[0])
    jobs = ledger = 0
    tables = {row[0] for row in copy.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "jobs" in tables:
        jobs = int(copy.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
    if "ledger" in tables:
        ledger = int(copy.execute("SELECT COUNT(*) FROM ledger").fetchone()[0])
    return version, jobs, ledger

"""Storage errors the entry points turn into one line (no traceback)."""

from __future__ import annotations


class DatabaseUnavailable(Exception):
    """The database server cannot be reached or refuses the connection. The message
    names it without its password."""


class DatabaseInUse(Exception):
    """Another process holds the database."""

    def __init__(self, database: str, pid: int | None) -> None:
        self.database = database
        self.pid = pid
        holder = f"wanbot (PID {pid})" if pid is not None else "another wanbot process"
        super().__init__(
            f"the database {database} is in use by {holder}; stop it first, "
            "or set DATABASE_PATH to another file"
        )

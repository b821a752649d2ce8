"""Storage errors the entry points turn into one line (no traceback)."""

from __future__ import annotations


class DatabaseUnavailable(Exception):
    """The database server cannot be reached or refuses the connection. The message
    names it without its password."""

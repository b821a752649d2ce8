"""Finding the numbered migration files of a backend, the same for every backend:
`NNNN_name.sql` in a package, applied in order, numbered 0001, 0002, ... without gaps
(both backends' files carry the same numbers; tests/test_postgres_schema.py checks)."""

from __future__ import annotations

import re
from importlib import resources

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def load_migration_files(package: str) -> list[tuple[int, str, str]]:
    """(version, file name, SQL) for every migration bundled in `package`, in order."""
    found = []
    for entry in resources.files(package).iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migrations must be numbered 0001, 0002, ... without gaps: {versions}")
    return found

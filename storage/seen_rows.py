"""The rule both SeenEvents adapters share: how long a handled event is remembered and
how often the old ones are removed (storage/sqlite/events.py, storage/postgres/events.py)."""

from __future__ import annotations

# Slack retries an event within about 5 minutes (3 tries) and reconnects overlap by
# seconds: a day is far beyond both, and a day of mentions is a small table.
KEEP_SECONDS = 86_400.0
# The rows older than KEEP_SECONDS go on the first insert after a start, then at most
# once an hour: one indexed DELETE, no task of its own to keep.
PRUNE_EVERY_SECONDS = 3_600.0


class PruneTimer:
    """When the next removal of old rows is due (per process; each process prunes)."""

    def __init__(self) -> None:
        self._next: float | None = None

    def due(self, now: float) -> float | None:
        """The cutoff (seen_at below it goes) when a prune is due at `now`, else None."""
        if self._next is not None and now < self._next:
            return None
        self._next = now + PRUNE_EVERY_SECONDS
        return now - KEEP_SECONDS

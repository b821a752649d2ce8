"""Which progress updates are worth showing: one rule for every front end, tuned by
numbers (a chat platform rate-limits message edits; a terminal does not)."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

from bot.core.models import JobState, ProgressUpdate

_RECENT_LIMIT = 5000  # jobs remembered; the oldest are forgotten first


@dataclass(frozen=True)
class Tuning:
    """A platform's numbers. Every state change shows (except `skipped` states);
    within a state, an update shows after `min_interval` seconds and only for a real
    change: `min_step` progress points, a new place in line, or an estimate that
    moved by `eta_shift` seconds and an `eta_ratio` share of the time it had left."""

    min_interval: float = 10.0
    min_step: int = 20
    eta_shift: float = 30.0
    eta_ratio: float = 0.2
    queue_moves: bool = True
    # States that usually last well under a second, followed at once by the next
    # edit: an edit for them is a wasted call.
    skipped: frozenset[JobState] = field(
        default_factory=lambda: frozenset({JobState.SUBMITTING, JobState.DELIVERING})
    )


CHAT = Tuning()
# A terminal prints lines: no rate limit, but a line per percent would be noise.
TERMINAL = Tuning(
    min_interval=0.0, min_step=25, eta_shift=math.inf, queue_moves=False, skipped=frozenset()
)


@dataclass
class _Shown:
    state: JobState
    progress: int | None
    at: float  # monotonic seconds
    queue_position: int | None
    ready_at: float | None


class ProgressThrottle:
    def __init__(self, tuning: Tuning) -> None:
        self.tuning = tuning
        self._shown: OrderedDict[str, _Shown] = OrderedDict()

    def worth_showing(self, job_id: str, update: ProgressUpdate, now: float) -> bool:
        """`now`: monotonic seconds. Remembers what it let through."""
        t = self.tuning
        if update.state in t.skipped:
            return False
        ready_at = None if update.eta_seconds is None else now + update.eta_seconds
        last = self._shown.get(job_id)
        if last is not None and last.state is update.state:
            if now - last.at < t.min_interval:
                return False
            step = abs((update.progress or 0) - (last.progress or 0))
            moved = t.queue_moves and update.queue_position != last.queue_position
            if step < t.min_step and not moved and not self._eta_moved(last, ready_at, now):
                return False
        self._shown[job_id] = _Shown(
            update.state, update.progress, now, update.queue_position, ready_at
        )
        self._shown.move_to_end(job_id)
        while len(self._shown) > _RECENT_LIMIT:
            self._shown.popitem(last=False)
        return True

    def _eta_moved(self, last: _Shown, ready_at: float | None, now: float) -> bool:
        if math.isinf(self.tuning.eta_shift):
            return False
        if last.ready_at is None or ready_at is None:
            return last.ready_at != ready_at
        left = max(0.0, last.ready_at - now)
        shift = max(self.tuning.eta_shift, self.tuning.eta_ratio * left)
        return abs(ready_at - last.ready_at) >= shift

    def forget(self, job_id: str) -> None:
        self._shown.pop(job_id, None)

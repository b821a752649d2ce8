"""Jobs waiting for a provider slot, served round-robin across users.

Each user has a FIFO of their own jobs; the rotation holds the users that have
something waiting. Taking a job takes the first job of the user at the front
of the rotation and moves that user to the back, so a user with 50 jobs waits
behind everyone else's next job rather than in front of it. A user who may not
start more jobs now (their running limit) is skipped without losing their place.
Positions follow the rotation and ignore such limits: a job's place in line,
not a promise of when it starts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable


class FairQueue:
    def __init__(self) -> None:
        self._by_user: dict[Hashable, deque[str]] = {}
        self._rotation: deque[Hashable] = deque()
        self._user_of: dict[str, Hashable] = {}
        self._positions: dict[str, int] | None = None  # cache, rebuilt on demand

    def __len__(self) -> int:
        return len(self._user_of)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._user_of

    def push(self, user: Hashable, job_id: str) -> None:
        if job_id in self._user_of:
            return
        queue = self._by_user.get(user)
        if queue is None:
            queue = self._by_user[user] = deque()
            self._rotation.append(user)
        queue.append(job_id)
        self._user_of[job_id] = user
        self._positions = None

    def pop(self, eligible: Callable[[Hashable], bool] | None = None) -> str | None:
        """The next job in turn, skipping users for whom `eligible` is false (they keep
        their place in the rotation)."""
        index = next(
            (i for i, user in enumerate(self._rotation) if eligible is None or eligible(user)),
            None,
        )
        if index is None:
            return None
        user = self._rotation[index]
        del self._rotation[index]
        queue = self._by_user[user]
        job_id = queue.popleft()
        if queue:
            self._rotation.append(user)
        else:
            del self._by_user[user]
        del self._user_of[job_id]
        self._positions = None
        return job_id

    def remove(self, job_id: str) -> bool:
        user = self._user_of.pop(job_id, None)
        if user is None:
            return False
        queue = self._by_user[user]
        queue.remove(job_id)
        if not queue:
            del self._by_user[user]
            self._rotation.remove(user)
        self._positions = None
        return True

    def order(self) -> list[str]:
        """Every waiting job in the order `pop` would return them."""
        rotation = [list(self._by_user[user]) for user in self._rotation]
        result: list[str] = []
        depth = 0
        while rotation:
            still = []
            for jobs in rotation:
                result.append(jobs[depth])
                if len(jobs) > depth + 1:
                    still.append(jobs)
            rotation = still
            depth += 1
        return result

    def position(self, job_id: str) -> int | None:
        """1-based place in the order, None if not waiting."""
        return self._position_map().get(job_id)

    def positions(self) -> dict[str, int]:
        return dict(self._position_map())

    def _position_map(self) -> dict[str, int]:
        if self._positions is None:
            self._positions = {job: index + 1 for index, job in enumerate(self.order())}
        return self._positions

"""A per-provider request budget: a token bucket kept as one number.

This is the "generic cell rate algorithm" form of a token bucket: instead of
counting tokens, it remembers the theoretical time at which the bucket would
be full again. `reserve()` hands out distinct send times, so many jobs due at
once get spread over the budget without each of them retrying and re-sorting
(no thundering herd on the timer heap). A 429 pauses the whole bucket.
"""

from __future__ import annotations


class RateLimiter:
    def __init__(self, rate_per_second: float, burst: int = 1) -> None:
        if rate_per_second <= 0:
            raise ValueError("rate must be positive")
        self._interval = 1.0 / rate_per_second
        self._tolerance = max(0, burst - 1) * self._interval
        self._full_at = float("-inf")  # when the bucket is full again
        self._paused_until = float("-inf")

    def set_rate(self, rate_per_second: float) -> None:
        """A new rate from now on (processes sharing one provider budget share it)."""
        if rate_per_second <= 0:
            raise ValueError("rate must be positive")
        burst = round(self._tolerance / self._interval) + 1
        self._interval = 1.0 / rate_per_second
        self._tolerance = (burst - 1) * self._interval

    @property
    def paused_until(self) -> float:
        return self._paused_until

    def reserve(self, now: float) -> float:
        """Take one token; returns the (monotonic) time at which it may be used."""
        at = max(now, self._full_at - self._tolerance, self._paused_until)
        self._full_at = max(self._full_at, at) + self._interval
        return at

    def pause(self, until: float) -> None:
        """Send nothing before `until` (the provider said 429 / Retry-After)."""
        if until > self._paused_until:
            self._paused_until = until
            # Restart from an empty bucket after the pause: no burst right after a 429.
            self._full_at = max(self._full_at, until + self._tolerance)

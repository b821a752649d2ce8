"""Fewer sweeps of discord.py's rate-limit buckets.

discord.py keeps one bucket per route key (a webhook token, a channel, a thread...)
and, once it holds 256 of them, scans all of them for inactive ones every time it
makes a new one. A bot with thousands of jobs in flight makes a new key for nearly
every job (its interaction token, its results thread), so each job scans thousands
of buckets: about 3.5 % of the bot's CPU in `bench scale` (py-spy). A bucket is only
inactive after 300 s without a request, so sweeping more often than once a minute
finds nothing new: this lets the sweep run at most once per SWEEP_INTERVAL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 60.0  # seconds; discord.py drops buckets idle for 300 s


def throttle_bucket_sweeps(http: Any, interval: float = SWEEP_INTERVAL) -> bool:
    """Make `http` (a discord.py HTTPClient) sweep its buckets at most every
    `interval` s. False (and nothing changed) if this discord.py has no such sweep."""
    sweep: Callable[[], None] | None = getattr(http, "_try_clear_expired_ratelimits", None)
    if sweep is None or getattr(sweep, "_wanbot_throttled", False):
        return sweep is not None
    last = -interval

    def throttled() -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= interval:
            last = now
            sweep()

    throttled._wanbot_throttled = True  # type: ignore[attr-defined]
    http._try_clear_expired_ratelimits = throttled
    return True

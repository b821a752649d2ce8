"""The one retry helper: `Backoff` (exponential delays, a cap, jitter), used by every
loop that retries (provider status queries, the engine, front-end connections);
`Retry`, a policy of how often and how long a call is tried again, and `retrying`,
which runs a call under it; and `retry_until_stopped`, which retries a connection
until it works or the process is told to stop.

Platform-free: a front end (Discord today, Slack later) passes its own `attempt`
and a `classify` that says which failures are worth waiting out. Each retry is
announced as one line (no traceback): an outage is expected, not a bug.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from bot.core.clock import Clock

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Exponential delays with a cap and random jitter (so many bots restarted by one
    outage do not all knock again at the same instant)."""

    base: float = 1.0
    cap: float = 60.0
    jitter: float = 0.5  # up to this fraction of each delay is randomly taken off

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds before retry number `retry` (0 = the first retry). `rng` (needed only
        with jitter) is injectable so tests can pin the draw."""
        raw = min(self.cap, self.base * (2 ** min(max(retry, 0), 32)))
        if not self.jitter:
            return float(raw)
        return raw * (1.0 - self.jitter * (rng or _RNG).random())


_RNG = random.Random()


def _always(exc: BaseException) -> bool:
    return True


@dataclass(frozen=True)
class Retry:
    """How a call is tried again: at most `attempts` tries with `backoff` delays between
    them, none that would start after `deadline` seconds in all (None: no limit), and
    only after failures `retryable` accepts. With `retry_after`, a delay the failure
    asks for (`exc.retry_after`, e.g. a 429's Retry-After) is waited out when longer.

    `delay_after` is the decision alone, for retries driven by a timer (the engine's
    submits and status queries, which keep no task sleeping per job); `retrying` runs
    a call under the policy."""

    attempts: int
    backoff: Backoff = Backoff()
    deadline: float | None = None
    retryable: Callable[[BaseException], bool] = _always
    retry_after: bool = False

    def delay_after(
        self,
        attempt: int,
        exc: BaseException,
        *,
        left: float = math.inf,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds to wait before another try after try number `attempt` (1 = the first)
        failed with `exc`, `left` seconds before a deadline; None: give up."""
        if attempt >= self.attempts or not self.retryable(exc):
            return None
        delay = self.backoff.delay(attempt - 1, rng)
        if self.retry_after:
            delay = max(delay, float(getattr(exc, "retry_after", None) or 0.0))
        return delay if delay < left else None


async def retrying(
    call: Callable[[], Awaitable[T]],
    policy: Retry,
    *,
    clock: Clock,
    on_failure: Callable[[int, Exception], None] | None = None,
    rng: random.Random | None = None,
) -> T:
    """`call()` until it returns or `policy` gives up; then its last failure is raised.
    Delays are slept on `clock` (fake time drives them in tests); `on_failure(attempt,
    exc)` hears of every failed try, for the log. A cancel is never retried."""
    end = None if policy.deadline is None else clock.monotonic() + policy.deadline
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except Exception as exc:
            if on_failure is not None:
                on_failure(attempt, exc)
            left = math.inf if end is None else end - clock.monotonic()
            delay = policy.delay_after(attempt, exc, left=left, rng=rng)
            if delay is None:
                raise
        await clock.sleep(delay)


def one_line(exc: BaseException | None) -> str:
    """`Type: message` on one line, for logs that must not carry a traceback."""
    if exc is None:
        return "unknown error"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Stopped(Exception):
    """`stop` was set before the attempt succeeded."""


async def retry_until_stopped(
    attempt: Callable[[], Awaitable[T]],
    *,
    classify: Callable[[BaseException], str | None],
    stop: asyncio.Event,
    clock: Clock,
    on_retry: Callable[[str, int, float], None],
    backoff: Backoff | None = None,
    rng: random.Random | None = None,
) -> T:
    """Run `attempt` until it returns. A failure `classify` names (returns a short reason
    for) is retried after a backoff delay, reported through `on_retry(reason, retry,
    delay)`; any other failure goes up unchanged. Raises `Stopped` once `stop` is set."""
    policy = backoff or Backoff()
    rng = rng or random.Random()
    retry = 0
    while True:
        if stop.is_set():
            raise Stopped
        try:
            return await unless_stopped(attempt(), stop)
        except Stopped:
            raise
        except Exception as exc:
            reason = classify(exc)
            if reason is None:
                raise
        delay = policy.delay(retry, rng)
        on_retry(reason, retry + 1, delay)
        await unless_stopped(clock.sleep(delay), stop)
        retry += 1


async def unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> T:
    """`work`, or Stopped as soon as `stop` is set (the work is cancelled)."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if task.cancelled():
        raise Stopped
    return task.result()

"""`Retry` and `retrying` (bot/core/retry.py): the one policy the engine's submits,
status queries, downloads, posts and records are tried again under."""

from __future__ import annotations

import asyncio
import random

import pytest

from bot.core.clock import FakeClock
from bot.core.engine import EngineConfig
from bot.core.errors import ProviderError
from bot.core.models import FailureCategory
from bot.core.retry import Backoff, Retry, retrying


class Flaky:
    """Fails `failures` times with `error`, then answers; records when it was called."""

    def __init__(self, clock: FakeClock, failures: int, error: Exception) -> None:
        self.clock = clock
        self.failures = failures
        self.error = error
        self.calls: list[float] = []

    async def __call__(self) -> str:
        self.calls.append(self.clock.monotonic())
        if len(self.calls) <= self.failures:
            raise self.error
        return "ok"


async def drive(clock: FakeClock, task: asyncio.Future[str]) -> None:
    """Move fake time sleeper by sleeper until `task` is done."""
    while not task.done():
        await asyncio.sleep(0)
        delay = clock.next_deadline()
        if delay is not None:
            await clock.advance(delay)


async def test_retries_with_the_backoff_delays_then_answers(clock: FakeClock) -> None:
    call = Flaky(clock, 2, ConnectionError("down"))
    seen: list[int] = []
    policy = Retry(3, Backoff(2.0, 60.0, jitter=0.0))
    task = asyncio.ensure_future(
        retrying(call, policy, clock=clock, on_failure=lambda n, e: seen.append(n))
    )
    await drive(clock, task)
    assert task.result() == "ok"
    start = call.calls[0]
    assert [t - start for t in call.calls] == [0.0, 2.0, 6.0]
    assert seen == [1, 2]


async def test_gives_up_after_the_attempts_with_the_last_error(clock: FakeClock) -> None:
    call = Flaky(clock, 9, ConnectionError("down"))
    task = asyncio.ensure_future(retrying(call, Retry(3, Backoff(1.0, 1.0, 0.0)), clock=clock))
    await drive(clock, task)
    with pytest.raises(ConnectionError):
        task.result()
    assert len(call.calls) == 3


async def test_an_error_not_retryable_goes_up_at_once(clock: FakeClock) -> None:
    call = Flaky(clock, 9, ValueError("bad input"))
    policy = Retry(5, retryable=lambda exc: isinstance(exc, ConnectionError))
    with pytest.raises(ValueError):
        await retrying(call, policy, clock=clock)
    assert len(call.calls) == 1


async def test_no_try_starts_after_the_deadline(clock: FakeClock) -> None:
    # Delays 4, 8, 16: the third try would start at 12, the fourth at 28 > 20.
    call = Flaky(clock, 9, ConnectionError("down"))
    policy = Retry(10, Backoff(4.0, 60.0, 0.0), deadline=20.0)
    task = asyncio.ensure_future(retrying(call, policy, clock=clock))
    await drive(clock, task)
    with pytest.raises(ConnectionError):
        task.result()
    start = call.calls[0]
    assert [t - start for t in call.calls] == [0.0, 4.0, 12.0]


def test_a_delay_the_provider_asks_for_is_waited_out_when_asked_to() -> None:
    busy = ProviderError(FailureCategory.TRANSIENT, "http_429", retry_after=30.0)
    backoff = Backoff(2.0, 60.0, 0.0)
    assert Retry(3, backoff, retry_after=True).delay_after(1, busy) == 30.0
    assert Retry(3, backoff).delay_after(1, busy) == 2.0
    assert Retry(3, backoff, retry_after=True).delay_after(1, busy, left=30.0) is None
    assert Retry(3, backoff).delay_after(3, busy) is None  # that was the last try


def test_the_engine_policy_has_no_jitter_unless_configured() -> None:
    plain = EngineConfig().retry(5)
    assert [plain.delay_after(n, OSError()) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    jittered = EngineConfig(retry_jitter=0.5).retry(5)
    rng = random.Random(7)
    delays = [jittered.delay_after(3, OSError(), rng=rng) for _ in range(20)]
    assert all(d is not None and 4.0 <= d <= 8.0 for d in delays)
    assert len(set(delays)) > 1  # drawn, from the injected generator

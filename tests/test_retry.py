"""The retry helper front ends use to wait out an outage (bot/core/retry.py)."""

from __future__ import annotations

import asyncio
import random

import pytest

from bot.core.clock import FakeClock
from bot.core.retry import Backoff, Stopped, one_line, retry_until_stopped


def test_backoff_grows_to_the_cap_with_jitter_only_taken_off() -> None:
    exact = Backoff(base=1.0, cap=10.0, jitter=0.0)
    rng = random.Random(7)
    assert [exact.delay(n, rng) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    jittered = Backoff(base=1.0, cap=10.0, jitter=0.5)
    for retry in range(40):  # no overflow on long outages either
        delay = jittered.delay(retry, rng)
        assert min(10.0, 2.0**retry) * 0.5 <= delay <= min(10.0, 2.0**retry)


class Flaky:
    """Fails `failures` times with `error`, then answers 'ok'."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


def _classify(exc: BaseException) -> str | None:
    return one_line(exc) if isinstance(exc, ConnectionError) else None


async def _drive(clock: FakeClock, task: asyncio.Future[str]) -> str:
    """Advance the fake clock timer by timer until `task` is done."""
    for _ in range(100):
        await asyncio.sleep(0)
        if task.done():
            return task.result()
        step = clock.next_deadline()
        await clock.advance(step if step is not None else 0.0)
    raise AssertionError("never finished")


async def test_retries_what_classify_names_announcing_each_retry(clock: FakeClock) -> None:
    attempt = Flaky(3, ConnectionRefusedError("refused"))
    seen: list[tuple[str, int, float]] = []
    task = asyncio.ensure_future(
        retry_until_stopped(
            attempt,
            classify=_classify,
            stop=asyncio.Event(),
            clock=clock,
            on_retry=lambda reason, retry, delay: seen.append((reason, retry, delay)),
            backoff=Backoff(base=2.0, cap=5.0, jitter=0.0),
        )
    )
    assert await _drive(clock, task) == "ok"
    assert attempt.calls == 4
    assert seen == [("ConnectionRefusedError: refused", n, d) for n, d in ((1, 2), (2, 4), (3, 5))]
    assert clock.monotonic() == 11.0  # slept exactly the announced delays


async def test_other_failures_go_up_at_once(clock: FakeClock) -> None:
    attempt = Flaky(1, ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        await retry_until_stopped(
            attempt,
            classify=_classify,
            stop=asyncio.Event(),
            clock=clock,
            on_retry=lambda *_: pytest.fail("no retry expected"),
        )
    assert attempt.calls == 1


async def test_stop_ends_the_wait_between_retries(clock: FakeClock) -> None:
    stop = asyncio.Event()
    attempt = Flaky(1000, ConnectionResetError("reset"))
    task = asyncio.ensure_future(
        retry_until_stopped(
            attempt, classify=_classify, stop=stop, clock=clock, on_retry=lambda *_: None
        )
    )
    for _ in range(1000):  # until the first failure happened and it waits for its retry
        if clock.sleepers:
            break
        await asyncio.sleep(0)
    else:
        pytest.fail("the first attempt never failed into a wait")
    stop.set()
    with pytest.raises(Stopped):
        await asyncio.wait_for(task, 5)
    assert attempt.calls == 1 and clock.monotonic() == 0.0


class Hangs:
    """Work that never ends on its own; says when it started and when it was cancelled."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def __call__(self) -> str:
        self.started.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.cancelled.set()
        return "never"


async def test_stop_cancels_an_attempt_that_hangs(clock: FakeClock) -> None:
    stop = asyncio.Event()
    hangs = Hangs()
    task = asyncio.ensure_future(
        retry_until_stopped(hangs, classify=_classify, stop=stop, clock=clock, on_retry=print)
    )
    await asyncio.wait_for(hangs.started.wait(), 5)
    stop.set()
    with pytest.raises(Stopped):
        await asyncio.wait_for(task, 5)
    assert hangs.cancelled.is_set()


# --- one helper for every loop that retries (docs/style: one retry helper) -----------


def test_the_provider_and_engine_delays_come_from_the_one_backoff() -> None:
    from bot.core.engine.engine import EngineConfig
    from bot.core.providers.base import RetryPolicy

    policy = RetryPolicy(base_delay=0.5, max_delay=4.0, jitter=0.5)
    same = Backoff(base=0.5, cap=4.0, jitter=0.5)
    for retry in range(8):
        assert policy.backoff(retry, random.Random(retry)) == same.delay(
            retry, random.Random(retry)
        )
    config = EngineConfig(retry_base_delay=2.0, retry_max_delay=60.0)
    assert [config.backoff(a) for a in (0, 1, 2, 3, 7)] == [2.0, 2.0, 4.0, 8.0, 60.0]
    assert config.backoff(5000) == 60.0  # a long outage: capped, no overflow


def test_no_other_module_rolls_its_own_exponential_backoff() -> None:
    """Found in review: the provider's RetryPolicy and the engine's EngineConfig each
    computed `base * 2 ** n` themselves, beside bot/core/retry.py's Backoff."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    own = re.compile(r"\b2\s*\*\*")
    found = [
        str(path.relative_to(root))
        for folder in ("bot", "cogs", "storage")
        for path in sorted((root / folder).rglob("*.py"))
        if path.name != "retry.py" and own.search(path.read_text(encoding="utf-8"))
    ]
    assert found == []


async def test_the_console_wait_cancels_its_work_when_it_is_cancelled() -> None:
    """The console's `unless_stopped` is core's (one copy): a wait cancelled from
    outside (Ctrl-C during a prompt) takes its work with it instead of leaking it."""
    from bot.console.waiting import STOPPED, unless_stopped

    stop = asyncio.Event()
    work = Hangs()
    waiting = asyncio.ensure_future(unless_stopped(stop, work()))
    await asyncio.wait_for(work.started.wait(), 5)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert work.cancelled.is_set()

    async def quick() -> str:
        return "done"

    assert await unless_stopped(stop, quick()) == "done"
    stop.set()
    assert await unless_stopped(stop, asyncio.Event().wait()) is STOPPED

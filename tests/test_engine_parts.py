"""The engine's small parts on their own: ids, fair queue, rate limiter, timer heap,
poll planning and the progress throttle."""

from __future__ import annotations

import asyncio

import pytest

from bot.core.clock import FakeClock
from bot.core.engine.fairqueue import FairQueue
from bot.core.engine.polling import DurationStats, PollPlan, PollPolicy
from bot.core.engine.progress import ProgressThrottle
from bot.core.engine.ratelimit import RateLimiter
from bot.core.engine.timers import TimerHeap
from bot.core.ids import ALPHABET, JOB_ID_LENGTH, new_job_id, normalize_job_id
from bot.core.models import JobState, ProgressUpdate, TaskState, TaskStatus
from bot.core.tasks import TaskGroup

# --- ids -----------------------------------------------------------------------------


def test_job_ids_are_short_random_and_forgiving() -> None:
    ids = {new_job_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == JOB_ID_LENGTH and set(i) <= set(ALPHABET) for i in ids)
    some = next(iter(ids))
    assert normalize_job_id(f"  {some.upper()} ") == some
    assert normalize_job_id("0O1IL-abcde") == "00111abcde"  # O->0, I/L->1, dashes dropped
    assert normalize_job_id("short") is None
    assert normalize_job_id("uuuuuuuuuu") is None  # U is not in the alphabet
    assert normalize_job_id("'; drop --") is None


# --- fair queue --------------------------------------------------------------------------


def test_fair_queue_serves_users_in_turn() -> None:
    queue = FairQueue()
    for job in ("h1", "h2", "h3", "h4"):
        queue.push("heavy", job)
    queue.push("light", "l1")
    queue.push("other", "o1")
    queue.push("light", "l2")
    assert queue.order() == ["h1", "l1", "o1", "h2", "l2", "h3", "h4"]
    assert [queue.position(j) for j in ("h1", "l1", "o1", "h4")] == [1, 2, 3, 7]
    assert queue.pop() == "h1"
    assert queue.order() == ["l1", "o1", "h2", "l2", "h3", "h4"]
    assert queue.remove("l2") and not queue.remove("l2")
    assert queue.position("h3") == 4 and queue.position("l2") is None
    assert [queue.pop() for _ in range(len(queue))] == ["l1", "o1", "h2", "h3", "h4"]
    assert queue.pop() is None


# --- rate limiter ------------------------------------------------------------------------


def test_rate_limiter_spreads_a_burst_and_pauses_on_429() -> None:
    limiter = RateLimiter(rate_per_second=2.0, burst=2)
    times = [limiter.reserve(10.0) for _ in range(5)]
    assert times == [10.0, 10.0, 10.5, 11.0, 11.5]
    limiter.pause(20.0)
    assert limiter.reserve(12.0) == 20.0
    assert limiter.reserve(12.0) == 20.5  # no burst right after a pause
    assert limiter.reserve(30.0) == 30.0
    with pytest.raises(ValueError):
        RateLimiter(0)


# --- timer heap ----------------------------------------------------------------------------


async def test_timer_heap_fires_in_order_and_replaces_keys(clock: FakeClock) -> None:
    timers = TimerHeap(clock)
    fired: list[tuple[str, float]] = []
    driver = asyncio.ensure_future(timers.run())
    try:
        timers.call_at("a", 5.0, lambda: fired.append(("a", clock.monotonic())))
        timers.call_at("b", 3.0, lambda: fired.append(("b", clock.monotonic())))
        timers.call_at("c", 4.0, lambda: fired.append(("c", clock.monotonic())))
        timers.cancel("c")
        timers.call_at("a", 1.0, lambda: fired.append(("a", clock.monotonic())))  # moved
        await clock.advance(0)
        assert clock.sleepers == 1  # one sleeper for any number of timers
        await clock.advance(10.0)
        assert fired == [("a", 1.0), ("b", 3.0)]
        assert len(timers) == 0

        def boom() -> None:
            raise ValueError("a bad callback")

        timers.call_later("bad", 1.0, boom)
        timers.call_later("good", 2.0, lambda: fired.append(("good", clock.monotonic())))
        await clock.advance(5.0)
        assert fired[-1] == ("good", 12.0)  # the driver survived the bad one
    finally:
        driver.cancel()


# --- poll planning -------------------------------------------------------------------------


def _running(progress: int | None = None, eta: float | None = None) -> TaskStatus:
    return TaskStatus(state=TaskState.RUNNING, progress=progress, eta_seconds=eta)


def test_linear_progress_is_found_within_a_second_in_few_polls() -> None:
    policy = PollPolicy()
    duration = 47.0
    plan = PollPlan.start(0.0, policy, None, 30.0)
    now = plan.next_poll(0.0, policy)
    polls = 1
    while now < duration:
        plan.observe(now, _running(int(100 * now / duration)), policy)
        now = plan.next_poll(now, policy)
        polls += 1
    assert now - duration <= 1.0
    assert polls <= 5  # the fixed schedule needs 9 for 47 s


def test_without_information_polling_follows_the_documented_schedule() -> None:
    # No history and no hints: first poll after 10 s, then every 5 s, like the docs say.
    policy = PollPolicy()
    plan = PollPlan.start(0.0, policy, None, None)
    assert plan.next_poll(0.0, policy) == 10.0
    assert plan.eta(0.0) is None  # a guess is not shown as an ETA
    plan.observe(10.0, _running(), policy)
    assert plan.next_poll(10.0, policy) == 15.0
    plan.observe(15.0, _running(), policy)
    assert plan.next_poll(15.0, policy) == 20.0


def test_history_moves_the_first_poll_to_the_short_end_of_recent_durations() -> None:
    stats = DurationStats()
    for seconds in range(30, 60, 2):
        stats.record(("p", "text-to-image", 1), float(seconds))
    bounds = stats.bounds(("p", "text-to-image", 2))  # falls back to (provider, mode)
    assert bounds is not None and 29.0 <= bounds[0] <= 32.0
    plan = PollPlan.start(0.0, PollPolicy(), bounds, None)
    assert 29.0 <= plan.next_poll(0.0, PollPolicy()) <= 32.0
    assert stats.bounds(("other", "text-to-image", 1)) is None


def test_polls_never_crowd_and_callbacks_slow_them_down() -> None:
    policy = PollPolicy()
    plan = PollPlan.start(0.0, policy, None, 30.0)
    plan.observe(20.0, _running(99), policy)
    assert plan.next_poll(20.0, policy) >= 20.0 + policy.min_gap
    # Callbacks: safety-net polls from the estimate's late end (30 s + 50 %), then slowly.
    assert plan.next_poll(20.0, policy, callbacks=True) == 45.0
    assert plan.next_poll(45.0, policy, callbacks=True) == 45.0 + policy.callback_interval
    # Overdue and still running: back off from 1 s up to the blind interval.
    late = [plan.next_poll(t, policy) - t for t in (40.0, 41.0, 42.0, 43.0, 44.0, 45.0)]
    assert late[0] == policy.tail_interval and late == sorted(late)
    assert late[-1] == policy.blind_interval


# --- progress throttle ---------------------------------------------------------------------


async def test_progress_is_throttled_but_the_latest_always_arrives(clock: FakeClock) -> None:
    timers = TimerHeap(clock)
    tasks = TaskGroup("t")
    sent: list[tuple[float, ProgressUpdate]] = []

    async def send(job_id: str, update: ProgressUpdate) -> None:
        sent.append((clock.monotonic(), update))

    throttle = ProgressThrottle(clock, timers, tasks, 3.0, send)
    driver = tasks.create_task(timers.run())
    try:
        for percent in (10, 20, 30):
            throttle.publish("j", ProgressUpdate(state=JobState.RUNNING, progress=percent))
        await clock.advance(0)
        assert [u.progress for _, u in sent] == [10]  # the first goes out at once
        await clock.advance(3.0)
        assert [(t, u.progress) for t, u in sent] == [(0.0, 10), (3.0, 30)]  # latest only
        throttle.publish("j", ProgressUpdate(state=JobState.RUNNING, progress=30))
        await clock.advance(5.0)
        assert len(sent) == 2  # nothing new: nothing sent
        throttle.publish("j", ProgressUpdate(state=JobState.RUNNING, progress=60))
        throttle.publish("j", ProgressUpdate(state=JobState.DELIVERING, progress=100), force=True)
        await clock.advance(0)
        assert sent[-1][1].state is JobState.DELIVERING  # forced: not held back
        await throttle.drain("j")
        throttle.forget("j")
    finally:
        driver.cancel()
        await tasks.close()

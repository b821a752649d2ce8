"""The history-only poll planner (durations.py, PollPlan) against the exact optimum of
bench/optimal.py: deterministic, no clocks, no timing."""

from __future__ import annotations

import random

import pytest

from bench import optimal
from bot.core.engine.durations import Durations, DurationStats
from bot.core.engine.polling import PollPlan, PollPolicy
from bot.core.models import TaskState, TaskStatus

RUNNING = TaskStatus(state=TaskState.RUNNING)
# Prices around the engine's operating point (a median lag of about 1-2 s): enough to
# interpolate the optimum there, few enough to keep the dynamic programme quick.
PRICES = (1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)


def plan_schedule(durations: Durations | None, end: float, policy: PollPolicy) -> list[float]:
    """The poll times the plan chooses for a task that is still running at each look."""
    plan = PollPlan.start(0.0, policy, durations, None)
    polls = [plan.next_poll(0.0, policy)]
    while polls[-1] <= end:
        plan.observe(polls[-1], RUNNING, policy)
        polls.append(plan.next_poll(polls[-1], policy))
    return polls


@pytest.fixture(scope="module")
def frontiers() -> dict[str, tuple[optimal.Table, list[optimal.Cost]]]:
    out = {}
    for model in optimal.MODELS:
        table = optimal.Table(model)
        out[model.name] = (table, optimal.frontier(table, PRICES))
    return out


@pytest.mark.parametrize("model", optimal.MODELS, ids=["today", "uniform", "lognormal"])
def test_with_a_well_known_distribution_calls_are_within_10_percent_of_the_optimum(
    model: optimal.Model, frontiers: dict[str, tuple[optimal.Table, list[optimal.Cost]]]
) -> None:
    table, costs = frontiers[model.name]
    rng = random.Random(1)
    durations = Durations([model.draw(rng) for _ in range(2000)])
    cost = optimal.evaluate(table, plan_schedule(durations, table.end, PollPolicy()))
    at_median = optimal.calls_at_median(costs, cost.lag_p50)
    at_mean = optimal.calls_at_mean(costs, cost.lag_mean)
    assert at_median is not None and at_mean is not None, cost
    assert cost.calls <= 1.1 * at_median, (cost, at_median)
    assert cost.calls <= 1.1 * at_mean, (cost, at_mean)  # the optimum's own measure


def test_learning_from_its_own_polls_it_stays_near_the_optimum(
    frontiers: dict[str, tuple[optimal.Table, list[optimal.Cost]]],
) -> None:
    """As in the engine: each task's duration is only known between two looks, and that
    estimate is what the history learns from."""
    model = optimal.MODELS[0]
    _, costs = frontiers[model.name]
    policy = PollPolicy()
    rng = random.Random(5)
    stats = DurationStats()
    key = ("apixo", "text-to-image", 1)
    lags, calls = [], []
    for index in range(1500):
        duration = model.draw(rng)
        plan = PollPlan.start(0.0, policy, stats.history(key), None)
        now, n = plan.next_poll(0.0, policy), 1
        while now < duration:
            plan.observe(now, RUNNING, policy)
            now, n = plan.next_poll(now, policy), n + 1
        stats.record(key, plan.duration(now))
        if index >= 200:  # the first ones run on the default guess and a short history
            lags.append(now - duration)
            calls.append(n)
    lags.sort()
    median = lags[len(lags) // 2]
    mean_calls = sum(calls) / len(calls)
    at_median = optimal.calls_at_median(costs, median)
    assert at_median is not None
    assert mean_calls <= 1.1 * at_median, (mean_calls, median, at_median)
    assert median <= 1.1  # the default price aims at a median lag of about 1 s


def test_never_more_calls_than_the_fixed_schedule_on_a_wide_spread() -> None:
    # Uniform 10-60 s: a 1 s median lag would cost more calls than the documented
    # schedule, so the price rises until it costs no more.
    model = optimal.MODELS[1]
    table = optimal.Table(model)
    rng = random.Random(2)
    durations = Durations([model.draw(rng) for _ in range(2000)])
    ours = optimal.evaluate(table, plan_schedule(durations, table.end, PollPolicy()))
    fixed = optimal.evaluate(table, optimal.fixed(10.0, 5.0, table.end))
    assert ours.calls <= 1.02 * fixed.calls, (ours, fixed)
    assert ours.lag_mean < fixed.lag_mean


def test_each_poll_comes_when_the_expected_lag_since_the_last_reaches_the_price() -> None:
    rng = random.Random(3)
    durations = Durations([20.0 + 40.0 * rng.betavariate(2.0, 3.0) for _ in range(128)])
    for a in (0.0, 22.0, 30.0, 41.5, 58.0, 75.0, 200.0):
        b = durations.next_poll(a, 0.3)
        survival = 1.0 - durations.cdf(a)
        assert b > a
        assert durations.accrued_lag(a, b) / survival == pytest.approx(0.3, rel=1e-3)
    # No look before tasks start finishing; then close together where they bunch.
    first = durations.next_poll(0.0, 0.3)
    assert first > durations.quantile(0.01)
    assert durations.next_poll(33.0, 0.3) - 33.0 < 0.25 * first


def test_quantiles_invert_the_distribution() -> None:
    durations = Durations([float(s) for s in range(20, 61)])
    for q in (0.01, 0.05, 0.5, 0.9, 0.99, 0.999):
        assert durations.cdf(durations.quantile(q)) == pytest.approx(q, abs=1e-9)
    assert 55.0 < durations.quantile(0.95) < 62.0
    assert durations.quantile(0.5) == pytest.approx(40.0, abs=1.5)


def test_with_callbacks_safety_polls_start_at_the_p99_of_history() -> None:
    policy = PollPolicy()
    durations = Durations([float(s) for s in range(20, 61)])
    plan = PollPlan.start(100.0, policy, durations, None)
    first = plan.next_poll(100.0, policy, callbacks=True)
    assert first == pytest.approx(100.0 + durations.quantile(0.99))
    assert first > 100.0 + 60.0  # nearly every task has finished by then
    plan.observe(first, RUNNING, policy)
    assert plan.next_poll(first, policy, callbacks=True) == first + policy.callback_interval
    # Nothing known yet: from the default guess's late end (30 + 20 s).
    cold = PollPlan.start(0.0, policy, None, None)
    assert cold.next_poll(0.0, policy, callbacks=True) == 50.0


def test_a_task_done_at_the_first_look_records_where_history_puts_it() -> None:
    policy = PollPolicy()
    durations = Durations([float(s) for s in range(20, 61)])
    plan = PollPlan.start(0.0, policy, durations, None)
    first = plan.next_poll(0.0, policy)
    recorded = plan.duration(first)
    # Within what history allows before the look, not a fixed fraction of it that
    # would drag the low end (and so the first poll) ever earlier.
    assert durations.quantile(0.0) < recorded <= first
    assert recorded > 0.75 * first


def test_a_look_a_callback_brought_forward_records_the_time_it_took() -> None:
    policy = PollPolicy()
    durations = Durations([float(s) for s in range(20, 61)])
    plan = PollPlan.start(0.0, policy, durations, None)
    safety = plan.next_poll(0.0, policy, callbacks=True)
    # The webhook came as the task ended, 37 s in, long before the safety-net poll:
    # the task took 37 s, not "somewhere in (0, 37]" (which would drift history short).
    assert safety > 37.0
    assert plan.duration(37.0) == pytest.approx(37.0)
    # Seen done at the planned poll itself: only "some time before it" is known.
    polled = PollPlan.start(0.0, policy, durations, None)
    at = polled.next_poll(0.0, policy, callbacks=True)
    assert polled.duration(at) < at


def test_history_is_rebuilt_once_a_sixteenth_of_it_is_new() -> None:
    stats = DurationStats()
    key = ("p", "text-to-image", 1)
    for s in range(64):
        stats.record(key, 20.0 + s / 2)
    built = stats.history(key)
    assert built is not None and built.count == 64
    for _ in range(3):
        stats.record(key, 50.0)
    assert stats.history(key) is built  # 3 of 64: not yet
    stats.record(key, 50.0)
    rebuilt = stats.history(key)
    assert rebuilt is not built and rebuilt is not None and rebuilt.count == 68
    # Falls back to (provider, mode), then to the provider.
    assert stats.history(("p", "text-to-image", 4)) is not None
    assert stats.history(("q", "text-to-image", 1)) is None

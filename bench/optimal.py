"""The best poll schedule for a known duration distribution, and what a schedule costs.

A schedule is a list of poll times t_1 < t_2 < ... (seconds after the submit); a
task of duration T is seen done at the first t_i >= T, after i status calls and
with lag t_i - T. For a distribution F (survival S = 1 - F):

    E[calls] = sum_i S(t_(i-1))                                  (t_0 = 0)
    E[lag]   = sum_i integral over (t_(i-1), t_i] of (F(x) - F(t_(i-1))) dx
    P(lag <= m) = sum_i F(t_i) - F(max(t_(i-1), t_i - m))

all computed here exactly (F on a fine grid, linear between points).

The reference ("optimal schedule without hints"): for a price lambda of one second
of lag in calls, the schedule minimising E[calls] + lambda * E[lag] over all poll
times on a 0.1 s grid, found exactly by dynamic programming over "the last poll was
at a and the task was not done then":

    V(a) = min over b in (a, a + 60 s] of  S(a) + lambda * lag(a, b) + V(b)

(V = 0 once S is below 1e-6). Sweeping lambda traces the lower boundary of what any
schedule can reach in (E[calls], E[lag]); each of those schedules also has a median
lag, and "the optimum at median lag m" is the calls of that boundary interpolated at
m. It is the optimum for mean lag, shown against the median: a schedule built for
the median alone could cover half the tasks tightly and neglect the rest, which no
one would want; at equal median these reference schedules are what the planner is
held to.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

GRID = 0.01  # seconds between the points where F is tabulated
DP_STEP = 0.1  # poll times the dynamic programme may choose
DP_MAX_GAP = 60.0


@dataclass(frozen=True)
class Model:
    """A duration distribution: name, CDF, sampler, and where it ends (S < 1e-7)."""

    name: str
    cdf: Callable[[float], float]
    draw: Callable[[random.Random], float]
    end: float


def _beta23_cdf(u: float) -> float:
    u = min(max(u, 0.0), 1.0)
    return 6 * u**2 - 8 * u**3 + 3 * u**4  # regularised incomplete Beta(2, 3)


def _lognormal_cdf(x: float, median: float, sigma: float) -> float:
    if x <= 0:
        return 0.0
    return 0.5 * (1 + math.erf(math.log(x / median) / (sigma * math.sqrt(2))))


LOGNORMAL_SIGMA = 0.5

MODELS = (
    Model(
        "today's (20 + 40 x Beta(2, 3) s)",
        lambda x: _beta23_cdf((x - 20.0) / 40.0),
        lambda rng: 20.0 + 40.0 * rng.betavariate(2.0, 3.0),
        60.0,
    ),
    Model(
        "uniform 10-60 s",
        lambda x: min(max((x - 10.0) / 50.0, 0.0), 1.0),
        lambda rng: rng.uniform(10.0, 60.0),
        60.0,
    ),
    Model(
        f"lognormal, median 30 s, sigma {LOGNORMAL_SIGMA:g}",
        lambda x: _lognormal_cdf(x, 30.0, LOGNORMAL_SIGMA),
        lambda rng: rng.lognormvariate(math.log(30.0), LOGNORMAL_SIGMA),
        30.0 * math.exp(LOGNORMAL_SIGMA * 5.3),  # z = 5.3: S < 1e-7
    ),
)


class Table:
    """F tabulated on a fine grid, with its running integral, for exact sums."""

    def __init__(self, model: Model) -> None:
        self.model = model
        n = int(model.end / GRID) + 2
        self.f = [model.cdf(i * GRID) for i in range(n)]
        c = [0.0]
        for i in range(1, n):
            c.append(c[-1] + GRID * (self.f[i] + self.f[i - 1]) / 2)
        self.c = c
        self.end = (n - 1) * GRID

    def cdf(self, x: float) -> float:
        if x >= self.end:
            return 1.0
        if x <= 0:
            return 0.0
        i = int(x / GRID)
        w = x / GRID - i
        return self.f[i] + w * (self.f[i + 1] - self.f[i])

    def integral(self, x: float) -> float:
        if x <= 0:
            return 0.0
        if x >= self.end:
            return self.c[-1] + (x - self.end)
        i = int(x / GRID)
        u = x - i * GRID
        slope = (self.f[i + 1] - self.f[i]) / GRID
        return self.c[i] + self.f[i] * u + slope * u * u / 2

    def lag(self, a: float, b: float) -> float:
        return self.integral(b) - self.integral(a) - (b - a) * self.cdf(a)


@dataclass(frozen=True)
class Cost:
    calls: float  # E[status calls]
    lag_mean: float
    lag_p50: float
    lag_p95: float


def evaluate(table: Table, polls: Sequence[float]) -> Cost:
    """Exact cost of a schedule (it must run past the end of the distribution)."""
    calls, lag = 0.0, 0.0
    prev = 0.0
    for t in polls:
        s = 1.0 - table.cdf(prev)
        if s <= 0:
            break
        calls += s
        lag += table.lag(prev, t)
        prev = t
    if table.cdf(prev) < 1.0 - 1e-6:
        raise ValueError("schedule ends before the distribution does")

    def within(m: float) -> float:
        total, before = 0.0, 0.0
        for t in polls:
            if before >= table.end:
                break
            total += table.cdf(t) - table.cdf(max(before, t - m))
            before = t
        return total

    return Cost(calls, lag, _solve(within, 0.5), _solve(within, 0.95))


def _solve(within: Callable[[float], float], q: float) -> float:
    lo, hi = 0.0, 1.0
    while within(hi) < q and hi < 1e4:
        lo, hi = hi, hi * 2
    for _ in range(40):
        mid = (lo + hi) / 2
        if within(mid) < q:
            lo = mid
        else:
            hi = mid
    return hi


def fixed(first: float, every: float, end: float) -> list[float]:
    """The documented kind of schedule: `first` s after the submit, then every `every` s."""
    polls = [first]
    while polls[-1] < end:
        polls.append(polls[-1] + every)
    return polls


def optimal(table: Table, price: float) -> list[float]:
    """The schedule minimising E[calls] + price * E[lag] (poll times on DP_STEP)."""
    n = int(table.end / DP_STEP) + 1
    xs = [i * DP_STEP for i in range(n + 1)]
    fs = [table.cdf(x) for x in xs]
    cs = [table.integral(x) for x in xs]
    reach = int(DP_MAX_GAP / DP_STEP)
    value = [0.0] * (n + 1)
    choice = [n] * (n + 1)
    # price * lag(a, b) + V(b) = (price * C(b) + V(b)) - F(a) * price * b + terms in a only
    head = [price * c for c in cs]  # price * C(b) + V(b), V(b) added as it is known
    slope = [price * x for x in xs]
    for i in range(n - 1, -1, -1):
        s = 1.0 - fs[i]
        if s < 1e-6:
            value[i], choice[i] = 0.0, n
            head[i] = price * cs[i]
            continue
        fa = fs[i]
        top = min(i + reach, n) + 1
        options = [h - fa * b for h, b in zip(head[i + 1 : top], slope[i + 1 : top], strict=True)]
        k = min(range(len(options)), key=options.__getitem__)
        best = options[k] - price * cs[i] + fa * slope[i]
        value[i], choice[i] = s + best, i + 1 + k
        head[i] = price * cs[i] + value[i]
    polls, i = [], 0
    while i < n:
        i = choice[i]
        polls.append(xs[i])
    return polls


PRICES = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)


def frontier(table: Table, prices: Sequence[float] = PRICES) -> list[Cost]:
    """The optimal schedules' costs, by falling median lag."""
    costs = [evaluate(table, optimal(table, p)) for p in prices]
    return sorted(costs, key=lambda c: -c.lag_p50)


def calls_at_median(costs: Sequence[Cost], lag_p50: float) -> float | None:
    """Calls of the optimal frontier at this median lag (linear between its points);
    None outside the range the frontier covers."""
    return _interpolate([(c.lag_p50, c.calls) for c in costs], lag_p50)


def calls_at_mean(costs: Sequence[Cost], lag_mean: float) -> float | None:
    """Calls of the optimal frontier at this mean lag: the least any schedule needs."""
    return _interpolate([(c.lag_mean, c.calls) for c in costs], lag_mean)


def _interpolate(pairs: Sequence[tuple[float, float]], x: float) -> float | None:
    points = sorted(pairs)
    xs = [p for p, _ in points]
    if not xs or x < xs[0] or x > xs[-1]:
        return None
    j = bisect.bisect_left(xs, x)
    if xs[j] == x:
        return points[j][1]
    (x0, y0), (x1, y1) = points[j - 1], points[j]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)

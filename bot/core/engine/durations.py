"""How long tasks take: recent durations, and when to look next when that is all we know.

`DurationStats` keeps the last 128 durations per (provider, mode, count).
`DurationStats.history(key)` turns them into a `Durations`: a smooth distribution
(a piecewise-linear CDF through the samples, kept open towards longer ones while
samples are few, with an exponential tail past the longest one) that answers

* `quantile(q)`: e.g. the p99 where safety-net polls start when callbacks are on;
* `next_poll(a, lag_per_call)`: the next look, a seconds after the submit, for a
  task not done at a, when nothing but history is known (APIXO, DashScope).

The poll rule. Polls at t1 < t2 < ... cost E[calls] = sum_i S(t_(i-1)) (S the
survival function, t_0 the submit) and E[lag] = sum_i integral over (t_(i-1), t_i]
of (t_i - x) f(x) dx. Minimising E[calls] + E[lag] / c for a price c (seconds of
lag one call is worth) with smooth f gives gaps g(t) = sqrt(2 c S(t) / f(t)), i.e.
each gap ends when the lag expected to have built up in it, for a task not done at
its start, reaches c:

    integral over (a, b] of (b - x) f(x) dx / S(a) = c.

So the planner looks rarely where tasks seldom finish, often where they bunch, and
with even steps in an exponential tail. `bench/optimal.py` computes the exact
optimum by dynamic programming; `tests/test_poll_plan.py` keeps this rule within
10 % of it in calls at equal median lag.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Sequence

DurationKey = tuple[str, str, int]  # (provider, mode, count)

# While samples are few they are, after a start, the shortest tasks (the first to
# finish): a uniform range from the longest seen to twice that is blended in with the
# weight of PRIOR_WEIGHT samples, fading to nothing at PRIOR_UNTIL samples, so the tail
# stays open. Relative to the samples, so fast providers (seconds) keep fast polls.
PRIOR_WEIGHT = 2.0
PRIOR_UNTIL = 32
# Knots at every k-th sample, k = THIN * sqrt(n): one knot per sample makes a density
# of spikes (the rule then chases noise); sqrt(n) did as well as any of 0.5-2 x sqrt(n)
# in the simulation of bench/polling.py.
THIN = 1.0
# Below the shortest sample F rises from 0 over this share of the way to the median.
# Tasks done at the first look are recorded within what it allows (PollPlan.duration),
# so with none at all the low end could never move down once the first look is late.
RAMP = 0.1


class Durations:
    """A distribution of task durations (seconds) built from samples."""

    __slots__ = ("_c", "_f", "_prices", "_steps", "_tail", "_x", "count")

    def __init__(self, samples: Sequence[float]) -> None:
        ordered = sorted(s for s in samples if s > 0)
        if not ordered:
            raise ValueError("no durations")
        n = len(ordered)
        self.count = n
        weight = PRIOR_WEIGHT * max(0.0, 1.0 - n / PRIOR_UNTIL)
        prior = (ordered[-1], 2 * ordered[-1]) if weight > 0 else None
        # Empirical part: F(x_(i)) = i / (n + 1) at every k-th sample and the longest,
        # linear between, from 0 one spacing below the shortest; the last 1 / (n + 1)
        # is the tail.
        thin = max(1, round(THIN * math.sqrt(n)))
        values: list[float] = []
        ranks: list[float] = []
        for i, x in enumerate(ordered, 1):
            if i != n and i % thin:
                continue
            if values and x == values[-1]:
                ranks[-1] = i
            else:
                values.append(x)
                ranks.append(i)
        median = ordered[(n - 1) // 2]
        # While samples are few it may well lie far below them: from a quarter of the
        # shortest for one sample, fading to the rule above at PRIOR_UNTIL samples.
        few = max(0.0, 1.0 - n / PRIOR_UNTIL)
        ramp = max((median - values[0]) * RAMP, 0.75 * values[0] * few, 0.5)
        start = max(values[0] - ramp, 0.0)
        emp_x = [start, *values]
        emp_f = [0.0, *(r / (n + 1) for r in ranks)]
        knots = set(emp_x)
        if prior is not None:
            knots.update(prior)
        xs = sorted(knots)
        end = xs[-1]
        fs = []
        for x in xs:
            emp = _interp(emp_x, emp_f, x)
            pri = 0.0
            if prior is not None:
                lo, hi = prior
                pri = min(max((x - lo) / (hi - lo), 0.0), 1.0)
            fs.append((n * emp + weight * pri) / (n + weight))
        # Past the last knot the remaining mass decays exponentially, with a scale
        # from the spread of the upper half of the samples.
        self._tail = max((ordered[-1] - median) / 2, 1.0, 0.05 * end)
        self._x = xs
        self._f = fs
        # _c[j]: integral of F from xs[0] to xs[j] (F is linear between knots).
        c = [0.0]
        for j in range(1, len(xs)):
            c.append(c[-1] + (xs[j] - xs[j - 1]) * (fs[j] + fs[j - 1]) / 2)
        self._c = c
        self._prices: dict[tuple[float, float, float], float] = {}
        self._steps: dict[float, float] = {}  # even steps in the tail, per price

    # --- the distribution ---------------------------------------------------------------

    def cdf(self, x: float) -> float:
        xs, fs = self._x, self._f
        if x <= xs[0]:
            return 0.0
        if x >= xs[-1]:
            return 1.0 - (1.0 - fs[-1]) * math.exp(-(x - xs[-1]) / self._tail)
        return _interp(xs, fs, x)

    def quantile(self, q: float) -> float:
        xs, fs = self._x, self._f
        if q <= 0:
            return xs[0]
        if q >= fs[-1]:
            rest = 1.0 - fs[-1]
            return xs[-1] + self._tail * math.log(rest / max(1.0 - q, 1e-12))
        j = bisect.bisect_left(fs, q)
        if fs[j] == fs[j - 1]:
            return xs[j]
        return xs[j - 1] + (xs[j] - xs[j - 1]) * (q - fs[j - 1]) / (fs[j] - fs[j - 1])

    def _integral(self, x: float) -> float:
        """Integral of F from xs[0] to x."""
        xs, fs, c = self._x, self._f, self._c
        if x <= xs[0]:
            return 0.0
        if x >= xs[-1]:
            u = x - xs[-1]
            rest = 1.0 - fs[-1]
            return c[-1] + u - rest * self._tail * (1.0 - math.exp(-u / self._tail))
        j = bisect.bisect_right(xs, x)
        u = x - xs[j - 1]
        slope = (fs[j] - fs[j - 1]) / (xs[j] - xs[j - 1])
        return c[j - 1] + fs[j - 1] * u + slope * u * u / 2

    def accrued_lag(self, a: float, b: float) -> float:
        """E[(b - T) ; a < T <= b] = integral over (a, b] of F(x) - F(a) dx."""
        return self._integral(b) - self._integral(a) - (b - a) * self.cdf(a)

    def expected_within(self, a: float, b: float) -> float:
        """E[T | a < T <= b]: a task's duration when all we saw is that it finished
        between two looks."""
        fa, fb = self.cdf(a), self.cdf(b)
        if fb - fa <= 1e-9:
            return (a + b) / 2
        return b - self.accrued_lag(a, b) / (fb - fa)

    # --- the poll rule ---------------------------------------------------------------------

    def next_poll(self, a: float, lag_per_call: float) -> float:
        """The first b > a where the lag expected to build up after a, for a task not
        done at a, reaches `lag_per_call` (seconds after the submit)."""
        if lag_per_call <= 0:
            raise ValueError("lag_per_call must be positive")
        survival = 1.0 - self.cdf(a)
        xs = self._x
        if survival <= 1e-9 or a >= xs[-1]:
            # In the exponential tail the hazard is constant: an even step, where
            # g - tail * (1 - exp(-g / tail)) = lag_per_call.
            return a + self._tail_step(lag_per_call)
        goal = lag_per_call * survival
        base = self._integral(a)
        fa = 1.0 - survival
        # Walk the knots after a until the goal is passed, then solve in that segment.
        j = bisect.bisect_right(xs, a)
        left, lag_left = a, 0.0
        while j < len(xs):
            lag = self._c[j] - base - (xs[j] - a) * fa
            if lag >= goal:
                return left + _solve_segment(
                    lag_left,
                    self.cdf(left) - fa,
                    (self._f[j] - self._f[j - 1]) / (xs[j] - xs[j - 1]),
                    goal,
                    xs[j] - left,
                )
            left, lag_left = xs[j], lag
            j += 1
        # Past the last knot: A(u) = lag_left + (1 - fa) u - rest * tail * (1 - e^(-u/tail)).
        rest = 1.0 - self._f[-1]
        tail = self._tail
        lo, hi = 0.0, 1.0
        while self._tail_lag(lag_left, fa, rest, tail, hi) < goal:
            lo, hi = hi, hi * 2
        for _ in range(30):
            mid = (lo + hi) / 2
            if self._tail_lag(lag_left, fa, rest, tail, mid) < goal:
                lo = mid
            else:
                hi = mid
        return left + hi

    # --- the call budget ---------------------------------------------------------------------

    def expected_calls(self, polls: Sequence[float]) -> float:
        """E[status calls] of polling at these times (seconds after the submit)."""
        calls, before = 0.0, 0.0
        for t in polls:
            calls += 1.0 - self.cdf(before)
            before = t
        return calls

    def schedule(self, lag_per_call: float, first_min: float = 0.0) -> list[float]:
        """The rule's poll times from the submit until nearly every task is done."""
        polls: list[float] = []
        t = 0.0
        end = self.quantile(0.999)
        while t < end:
            t = max(self.next_poll(t, lag_per_call), first_min)
            polls.append(t)
        return polls

    def price(self, lag_per_call: float, first: float, every: float) -> float:
        """`lag_per_call`, raised if need be so that polling costs no more calls than
        the fixed schedule (`first` s, then every `every` s) would on these durations:
        the lag target is bought only where it is cheap enough (narrow spreads)."""
        key = (lag_per_call, first, every)
        cached = self._prices.get(key)
        if cached is not None:
            return cached
        end = self.quantile(0.999)
        fixed = [first]
        while fixed[-1] < end:
            fixed.append(fixed[-1] + every)
        budget = self.expected_calls(fixed)
        price = lag_per_call
        calls = self.expected_calls(self.schedule(price))
        # Calls fall about as 1 / sqrt(price) (gaps grow as sqrt(price)): a few secant
        # steps on that law, each a little beyond, end within budget.
        for _ in range(6):
            if calls <= budget:
                break
            price *= (calls / budget) ** 2 * 1.02
            calls = self.expected_calls(self.schedule(price))
        self._prices[key] = price
        return price

    @staticmethod
    def _tail_lag(base: float, fa: float, rest: float, tail: float, u: float) -> float:
        return base + (1.0 - fa - rest) * u + rest * (u - tail * (1.0 - math.exp(-u / tail)))

    def _tail_step(self, lag_per_call: float) -> float:
        step = self._steps.get(lag_per_call)
        if step is None:
            step = self._steps[lag_per_call] = self._solve_tail_step(lag_per_call)
        return step

    def _solve_tail_step(self, lag_per_call: float) -> float:
        tail = self._tail
        lo, hi = 0.0, math.sqrt(2 * tail * lag_per_call) + lag_per_call + 1.0
        for _ in range(40):
            mid = (lo + hi) / 2
            if mid - tail * (1.0 - math.exp(-mid / tail)) < lag_per_call:
                lo = mid
            else:
                hi = mid
        return hi


def _interp(xs: Sequence[float], fs: Sequence[float], x: float) -> float:
    if x <= xs[0]:
        return fs[0]
    if x >= xs[-1]:
        return fs[-1]
    j = bisect.bisect_right(xs, x)
    x0, x1 = xs[j - 1], xs[j]
    return fs[j - 1] + (fs[j] - fs[j - 1]) * (x - x0) / (x1 - x0)


def _solve_segment(base: float, df: float, slope: float, goal: float, width: float) -> float:
    """Smallest u in [0, width] with base + df * u + slope * u^2 / 2 >= goal."""
    need = goal - base
    if need <= 0:
        return 0.0
    if slope <= 1e-12:
        return min(need / df, width) if df > 0 else width
    # slope/2 u^2 + df u - need = 0, the positive root, in a form safe when df >> slope.
    u = 2 * need / (df + math.sqrt(df * df + 2 * slope * need))
    return min(u, width)


class DurationStats:
    """Recent task durations per (provider, mode, count), with coarser fallbacks.

    A window of recent values (not a mean and deviation) because durations are
    far from normal: their spread is what tells where to poll.
    """

    def __init__(self, window: int = 128) -> None:
        self._window = window
        self._recent: dict[tuple[str, str | None, int | None], deque[float]] = {}
        # The distribution built from each key's samples, and samples added since.
        self._built: dict[tuple[str, str | None, int | None], tuple[Durations, int]] = {}

    @staticmethod
    def _keys(key: DurationKey) -> list[tuple[str, str | None, int | None]]:
        provider, mode, count = key
        return [(provider, mode, count), (provider, mode, None), (provider, None, None)]

    def record(self, key: DurationKey, seconds: float) -> None:
        if seconds <= 0:
            return
        for k in self._keys(key):
            self._recent.setdefault(k, deque(maxlen=self._window)).append(seconds)
            built = self._built.get(k)
            if built is not None:
                self._built[k] = (built[0], built[1] + 1)

    def history(self, key: DurationKey) -> Durations | None:
        """The distribution of the most specific key with data. Rebuilt (about 0.1-1 ms)
        once 1/16 of the window is new, not at every completion: at scale thousands of
        jobs finish, and one more sample in 128 moves little."""
        for k in self._keys(key):
            values = self._recent.get(k)
            if values:
                built = self._built.get(k)
                if built is None or built[1] >= max(1, len(values) // 16):
                    built = self._built[k] = (Durations(values), 0)
                return built[0]
        return None

    def bounds(self, key: DurationKey) -> tuple[float, float] | None:
        """(low, high): about the 5th and 95th percentiles of the most specific
        key with data, widened while there are few samples."""
        for k in self._keys(key):
            values = self._recent.get(k)
            if values:
                ordered = sorted(values)
                n = len(ordered)
                low, high = ordered[int(0.05 * (n - 1))], ordered[int(0.95 * (n - 1) + 0.5)]
                if n < 8:  # too few to trust the tails
                    spread = max(high - low, 0.5 * low)
                    low, high = low - 0.5 * spread, high + 0.5 * spread
                return max(low, 0.0), high
        return None

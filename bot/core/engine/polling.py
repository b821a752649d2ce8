"""When to ask a provider about a task: fewer status calls, results sooner.

The documented schedule (first poll after 10 s, then every 5 s) costs
1 + ceil((T - 10) / 5) calls for a task of T seconds and finds the result
2.5 s late on average (anywhere in 0-5 s): for T in 20-60 s, 3-11 calls
(7.5 on average).

We poll where the answer can change instead of on a fixed beat. Every job
carries an estimate of its finish time F with an error bar E (seconds):

* Before any answer, F and E come from a prior: the 5th-95th percentile window
  of the last 128 durations for the same (provider, mode, count) (falling back
  to the same provider and mode, then the provider), else the provider's own
  estimate in the submit answer (EvoLink's `estimated_time`, taken as +-50 %),
  else a default of 30 +- 20 s, which puts the first poll at 10 s like the
  documented schedule.
* Each answer sharpens F. With a progress percentage, F is extrapolated from
  the rate of progress between the last two changes (or since the submit, for
  the first sample, which is only a first look: tasks that queue at the
  provider before they start make it too slow). A remaining-time estimate is
  used when there is no progress. E is how far F moved since the previous
  estimate (a stable extrapolation is trusted, one that jumps is not), and
  never less than the resolution of the evidence (half a progress step, in
  seconds; coarse 5/10/20/25 % steps are detected).
* Nothing can have finished before F - E, so the next poll is at F - E; once E
  is small (<= 1 s) the poll is aimed just after the expected finish, F + E.

With a linear-ish progress report this converges in about four calls: one at
F0 - E0 that measures the rate, one that confirms it, one close to the end and
one just after the finish. Simulated over tasks of 20-60 s (seeded, 400 tasks;
tests/test_engine_scheduler.py checks the same on the real engine):

    hints                      calls/task   lag p50   lag mean
    fixed 10 s + every 5 s        7.5        2.5 s     2.5 s
    progress (+/- estimate)       3.9        0.5 s     0.6 s
    progress, 5 s queue first     3.8        0.4 s     0.5 s
    remaining-time estimate       3.4        0.7 s     0.9 s
    coarse 10 % progress steps    5.3        0.7 s     (p90 3 s)

Without progress or ETA hints (APIXO, DashScope) history is all there is, and
the planner follows the near-optimal rule of durations.py on the distribution
of recent durations: look rarely where tasks seldom finish, often where they
bunch, each look when the lag expected since the last one reaches
`lag_per_call`, but never at more calls than the fixed schedule would cost on
that distribution. `bench/polling.py` measures it against the exact optimum.

Safety rails: never sooner than `first_poll_min` after the submit or
`min_gap` after the last poll; never longer than `max_interval` between polls;
if a sharp estimate passes without a result the planner backs off from
`tail_interval` by x1.5 per miss up to `blind_interval`. When provider
callbacks are on, polling is only a safety net: from the p99 of recent
durations (`callback_quantile`; else the late end of the estimate), then every
`callback_interval`. A look a callback brought forward (before the planned one)
records the time since the submit as the task's duration, since the webhook comes as
the task ends; read as "done some time since the last look", the history would drift
short and the safety-net polls start ever earlier.
The rate limiter and the 429 back-off may delay a planned poll further.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.engine.durations import DurationKey, Durations, DurationStats
from bot.core.models import TaskStatus

__all__ = ["DurationKey", "DurationStats", "Durations", "PollPlan", "PollPolicy"]

# A look this much before the planned one was not planned (timers may fire a little
# early: the loop's clock resolution, scaled by a compressed clock in the bench).
_EARLY = 0.1


@dataclass(frozen=True, slots=True)
class PollPolicy:
    first_poll_min: float = 2.0  # never sooner after the submit
    min_gap: float = 0.5  # never two polls of one job closer than this
    confident_error: float = 1.0  # an estimate this sharp (s) is aimed at directly
    tail_margin: float = 0.1  # poll this long after the confident finish estimate
    tail_interval: float = 1.0  # first step once the expected finish has passed
    blind_interval: float = 4.0  # longest step inside the expected window (with hints)
    # Step while the estimate is only the default guess (no history, no hints):
    # the documented 5 s beat, since a finer one costs calls without knowledge to aim.
    guess_interval: float = 5.0
    # With history only: seconds of lag one status call is worth (durations.py). 0.135
    # gives a median lag of about 0.95 s on 20-60 s tasks at about 0.94x the fixed
    # schedule's calls, near the optimum's own trade (bench/RESULTS.md, "Poll
    # schedule"); lower buys lag with calls.
    lag_per_call: float = 0.135
    max_interval: float = 30.0  # longest wait between two polls, whatever the estimate
    callback_interval: float = 30.0  # safety-net polling when callbacks are on...
    callback_quantile: float = 0.99  # ...from this quantile of recent durations on
    default_duration: float = 30.0  # prior when nothing is known
    default_error: float = 20.0
    hint_error_ratio: float = 0.5  # a provider's submit-time estimate is this uncertain
    single_sample_step: float = 0.25  # after one progress sample, look again this far in
    first_rate_error: float = 0.25  # relative error of the first measured rate


class PollPlan:
    """The finish estimate of one running task, and when to ask next."""

    __slots__ = (
        "_anchor",
        "_durations",
        "_error",
        "_evidence",
        "_finish",
        "_hinted",
        "_last_poll",
        "_misses",
        "_planned",
        "_rate",
        "_rate_samples",
        "_safety_start",
        "_seen",
        "started",
    )

    def __init__(
        self,
        started: float,
        finish: float,
        error: float,
        *,
        evidence: bool,
        durations: Durations | None = None,
        safety_start: float | None = None,
    ) -> None:
        self.started = started
        self._finish = finish
        self._error = error
        self._evidence = evidence  # False while F is only a default guess
        # History to poll by, until an answer carries progress or a remaining time.
        self._durations = durations
        self._hinted = False  # an answer carried progress or a remaining time
        # Seconds after the submit when safety-net polls start (callbacks on).
        self._safety_start = finish - started + error if safety_start is None else safety_start
        self._anchor: tuple[float, float] | None = None  # (time, progress) of the last change
        self._rate: float | None = None  # progress percent per second
        self._rate_samples = 0
        self._seen: set[int] = set()  # progress values reported so far
        self._last_poll: float | None = None
        self._planned: float | None = None  # the last poll time next_poll gave
        self._misses = 0

    @classmethod
    def start(
        cls,
        started: float,
        policy: PollPolicy,
        history: Durations | tuple[float, float] | None,
        hint_seconds: float | None,
    ) -> PollPlan:
        if isinstance(history, Durations):
            low, high = history.quantile(0.05), history.quantile(0.95)
            return cls(
                started,
                started + (low + high) / 2,
                (high - low) / 2,
                evidence=True,
                # A provider that estimates at submit (EvoLink) reports progress too:
                # aim at F - E and then at the progress, not by history alone.
                durations=history if hint_seconds is None else None,
                safety_start=history.quantile(policy.callback_quantile),
            )
        if history is not None:
            low, high = history
            return cls(started, started + (low + high) / 2, (high - low) / 2, evidence=True)
        if hint_seconds is not None and hint_seconds >= 0:
            # A 0 s estimate (a fast provider, the mock) means "ask soon", not "unknown".
            error = max(hint_seconds * policy.hint_error_ratio, 0.5)
            return cls(started, started + hint_seconds, error, evidence=True)
        return cls(
            started,
            started + policy.default_duration,
            policy.default_error,
            evidence=False,
        )

    @property
    def finish(self) -> float:
        return self._finish

    @property
    def error(self) -> float:
        return self._error

    def eta(self, now: float) -> float | None:
        """Seconds left, for display; None while it would only be a guess."""
        return max(0.0, self._finish - now) if self._evidence else None

    def observe(self, now: float, status: TaskStatus, policy: PollPolicy) -> None:
        """Fold a not-yet-finished status answer into the estimate."""
        self._last_poll = now
        progress = status.progress
        if progress is not None and progress > 0:
            self._seen.add(progress)
            step = self._step()
            # Reports truncate to `step`, so the truth is in [p, p + step): use the middle.
            mid = min(progress + step / 2, 99.9)
            anchor = self._anchor
            if anchor is not None and progress <= anchor[1]:
                return  # no movement since the last change: keep the estimate
            if anchor is None:
                # Rate since the submit: biased low if the task waited before it
                # started, so only a first look; the next poll measures the rate.
                rate = mid / max(now - self.started, 1e-6)
                finish = now + (100.0 - mid) / rate
                error = (1 - policy.single_sample_step) * (finish - now)
            else:
                rate = (progress - anchor[1]) / max(now - anchor[0], 1e-6)
                finish = now + (100.0 - mid) / rate
                if self._rate_samples < 1:
                    error = policy.first_rate_error * (finish - now)
                else:
                    error = abs(finish - self._finish)  # a stable rate is trusted
                self._rate_samples += 1
            self._anchor = (now, progress)
            self._rate = rate
            self._finish = finish
            self._error = max(error, step / 2 / rate)
            self._evidence = self._hinted = True
        elif status.eta_seconds is not None and status.eta_seconds >= 0:
            old = self._finish
            self._finish = now + status.eta_seconds
            self._error = max(abs(self._finish - old), 0.2 * status.eta_seconds, 0.5)
            self._evidence = self._hinted = True

    def _step(self) -> int:
        """The provider's progress granularity: 1, or 5/10/20/25 when every value seen
        so far (at least two) is a multiple of it."""
        if len(self._seen) >= 2:
            for step in (25, 20, 10, 5):
                if all(value % step == 0 for value in self._seen):
                    return step
        return 1

    def next_poll(self, now: float, policy: PollPolicy, *, callbacks: bool = False) -> float:
        """Monotonic time of the next status query."""
        self._planned = when = self._next_poll(now, policy, callbacks)
        return when

    def _next_poll(self, now: float, policy: PollPolicy, callbacks: bool) -> float:
        earliest = max(self.started + policy.first_poll_min, now + policy.min_gap)
        if self._last_poll is None:
            earliest = max(self.started + policy.first_poll_min, now)
        if callbacks:
            # The webhook brings the result; these polls only catch a lost one, so they
            # start when nearly every task has finished (p99 of history), not at once.
            first = self.started + self._safety_start
            target = first if now < first - policy.min_gap else now + policy.callback_interval
            return max(earliest, target)
        if self._durations is not None and not self._hinted:
            # History is all we know: the near-optimal rule of durations.py.
            elapsed = max(now - self.started, 0.0)
            price = self._durations.price(
                policy.lag_per_call, policy.guess_interval * 2, policy.guess_interval
            )
            step = self._durations.next_poll(elapsed, price)
            return min(max(self.started + step, earliest), now + policy.max_interval)
        low = self._finish - self._error
        blind = policy.blind_interval if self._evidence else policy.guess_interval
        if self._last_poll is not None and now > self._finish + self._error:
            # The estimate passed without a result. A sharp one was nearly right: step
            # up from tail_interval; a vague one says little: keep the blind step.
            self._misses += 1
            if self._error <= policy.confident_error:
                step = policy.tail_interval * 1.5 ** (self._misses - 1)
            else:
                step = blind
            target = now + min(step, blind)
        elif self._error <= policy.confident_error:
            target = self._finish + self._error + policy.tail_margin
        elif low > earliest:
            target = low  # nothing can have finished before then
        else:
            target = now + min(max(self._error / 2, policy.tail_interval), blind)
        return min(max(target, earliest), now + policy.max_interval)

    def duration(self, now: float) -> float:
        """Best guess of how long the task took, seen finished at `now`."""
        elapsed = now - self.started
        planned = self._planned
        if planned is not None and now < planned - _EARLY:
            # A callback brought this look forward: the task ended just now.
            return elapsed
        if self._last_poll is None:
            if self._durations is not None:
                # Done at the first look, somewhere in (0, elapsed]: where history says.
                # (A fixed fraction of `elapsed` would drag the window's low end below
                # the shortest task, and so the first poll ever earlier.)
                return self._durations.expected_within(0.0, elapsed)
            # Done at the first look: it took at most this long. Recording a bit
            # less lets the window's low end creep down towards short tasks.
            return 0.75 * elapsed
        if self._rate is not None and self._last_poll <= self._finish <= now:
            return self._finish - self.started
        return (self._last_poll + now) / 2 - self.started

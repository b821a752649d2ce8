"""The engine's settings and counters (re-exported by engine.py and the package)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bot.core.engine.polling import PollPolicy
from bot.core.retry import Backoff, Retry

# The key the callback token was kept under in Job.delivery before it got its own
# column (migration 0007); kept for data and benches that still name it.
CALLBACK_TOKEN = "callback_token"

# After a restart, a running or delivering job gets at least this long to finish.
RESUME_GRACE = 300.0


@dataclass(frozen=True)
class EngineConfig:
    deadline_seconds: float = 900.0
    provider_concurrency: int = 8
    max_running_per_user: int | None = None  # a user's jobs started and not yet final
    status_rps: float = 5.0
    status_burst: int = 5
    progress_interval: float = 3.0  # at most one progress update per job this often
    callback_base_url: str | None = None  # public URL of the callback server; None: off
    submit_attempts: int = 3  # submits refused with a TRANSIENT error are tried again
    task_attempts: int = 2  # provider tasks per job (at most 2: a failed task is retried once)
    status_error_limit: int = 6  # failed status queries in a row (each already retried)
    download_attempts: int = 3
    # Result bytes deliveries hold at once, downloaded and not yet posted (one alone
    # may exceed it): bounds memory when many jobs with big images end together.
    result_bytes_in_flight: int = 200 * 1024 * 1024
    deliver_attempts: int = 3
    # A post that never answers (a hung upload) is given up on after this long and
    # tried again; after `deliver_deadline` in all the job fails and is refunded.
    deliver_attempt_timeout: float = 120.0
    deliver_deadline: float = 600.0
    retry_base_delay: float = 2.0
    retry_max_delay: float = 60.0
    # Share of each retry delay randomly taken off. Zero by default: the status rate
    # limiter and the provider concurrency already spread the engine's retries, and
    # tests stay deterministic; the engine's `rng` draws it when set.
    retry_jitter: float = 0.0
    # On close, deliveries and failure notices already under way get this long to end,
    # so a SIGTERM does not cut off a post half-recorded or a user's error message.
    close_grace_seconds: float = 3.0
    poll: PollPolicy = field(default_factory=PollPolicy)

    @property
    def retry_backoff(self) -> Backoff:
        return Backoff(self.retry_base_delay, self.retry_max_delay, jitter=self.retry_jitter)

    def backoff(self, attempt: int) -> float:
        """The delay after failed try number `attempt` (1 = the first), without jitter."""
        return Backoff(self.retry_base_delay, self.retry_max_delay, jitter=0.0).delay(attempt - 1)

    def retry(
        self,
        attempts: int,
        *,
        deadline: float | None = None,
        retryable: Callable[[BaseException], bool] | None = None,
        retry_after: bool = False,
    ) -> Retry:
        """The one retry policy of the engine, with this many tries."""
        if retryable is None:
            return Retry(attempts, self.retry_backoff, deadline, retry_after=retry_after)
        return Retry(attempts, self.retry_backoff, deadline, retryable, retry_after)


@dataclass
class EngineStats:
    """Counters for measurements and `doctor`-style reports."""

    submits: int = 0
    status_calls: int = 0
    status_errors: int = 0
    callbacks: int = 0
    delivered: int = 0
    failed: int = 0

"""The engine's counting points, as a port: core never imports a metrics library.

The engine calls these at a few points (a provider answer, a failure, a delivery);
`NO_METRICS` does nothing, so tests and front ends that do not watch pay nothing.
The Prometheus implementation lives in `bot/ops/metrics.py` and is built in the
composition root.
"""

from __future__ import annotations

from typing import Protocol

from bot.core.models import Job, UserError


class EngineMetrics(Protocol):
    def provider_ok(self, provider: str) -> None:
        """The provider answered a submit or status query normally."""

    def provider_failure(self, provider: str, category: str) -> None:
        """A submit, status query or task failed; `category` is a FailureCategory value."""

    def job_delivered(self, job: Job, lag_seconds: float) -> None:
        """`job` is DONE; `lag_seconds` ran from the provider's "succeeded" being seen
        to the results being posted and recorded."""

    def job_failed(self, job: Job, error: UserError) -> None:
        """`job` ended FAILED or CANCELLED with `error`."""

    def interaction_ack(self, platform: str, seconds: float) -> None:
        """A front end acknowledged a user's interaction `seconds` after it was sent."""


class NoMetrics:
    """Counts nothing."""

    def provider_ok(self, provider: str) -> None:
        return None

    def provider_failure(self, provider: str, category: str) -> None:
        return None

    def job_delivered(self, job: Job, lag_seconds: float) -> None:
        return None

    def job_failed(self, job: Job, error: UserError) -> None:
        return None

    def interaction_ack(self, platform: str, seconds: float) -> None:
        return None


NO_METRICS: EngineMetrics = NoMetrics()

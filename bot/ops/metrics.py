"""Prometheus metrics: the engine's counting points plus values read at scrape time.

Everything lives in a private `CollectorRegistry` built in the composition root
(no import-time globals), so two runtimes in one process, or tests, never share
counters. Counters start at zero on every start, as Prometheus expects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from bot.core.engine import EngineStats
from bot.core.models import Job, JobState, UserError
from bot.core.quota import quota_scope
from bot.ops.health import ProviderHealth

CONTENT_TYPE = CONTENT_TYPE_LATEST
StateCounts = Callable[[], Awaitable[Mapping[str, int]]]

# Delivery lag: the bot's own share (download + post + record), usually well under 10 s.
_LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
# Discord's window for an acknowledgement is 3 s.
_ACK_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)


class PromMetrics:
    """Implements `bot.core.metrics.EngineMetrics` on a private registry."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        price_per_image_usd: float,
        provider_health: ProviderHealth | None = None,
    ) -> None:
        self.registry = registry
        self.provider_health = provider_health or ProviderHealth()
        self._price = price_per_image_usd
        self._live: _Live | None = None
        self.jobs = Gauge("wanbot_jobs", "Stored jobs by state.", ["state"], registry=registry)
        self.delivery_lag = Histogram(
            "wanbot_delivery_lag_seconds",
            "From the provider's 'succeeded' being seen to the results posted and recorded.",
            ["platform"],
            buckets=_LAG_BUCKETS,
            registry=registry,
        )
        self.provider_failures = Counter(
            "wanbot_provider_failures",
            "Failed submits, status queries and tasks, by who can fix them.",
            ["provider", "category"],
            registry=registry,
        )
        self.job_failures = Counter(
            "wanbot_job_failures",
            "Jobs ended failed or cancelled, by the cause the user was told.",
            ["platform", "kind"],
            registry=registry,
        )
        self.images = Counter(
            "wanbot_images",
            "Images delivered (and charged), by server and platform.",
            ["guild", "platform"],
            registry=registry,
        )
        self.spend = Counter(
            "wanbot_spend_usd",
            "Spend on delivered images at the configured price, by server and platform.",
            ["guild", "platform"],
            registry=registry,
        )
        self.ack_latency = Histogram(
            "wanbot_interaction_ack_seconds",
            "From a user's interaction being sent to the bot acknowledging it.",
            ["platform"],
            buckets=_ACK_BUCKETS,
            registry=registry,
        )

    def watch_engine(self, stats: EngineStats, provider: str, in_flight: Callable[[], int]) -> None:
        """Read the engine's own counters at scrape time (no hook per status call)."""
        if self._live is None:
            self._live = _Live(stats, provider, in_flight)
            self.registry.register(self._live)

    async def refresh(self, counts: StateCounts) -> None:
        """Read what is only known from the store (jobs by state) just before a scrape."""
        found = await counts()
        for state in JobState:
            self.jobs.labels(state=state.value).set(found.get(state.value, 0))

    def render(self) -> bytes:
        return _generate_latest(self.registry)

    # --- EngineMetrics -------------------------------------------------------------

    def provider_ok(self, provider: str) -> None:
        self.provider_health.ok()

    def provider_failure(self, provider: str, category: str) -> None:
        self.provider_failures.labels(provider=provider, category=category).inc()
        self.provider_health.failed(category)

    def job_delivered(self, job: Job, lag_seconds: float) -> None:
        platform = job.requester.platform
        guild = quota_scope(job.requester.guild_id)
        self.delivery_lag.labels(platform=platform).observe(max(0.0, lag_seconds))
        if job.delivered > 0:
            self.images.labels(guild=guild, platform=platform).inc(job.delivered)
            self.spend.labels(guild=guild, platform=platform).inc(job.delivered * self._price)

    def job_failed(self, job: Job, error: UserError) -> None:
        self.job_failures.labels(platform=job.requester.platform, kind=error.kind.value).inc()

    def interaction_ack(self, platform: str, seconds: float) -> None:
        self.ack_latency.labels(platform=platform).observe(max(0.0, seconds))


class _Live(Collector):
    def __init__(self, stats: EngineStats, provider: str, in_flight: Callable[[], int]) -> None:
        self._stats = stats
        self._provider = provider
        self._in_flight = in_flight

    def collect(self) -> Iterator[Metric]:
        flight = GaugeMetricFamily(
            "wanbot_jobs_in_flight", "Jobs the engine is working on (queued to delivering)."
        )
        flight.add_metric([], self._in_flight())
        yield flight
        calls = [
            ("wanbot_status_calls", "Status queries sent to the provider.", "status_calls"),
            ("wanbot_status_errors", "Status queries that failed.", "status_errors"),
            ("wanbot_submits", "Submits sent to the provider.", "submits"),
            ("wanbot_callbacks", "Provider callbacks received.", "callbacks"),
        ]
        for name, doc, attr in calls:
            family = CounterMetricFamily(name, doc, labels=["provider"])
            family.add_metric([self._provider], getattr(self._stats, attr))
            yield family

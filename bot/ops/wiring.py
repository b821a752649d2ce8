"""Builds the ops side of the runtime from settings: metrics, health, HTTP servers and
the daily prune. Kept here so that bot/runtime.py only calls in."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry

from bot.callback_server import CallbackTarget, HttpServer, MediaSource, OpsEndpoints
from bot.core.clock import Clock
from bot.core.engine import JobEngine
from bot.ops.health import HealthChecks, ProviderHealth
from bot.ops.metrics import PromMetrics
from bot.settings import Settings
from storage.factory import Store
from storage.retention import DAY

log = logging.getLogger(__name__)


def build_metrics(settings: Settings, price_per_image_usd: float) -> PromMetrics | None:
    """A private registry when METRICS_PORT is set; None (no counting at all) if not."""
    if settings.metrics_port is None:
        return None
    return PromMetrics(CollectorRegistry(), price_per_image_usd=price_per_image_usd)


def build_health(store: Store, metrics: PromMetrics | None) -> HealthChecks:
    provider = metrics.provider_health if metrics is not None else ProviderHealth()
    return HealthChecks(ping_database=store.ping, provider=provider)


def build_servers(
    settings: Settings,
    engine: JobEngine,
    store: Store,
    metrics: PromMetrics | None,
    health: HealthChecks,
    media: MediaSource | None = None,
) -> tuple[list[HttpServer], HttpServer | None]:
    """The HTTP servers to run, and the public one (callbacks and served input images,
    on CALLBACK_HOST:CALLBACK_PORT): one server when the callback and metrics ports are
    the same, two when they differ."""
    callbacks: CallbackTarget | None = engine if engine.callbacks_enabled else None
    public = callbacks is not None or media is not None
    ops: OpsEndpoints | None = None
    if metrics is not None:
        metrics.watch_engine(engine.stats, engine.provider.name, lambda: engine.active_count)
        ops = OpsEndpoints(health=health, metrics=metrics, job_counts=store.jobs_by_state)
    if public and ops is not None and settings.metrics_port == settings.callback_port:
        shared = HttpServer(
            settings.callback_host,
            settings.callback_port,
            callbacks=callbacks,
            ops=ops,
            media=media,
        )
        return [shared], shared
    servers: list[HttpServer] = []
    callback_server = None
    if public:
        callback_server = HttpServer(
            settings.callback_host, settings.callback_port, callbacks=callbacks, media=media
        )
        servers.append(callback_server)
    if ops is not None:
        assert settings.metrics_port is not None
        servers.append(HttpServer(settings.metrics_host, settings.metrics_port, ops=ops))
    return servers, callback_server


async def prune_daily(store: Store, clock: Clock, retention_days: int) -> None:
    """Prune at start and then once a day, for as long as the bot runs."""
    while True:
        try:
            await store.prune_jobs(now=clock.now(), retention_days=retention_days)
        except Exception:
            log.exception("the daily prune failed; trying again tomorrow")
        await clock.sleep(DAY)

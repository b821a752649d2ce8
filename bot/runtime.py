"""The composition root every front end shares: settings in, a running bot core out.

    rt = Runtime(settings)                 # inside a running event loop; no I/O yet
    rt.chat.add_surface(surface)           # a front end: its jobs' delivery port
    await rt.start()                       # opens the database, recovers jobs, listens
    ...
    await rt.close()                       # engine, callback server, tasks, HTTP, DB

`async with Runtime(settings) as rt:` opens the database on entry and closes
everything on exit; call `await rt.start()` inside, once the delivery ports are
registered, so recovered jobs find their front end. Tests may pass a clock, a
provider, an HTTP session or a database path; what is passed in is not closed here.
"""

from __future__ import annotations

import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp

from bot.callback_server import HttpServer
from bot.chat.service import ChatService
from bot.chat.starting import ChatDeps
from bot.core.alerts import AlertThrottle, FanOut, LogAlerts
from bot.core.clock import Clock
from bot.core.download import SafeDownloader
from bot.core.engine import EngineConfig, JobEngine
from bot.core.http import make_http_session
from bot.core.metrics import NO_METRICS
from bot.core.ports import ImageProvider
from bot.core.providers.factory import build_provider
from bot.core.quota import QuotaDefaults
from bot.core.tasks import TaskGroup
from bot.media import MediaHost, build_media
from bot.memory import Trimmer, tune_allocator
from bot.ops.wiring import build_health, build_metrics, build_servers, prune_daily
from bot.settings import ProviderName, Settings
from storage.factory import build_store, default_clock

log = logging.getLogger(__name__)


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        deadline_seconds=settings.job_deadline_seconds,
        provider_concurrency=settings.provider_concurrency,
        max_running_per_user=settings.max_running_jobs_per_user,
        status_rps=settings.provider_status_rps,
        status_burst=max(1, round(settings.provider_status_rps)),
        progress_interval=settings.progress_update_seconds,
        callback_base_url=settings.callback_public_url if settings.callback_enabled else None,
        result_bytes_in_flight=settings.delivery_max_bytes_in_flight,
        deliver_attempt_timeout=settings.delivery_attempt_timeout_seconds,
        deliver_deadline=settings.delivery_deadline_seconds,
    )


def build_settings_provider(
    settings: Settings,
    clock: Clock,
    session: aiohttp.ClientSession,
    downloader: SafeDownloader,
) -> ImageProvider:
    name = settings.effective_provider()
    base_urls = {
        ProviderName.APIXO: settings.apixo_base_url,
        ProviderName.EVOLINK: settings.evolink_base_url,
        ProviderName.DASHSCOPE: settings.dashscope_base_url,
    }
    return build_provider(
        name.value,
        clock=clock,
        session=session,
        api_key=settings.provider_key(name),
        base_url=base_urls.get(name),
        files_url=settings.evolink_files_url,
        downloader=downloader,
        mock_latency_seconds=settings.mock_latency_seconds,
    )


class Runtime:
    """Everything the front ends use, built from settings. See the module doc."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        provider: ImageProvider | None = None,
        http: aiohttp.ClientSession | None = None,
        database_path: str | Path | None = None,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or default_clock(settings, database_path)
        self.tasks = TaskGroup("runtime")
        # Pillow work (input repair, result re-encoding) gets its own small pool: on
        # the loop's default executor a burst of conversions would also hold up DNS
        # lookups (aiohttp resolves in that pool), and with them the 3 s interaction ack.
        self.image_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="images")
        defaults = QuotaDefaults.from_settings(settings)
        self._own_http = http is None
        self.http = http if http is not None else make_http_session()
        self.downloader = SafeDownloader(
            self.http, settings.download_allowed_hosts, settings.download_max_bytes
        )
        self.provider = provider or build_settings_provider(
            settings, self.clock, self.http, self.downloader
        )
        price = settings.price_per_image_usd
        if price is None:
            price = self.provider.capabilities.price_per_image_usd
        # SQLite at DATABASE_PATH (one process per database: a second bot would resume,
        # and pay for, the same stored jobs), or PostgreSQL when DATABASE_URL is set (any
        # number of processes, sharing the jobs through leases). The store takes its
        # lock in open(), before anything is read or migrated.
        self.store = build_store(
            settings,
            clock=self.clock,
            defaults=defaults,
            price_per_image_usd=price,  # stored with each job's charge
            database_path=database_path,
        )
        self.db = self.store.db
        self.jobs = self.store.jobs
        self.quotas = self.store.quotas
        self.lock = self.store.lock
        # METRICS_PORT set: Prometheus counters on a private registry, else none at all.
        self.metrics = build_metrics(settings, price)
        self.engine = JobEngine(
            self.jobs,
            self.provider,
            clock=self.clock,
            config=engine_config(settings),
            metrics=self.metrics or NO_METRICS,
            share=self.store.share,  # PostgreSQL: several processes share the jobs
        )
        # After a burst of deliveries, freed image memory goes back to the system.
        self.trimmer = Trimmer(self.image_executor)
        self.engine.result_bytes.on_drained = self.trimmer.drained
        # Admin alerts: always logged; front ends add where people read them
        # (`rt.alert_sinks.add(...)`), throttled to one per cause, server and hour.
        self.alert_sinks = FanOut([LogAlerts()])
        self.engine.alerts = AlertThrottle(self.alert_sinks, self.clock)
        # Front ends add themselves: self.health.watch_frontend("discord", bot.is_ready).
        self.health = build_health(self.store, self.metrics)
        # Input images the bot serves itself (APIXO fetches public URLs only); None when
        # the provider takes them another way or no public URL is set. Front ends host
        # through `media.session()`; a job's images go when the job ends.
        self.media: MediaHost | None = build_media(settings, self.provider, self.clock)
        if self.media is not None:
            self.engine.on_final(self.media.job_final)
        self._price = price
        self.http_servers: list[HttpServer]
        self.callback_server: HttpServer | None
        self.http_servers, self.callback_server = build_servers(
            settings, self.engine, self.store, self.metrics, self.health, self.media
        )
        if settings.callback_enabled and not self.engine.callbacks_enabled:
            log.warning(
                "CALLBACK_ENABLED is set but %s sends no callbacks: polling only",
                self.provider.name,
            )
        self._opened = False
        self._started = False

    @functools.cached_property
    def chat(self) -> ChatService:
        """Every use case once, for every chat front end; each adds its surface. Built
        on first use, from the parts as they are then (tests may swap some)."""
        return ChatService(
            ChatDeps(
                engine=self.engine,
                jobs=self.jobs,
                quotas=self.quotas,
                provider=self.provider,
                downloader=self.downloader,
                clock=self.clock,
                image_executor=self.image_executor,
                price_per_image=self._price,
            )
        )

    async def open(self) -> Runtime:
        """Take the database's process lock, then open it (idempotent). Raises
        storage.errors.DatabaseInUse, naming the holder's PID, when another process has it."""
        if not self._opened:
            tune_allocator()  # see bot/memory.py
            await self.store.open()
            self._opened = True
        return self

    async def start(self) -> None:
        """Open what is not open yet, start listening for callbacks, and resume the
        stored jobs of every front end that registered its delivery port."""
        if self._started:
            return
        await self.open()
        for server in self.http_servers:
            await server.start()
        await self.engine.start()
        if self.settings.job_retention_days > 0:
            self.tasks.create_task(
                prune_daily(self.store, self.clock, self.settings.job_retention_days),
                name="daily-prune",
            )
        self._started = True

    async def close(self) -> None:
        """Stop in order: engine work first (jobs stay stored for the next start),
        then the callback server, background tasks, HTTP session and database."""
        await self.engine.close()
        for server in self.http_servers:
            await server.close()
        await self.tasks.close()
        if self._own_http and not self.http.closed:
            await self.http.close()
        if self._opened:
            await self.store.close()
            self._opened = False
        self.trimmer.close()
        self.image_executor.shutdown(wait=False, cancel_futures=True)
        self._started = False

    async def __aenter__(self) -> Runtime:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

"""The job engine: takes a validated request to a final state, exactly once.

    submit -> admit (quota reserved, job stored QUEUED) -> fair queue per provider
           -> SUBMITTING -> provider.submit -> RUNNING (task id stored)
           -> status polls (and callbacks) -> DELIVERING (result URLs stored)
           -> download -> DeliveryPort.deliver -> DONE (charge = delivered)
    any failure -> FAILED / CANCELLED with the true cause; the reservation is refunded

Every state change is a compare-and-set (`JobStore.transition`), and a move to a
final state settles the quota in the same statement, so two racing paths (a poll
and a callback, a cancel and a completion, a deadline and a delivery) cannot both
win and nothing is charged twice. No task sleeps per job: one timer heap drives
polls, deadlines, retries and delayed progress updates (see polling.py for when
polls happen and why). Tasks exist only while something is in flight.

This module is the coordinator; each phase is a module of its own:

    admission.py  submit and cancel          dispatch.py  slots, fair queue, the submit
    watching.py   polls, callbacks, deadline delivery.py  download, post, record DONE
    recovery.py   resuming after a restart   settle.py    failing; wait_final, on_final
    health.py     outages and setup alerts   context.py   what the phases share
    sharing.py    several processes on one database (leases, claims, wake-ups)
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from bot.core.clock import Clock
from bot.core.engine.admission import Admission
from bot.core.engine.budget import ByteBudget
from bot.core.engine.config import CALLBACK_TOKEN, RESUME_GRACE, EngineConfig, EngineStats
from bot.core.engine.context import Context
from bot.core.engine.delivery import Delivery
from bot.core.engine.dispatch import Dispatch
from bot.core.engine.health import Health
from bot.core.engine.recovery import Recovery
from bot.core.engine.settle import FinalListener, Settle
from bot.core.engine.sharing import Sharing
from bot.core.engine.watching import Watch
from bot.core.errors import ShuttingDown
from bot.core.ids import new_job_id, normalize_job_id
from bot.core.metrics import NO_METRICS, EngineMetrics
from bot.core.models import GenerationRequest, Job, JobState, ProgressUpdate, Requester
from bot.core.ports import AdminAlerts, DeliveryPort, ImageProvider, JobStore, WorkShare

__all__ = [
    "CALLBACK_TOKEN",
    "RESUME_GRACE",
    "EngineConfig",
    "EngineStats",
    "JobEngine",
]


class JobEngine:
    """Implements `bot.core.ports.JobService` for one provider."""

    def __init__(
        self,
        store: JobStore,
        provider: ImageProvider,
        *,
        clock: Clock,
        config: EngineConfig | None = None,
        new_id: Callable[[], str] = new_job_id,
        metrics: EngineMetrics = NO_METRICS,
        rng: random.Random | None = None,
        share: WorkShare | None = None,
    ) -> None:
        """`share`: other processes work on the same database (sharing.py); without
        one this engine is the only worker and resumes every stored job."""
        self.provider = provider
        self.clock = clock
        self.config = config or EngineConfig()
        ctx = self._ctx = Context(
            store, provider, clock, self.config, metrics, rng or random.Random()
        )
        self.stats: EngineStats = ctx.stats
        self.result_bytes: ByteBudget = ctx.result_bytes
        ctx.settle = self._settle = Settle(ctx)
        ctx.health = Health(ctx)
        ctx.dispatch = self._dispatch = Dispatch(ctx)
        ctx.watch = self._watch = Watch(ctx)
        ctx.deliver = Delivery(ctx)
        self._admission = Admission(ctx, new_id)
        self._recovery = ctx.recovery = Recovery(ctx)
        ctx.sharing = Sharing(ctx, share) if share is not None else None
        self._driver: asyncio.Task[None] | None = None
        self._recovered = False

    # The composition root and test harnesses set these after construction; every
    # phase reads them through the shared context, so a new value reaches all.

    @property
    def store(self) -> JobStore:
        return self._ctx.store

    @store.setter
    def store(self, store: JobStore) -> None:
        self._ctx.store = store

    @property
    def alerts(self) -> AdminAlerts | None:
        """Facts for the admins of the servers affected (bot.core.alerts.AlertThrottle).
        Without it no failure claims they were told."""
        return self._ctx.alerts

    @alerts.setter
    def alerts(self, alerts: AdminAlerts | None) -> None:
        self._ctx.alerts = alerts

    @property
    def metrics(self) -> EngineMetrics:
        return self._ctx.metrics

    @metrics.setter
    def metrics(self, metrics: EngineMetrics) -> None:
        self._ctx.metrics = metrics

    # --- lifecycle -------------------------------------------------------------

    def register_delivery(self, platform: str, port: DeliveryPort) -> None:
        self._ctx.ports[platform] = port

    async def start(self) -> None:
        """Start the timer driver and resume every stored job whose front end has
        registered its delivery port (others are left for that front end)."""
        ctx = self._ctx
        if self._driver is None:
            self._driver = ctx.tasks.create_task(ctx.timers.run(), name="engine-timers")
        if self._recovered:
            return
        self._recovered = True
        if ctx.sharing is not None:
            await ctx.sharing.start()  # takes over what nobody holds, claims what fits
        else:
            await self._recovery.resume_all()

    async def close(self) -> None:
        """Stop all work. Jobs stay in the store in their current state, so a new
        engine on the same database picks them up. Deliveries and failure notices
        already under way get `close_grace_seconds` to end first; final-state
        listeners still running are cancelled."""
        ctx = self._ctx
        ctx.closing = True
        if self._driver is not None:
            self._driver.cancel()  # no new polls, submits or deadlines from here on
        # Submits already sent, deliveries and failure notices get the grace period;
        # one may start another (a failure notice after a failed post), so loop.
        loop = asyncio.get_running_loop()
        end = loop.time() + self.config.close_grace_seconds
        while (finishing := [t for t in ctx.finishing if not t.done()]) and (
            left := end - loop.time()
        ) > 0:
            await asyncio.wait(finishing, timeout=left)
        await ctx.tasks.close()
        if ctx.sharing is not None and self._recovered:
            await ctx.sharing.close()  # the jobs still held go to the other processes
        self._driver = None
        ctx.active.clear()
        ctx.by_task.clear()

    @property
    def active_count(self) -> int:
        return len(self._ctx.active)

    @property
    def in_flight(self) -> int:
        """Submits, status queries, deliveries and messages under way right now."""
        return len(self._ctx.tasks) - (1 if self._driver is not None else 0)

    @property
    def callbacks_enabled(self) -> bool:
        return self._ctx.callbacks

    # --- JobService --------------------------------------------------------------

    async def submit(
        self,
        requester: Requester,
        request: GenerationRequest,
        *,
        delivery: dict[str, Any] | None = None,
        parent_job_id: str | None = None,
    ) -> Job:
        if self._ctx.closing:
            raise ShuttingDown()
        if self._driver is None:
            raise RuntimeError("the engine is not started: call start() first")
        if requester.platform not in self._ctx.ports:
            raise RuntimeError(f"no delivery port registered for {requester.platform!r}")
        return await self._admission.submit(requester, request, delivery, parent_job_id)

    async def cancel(self, job_id: str, requester: Requester) -> Job:
        return await self._admission.cancel(job_id, requester)

    async def get(self, job_id: str) -> Job | None:
        key = normalize_job_id(job_id) or job_id.strip()
        job = await self._ctx.store.get(key)
        a = self._ctx.active.get(key)
        if job is not None and a is not None and a.progress != job.progress:
            job = job.model_copy(update={"progress": a.progress})
        return job

    async def wait_final(self, job_id: str, timeout: float | None = None) -> Job:
        """The job once it is final: at once if the store has it final, else when this
        engine settles it (woken, not polled). `timeout` is in the engine clock's
        seconds (TimeoutError). NotFound for an unknown job."""
        return await self._settle.wait_final(job_id, timeout)

    def on_final(self, listener: FinalListener) -> None:
        """Call `listener(job)` once per job this engine moves to a final state, after
        it is settled, as a background task (cancelled on close); its exceptions are
        logged and never reach the engine."""
        self._settle.on_final(listener)

    def queue_position(self, job_id: str) -> int | None:
        return self._ctx.queue.position(normalize_job_id(job_id) or job_id.strip())

    def card_update(self, job_id: str) -> ProgressUpdate:
        ctx = self._ctx
        a = ctx.active.get(normalize_job_id(job_id) or job_id.strip())
        if a is None:
            return ProgressUpdate(state=JobState.QUEUED)  # in the shared queue, or done
        update = ctx.snapshot(a)
        if update.state is not JobState.SUBMITTING:
            return update
        # Taken from the queue: the provider has it within the submit's round trip, and
        # "generating" would be the very next edit. Said now (with the usual duration
        # as the estimate), that edit carries nothing new and is not sent.
        typical = ctx.typical_duration(a.job)
        eta = round(typical) if typical is not None else None
        return ProgressUpdate(state=JobState.RUNNING, eta_seconds=eta)

    async def on_provider_callback(self, provider: str, task_id: str) -> bool:
        return await self._watch.on_provider_callback(provider, task_id)

    async def on_callback_request(self, provider: str, job_id: str, token: str) -> bool:
        """A request to this job's callback URL: check its token, then query the status.
        The body is never read: results only ever come from a status query."""
        return await self._watch.on_callback_request(provider, job_id, token)

    def callback_url(self, job_id: str, token: str) -> str:
        return self._dispatch.callback_url(job_id, token)

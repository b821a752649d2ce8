"""What every phase of the engine shares: its collaborators, the jobs it has in hand
with their provider slots, the one timer heap and task group, and progress updates.

The phases (admission, dispatch, watching, delivery, recovery, settling, health)
call each other through the links set here by the coordinator (engine.py).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Coroutine, Hashable
from typing import TYPE_CHECKING, Any

from bot.core.clock import Clock
from bot.core.engine.budget import ByteBudget
from bot.core.engine.config import EngineConfig, EngineStats
from bot.core.engine.fairqueue import FairQueue
from bot.core.engine.polling import DurationKey, DurationStats, PollPlan
from bot.core.engine.progress import ProgressThrottle
from bot.core.engine.ratelimit import RateLimiter
from bot.core.engine.timers import TimerHeap
from bot.core.metrics import EngineMetrics
from bot.core.models import Job, JobState, ProgressUpdate
from bot.core.ports import AdminAlerts, DeliveryPort, ImageProvider, JobStore
from bot.core.tasks import TaskGroup

if TYPE_CHECKING:
    from bot.core.engine.delivery import Delivery
    from bot.core.engine.dispatch import Dispatch
    from bot.core.engine.health import Health
    from bot.core.engine.recovery import Recovery
    from bot.core.engine.settle import Settle
    from bot.core.engine.sharing import Sharing
    from bot.core.engine.watching import Watch

_Q, _S, _R, _D = JobState.QUEUED, JobState.SUBMITTING, JobState.RUNNING, JobState.DELIVERING
CANCELLABLE = (_Q, _S, _R)


class Active:
    """What the engine holds in memory for a job it is working on."""

    __slots__ = (
        "callback_seen",
        "job",
        "lease",
        "plan",
        "polling",
        "progress",
        "recheck",
        "resumed",
        "retrying_after",
        "sent_position",
        "slot",
        "status_errors",
        "submit_attempts",
        "token_reserved",
        "user",
        "user_slot",
    )

    def __init__(self, job: Job) -> None:
        self.job = job
        self.user = (job.requester.platform, job.requester.user_id)
        self.plan: PollPlan | None = None
        self.progress = job.progress
        self.slot = False  # holds one of the provider's concurrency slots
        self.user_slot = False  # counts towards its user's running limit until final
        self.polling = False  # a status query is in flight
        self.recheck = False  # a callback came during that query: ask again after it
        self.token_reserved = False  # the planned poll already has its rate-limit token
        self.callback_seen = False
        self.resumed = False  # picked up after a restart: its timing includes the downtime
        self.status_errors = 0
        self.submit_attempts = 0
        self.sent_position: int | None = None
        # A failed task's code, told with every update while it is replaced at no cost.
        self.retrying_after: str | None = None
        # Shared with other processes: this process's lease token on the job (None: the
        # engine is the only worker, or the job was let go).
        self.lease: int | None = None


class Context:
    """The engine's shared state; one per JobEngine."""

    # Set by the coordinator once every phase exists (they call each other).
    dispatch: Dispatch
    watch: Watch
    deliver: Delivery
    settle: Settle
    health: Health
    recovery: Recovery
    # Several processes on one database: the database is the queue (sharing.py).
    sharing: Sharing | None = None

    def __init__(
        self,
        store: JobStore,
        provider: ImageProvider,
        clock: Clock,
        config: EngineConfig,
        metrics: EngineMetrics,
        rng: random.Random,
    ) -> None:
        self.store = store
        self.provider = provider
        self.clock = clock
        self.config = config
        self.metrics = metrics
        self.rng = rng  # draws retry jitter (EngineConfig.retry_jitter; none by default)
        self.stats = EngineStats()
        # Set by the composition root: facts for the admins of the servers affected
        # (bot.core.alerts.AlertThrottle). Without it no failure claims they were told.
        self.alerts: AdminAlerts | None = None
        self.tasks = TaskGroup("engine")
        self.timers = TimerHeap(clock)
        self.limiter = RateLimiter(config.status_rps, config.status_burst)
        self.queue = FairQueue()
        self.durations = DurationStats()
        self.progress = ProgressThrottle(
            clock, self.timers, self.tasks, config.progress_interval, self._send_progress
        )
        self.ports: dict[str, DeliveryPort] = {}
        self.result_bytes = ByteBudget(config.result_bytes_in_flight)
        self.active: dict[str, Active] = {}
        self.by_task: dict[str, str] = {}
        self.running = 0  # concurrency slots in use
        self.user_running: dict[Hashable, int] = {}
        self.finishing: set[asyncio.Task[None]] = set()
        self.closing = False
        self.callbacks = (
            config.callback_base_url is not None and provider.capabilities.supports_callback
        )
        self._positions_scanned_at = -math.inf

    # --- jobs in hand ------------------------------------------------------------------

    def track(self, job: Job) -> Active:
        a = self.active[job.id] = Active(job)
        if job.task_id:
            self.by_task[job.task_id] = job.id
        if job.deadline_at is not None:
            left = job.deadline_at - self.clock.now()
            self.timers.call_at(
                ("deadline", job.id),
                self.clock.monotonic() + max(0.0, left),
                lambda: self.watch.deadline_due(job.id),
            )
        return a

    def untrack(self, a: Active) -> None:
        job_id = a.job.id
        if self.active.get(job_id) is a:
            del self.active[job_id]
        if a.job.task_id and self.by_task.get(a.job.task_id) == job_id:
            del self.by_task[a.job.task_id]
        for kind in ("poll", "deadline", "submit"):
            self.timers.cancel((kind, job_id))
        if self.queue.remove(job_id):
            self.positions_changed()
        if a.user_slot:
            a.user_slot = False
            left = self.user_running.get(a.user, 0) - 1
            if left > 0:
                self.user_running[a.user] = left
            else:
                self.user_running.pop(a.user, None)
        self.release_slot(a)
        self.dispatch.pump()

    def take_slot(self, a: Active) -> None:
        a.slot = True
        self.running += 1
        self.take_user_slot(a)

    def release_slot(self, a: Active) -> None:
        if a.slot:
            a.slot = False
            self.running -= 1
            if self.sharing is not None:
                self.sharing.slot_freed()
            else:
                self.dispatch.pump()

    def take_user_slot(self, a: Active) -> None:
        if not a.user_slot:
            a.user_slot = True
            self.user_running[a.user] = self.user_running.get(a.user, 0) + 1

    def may_start(self, user: Hashable) -> bool:
        limit = self.config.max_running_per_user
        return limit is None or self.user_running.get(user, 0) < limit

    def finishing_task(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """A task close() gives its grace period to: submits sent, deliveries, notices."""
        task = self.tasks.create_task(coro, name=name)
        self.finishing.add(task)
        task.add_done_callback(self.finishing.discard)

    def time_left(self, a: Active) -> float:
        if a.job.deadline_at is None:
            return math.inf
        return a.job.deadline_at - self.clock.now()

    @staticmethod
    def duration_key(job: Job) -> DurationKey:
        return (job.provider, job.request.mode.value, job.request.count)

    # --- progress ------------------------------------------------------------------

    def positions_changed(self) -> None:
        # One O(queue) scan per second at most, however many jobs come and go.
        due = max(self.clock.monotonic(), self._positions_scanned_at + 1.0)
        self.timers.call_at(("positions",), due, self._publish_positions)

    def _publish_positions(self) -> None:
        self._positions_scanned_at = self.clock.monotonic()
        for job_id, position in self.queue.positions().items():
            a = self.active.get(job_id)
            if a is None or position == a.sent_position:
                continue
            last = a.sent_position
            # Deep in a long queue, a move of a few places is not worth a message.
            if last is None or position <= 10 or abs(position - last) >= 0.1 * last:
                self.publish(a)

    def publish(self, a: Active, *, force: bool = False) -> None:
        update = self.snapshot(a)
        if update.queue_position is not None:
            a.sent_position = update.queue_position
        self.progress.publish(a.job.id, update, force=force)

    def snapshot(self, a: Active) -> ProgressUpdate:
        """Where the job is now, as its status card would tell it."""
        state = a.job.state
        position = self.queue.position(a.job.id) if state is _Q else None
        if state is _Q and position is None and a.slot:
            state = _S  # taken from the queue; the submit is starting
        eta: float | None = None
        if state is _R and a.plan is not None:
            eta = a.plan.eta(self.clock.monotonic())
        elif position is not None:
            eta = self._queue_eta(a, position)
        return ProgressUpdate(
            state=state,
            progress=a.progress if state in (_R, _D) else None,
            eta_seconds=round(eta) if eta is not None else None,
            queue_position=position,
            retrying_after=a.retrying_after,
        )

    def _queue_eta(self, a: Active, position: int) -> float | None:
        typical = self.typical_duration(a.job)
        if typical is None:
            return None
        rounds = math.ceil(position / self.config.provider_concurrency)
        return rounds * typical

    def typical_duration(self, job: Job) -> float | None:
        """Seconds a task like this one usually takes, from recent ones (None: no history)."""
        bounds = self.durations.bounds(self.duration_key(job))
        return None if bounds is None else (bounds[0] + bounds[1]) / 2

    async def _send_progress(self, job_id: str, update: ProgressUpdate) -> None:
        a = self.active.get(job_id)
        if a is None or self.closing:
            return  # while stopping, only results and failure notices still go out
        port = self.ports.get(a.job.requester.platform)
        if port is None:
            return
        job = a.job
        if a.progress != job.progress:
            job = job.model_copy(update={"progress": a.progress})
        await port.progress(job, update)

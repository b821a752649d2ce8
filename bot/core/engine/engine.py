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
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import secrets
from collections.abc import Callable, Coroutine, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from bot.core.alerts import OUTAGE_ALERT_AFTER, claim_admins_told
from bot.core.clock import Clock
from bot.core.engine import failures
from bot.core.engine.budget import ByteBudget, Hold
from bot.core.engine.deadline import DeadlinePassed, within
from bot.core.engine.fairqueue import FairQueue
from bot.core.engine.polling import DurationKey, DurationStats, PollPlan, PollPolicy
from bot.core.engine.progress import ProgressThrottle
from bot.core.engine.ratelimit import RateLimiter
from bot.core.engine.timers import TimerHeap
from bot.core.errors import (
    NotAllowed,
    NotFound,
    ProviderError,
    QuotaDenied,
    QuotaReason,
    ShuttingDown,
    SubmitUncertain,
    WanbotError,
)
from bot.core.ids import new_job_id, normalize_job_id
from bot.core.metrics import NO_METRICS, EngineMetrics
from bot.core.models import AdminAlert as AlertFact
from bot.core.models import (
    AlertCause,
    ErrorKind,
    FailureCategory,
    GenerationRequest,
    Job,
    JobState,
    PostedResults,
    ProgressUpdate,
    Requester,
    ResultImage,
    TaskState,
    TaskStatus,
    UserError,
)
from bot.core.ports import (
    POSTED_IMAGES,
    AdminAlerts,
    DeliveryPort,
    ImageProvider,
    JobStore,
    PostLookup,
)
from bot.core.retry import Backoff
from bot.core.tasks import TaskGroup

log = logging.getLogger(__name__)

# Keys the engine keeps in Job.delivery (next to the front end's own data).
CALLBACK_TOKEN = "callback_token"  # the secret part of this job's callback URL

_Q, _S, _R, _D = JobState.QUEUED, JobState.SUBMITTING, JobState.RUNNING, JobState.DELIVERING
_CANCELLABLE = (_Q, _S, _R)


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
    # On close, deliveries and failure notices already under way get this long to end,
    # so a SIGTERM does not cut off a post half-recorded or a user's error message.
    close_grace_seconds: float = 3.0
    poll: PollPolicy = field(default_factory=PollPolicy)

    def backoff(self, attempt: int) -> float:
        # The shared helper without jitter: the status rate limiter and the provider
        # concurrency already spread the engine's retries over time.
        return Backoff(self.retry_base_delay, self.retry_max_delay, jitter=0.0).delay(attempt - 1)


# After a restart, a running or delivering job gets at least this long to finish.
RESUME_GRACE = 300.0


@dataclass
class EngineStats:
    """Counters for measurements and `doctor`-style reports."""

    submits: int = 0
    status_calls: int = 0
    status_errors: int = 0
    callbacks: int = 0
    delivered: int = 0
    failed: int = 0


class _Active:
    """What the engine holds in memory for a job it is working on."""

    __slots__ = (
        "callback_seen",
        "job",
        "note",
        "plan",
        "polling",
        "progress",
        "recheck",
        "resumed",
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
        self.note: str | None = None  # shown with every progress update (a retry at no cost)


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
    ) -> None:
        self.store = store
        self.provider = provider
        self.clock = clock
        self.config = config or EngineConfig()
        self.stats = EngineStats()
        # Set by the composition root: facts for the admins of the servers affected
        # (bot.core.alerts.AlertThrottle). Without it no failure claims they were told.
        self.alerts: AdminAlerts | None = None
        self.metrics = metrics
        self._new_id = new_id
        self._tasks = TaskGroup("engine")
        self._timers = TimerHeap(clock)
        self._limiter = RateLimiter(self.config.status_rps, self.config.status_burst)
        self._queue = FairQueue()
        self._durations = DurationStats()
        self._progress = ProgressThrottle(
            clock, self._timers, self._tasks, self.config.progress_interval, self._send_progress
        )
        self._ports: dict[str, DeliveryPort] = {}
        self.result_bytes = ByteBudget(self.config.result_bytes_in_flight)
        self._active: dict[str, _Active] = {}
        self._by_task: dict[str, str] = {}
        self._running = 0  # concurrency slots in use
        self._user_running: dict[Hashable, int] = {}
        self._driver: asyncio.Task[None] | None = None
        self._finishing: set[asyncio.Task[None]] = set()
        self._closing = False
        self._recovered = False
        self._config_outage = False
        self._outage_since: float | None = None  # monotonic: first failure of a streak
        self._outage_alerted_at = -math.inf
        self._setup_detail: str | None = None
        self._positions_scanned_at = -math.inf
        self._callbacks = (
            self.config.callback_base_url is not None and provider.capabilities.supports_callback
        )

    # --- lifecycle -------------------------------------------------------------

    def register_delivery(self, platform: str, port: DeliveryPort) -> None:
        self._ports[platform] = port

    async def start(self) -> None:
        """Start the timer driver and resume every stored job whose front end has
        registered its delivery port (others are left for that front end)."""
        if self._driver is None:
            self._driver = self._tasks.create_task(self._timers.run(), name="engine-timers")
        if self._recovered:
            return
        self._recovered = True
        for job in await self.store.active_jobs():
            try:
                await self._recover(job)
            except Exception:
                log.exception("job %s: recovery failed", job.id)
        self._pump()

    async def close(self) -> None:
        """Stop all work. Jobs stay in the store in their current state, so a new
        engine on the same database picks them up. Deliveries and failure notices
        already under way get `close_grace_seconds` to end first."""
        self._closing = True
        if self._driver is not None:
            self._driver.cancel()  # no new polls, submits or deadlines from here on
        # Submits already sent, deliveries and failure notices get the grace period;
        # one may start another (a failure notice after a failed post), so loop.
        loop = asyncio.get_running_loop()
        end = loop.time() + self.config.close_grace_seconds
        while (finishing := [t for t in self._finishing if not t.done()]) and (
            left := end - loop.time()
        ) > 0:
            await asyncio.wait(finishing, timeout=left)
        await self._tasks.close()
        self._driver = None
        self._active.clear()
        self._by_task.clear()

    @property
    def active_count(self) -> int:
        return len(self._active)

    @property
    def in_flight(self) -> int:
        """Submits, status queries, deliveries and messages under way right now."""
        return len(self._tasks) - (1 if self._driver is not None else 0)

    @property
    def callbacks_enabled(self) -> bool:
        return self._callbacks

    # --- JobService --------------------------------------------------------------

    async def submit(
        self,
        requester: Requester,
        request: GenerationRequest,
        *,
        delivery: dict[str, Any] | None = None,
        parent_job_id: str | None = None,
    ) -> Job:
        if self._closing:
            raise ShuttingDown()
        if self._driver is None:
            raise RuntimeError("the engine is not started: call start() first")
        if requester.platform not in self._ports:
            raise RuntimeError(f"no delivery port registered for {requester.platform!r}")
        now = self.clock.now()
        for attempt in range(3):
            job = Job(
                id=self._new_id(),
                requester=requester,
                provider=self.provider.name,
                request=request,
                delivery=dict(delivery or {}),
                parent_job_id=parent_job_id,
                created_at=now,
                updated_at=now,
                deadline_at=now + self.config.deadline_seconds,
            )
            try:
                job = await self.store.admit(job)  # QuotaDenied goes up: nothing reserved
                break
            except QuotaDenied as denied:
                if denied.reason is QuotaReason.SERVER_BUDGET:
                    self._alert_budget(requester.guild_id, denied.remaining)
                raise
            except ValueError:
                if attempt == 2:
                    raise
                log.warning("job id %s collided; drawing another", job.id)
        if self._closing:
            # Stored and reserved while the engine stopped: the next start runs it.
            log.info("job %s: admitted during shutdown; it runs after the restart", job.id)
            return job
        a = self._track(job)
        self._queue.push(a.user, job.id)
        self._pump()
        self._publish(a)
        self._positions_changed()
        log.info("job %s: admitted (%d image(s))", job.id, request.count)
        return job

    async def cancel(self, job_id: str, requester: Requester) -> Job:
        key = normalize_job_id(job_id) or job_id.strip()
        job = await self.store.get(key)
        if job is None:
            raise NotFound(f"There is no job {job_id}.", code="job_not_found")
        owner = (
            requester.platform == job.requester.platform
            and requester.user_id == job.requester.user_id
        )
        admin = (
            requester.is_admin
            and requester.platform == job.requester.platform
            and requester.guild_id == job.requester.guild_id
        )
        if not owner and not admin:
            raise NotAllowed(
                "Only the person who started a job, or an admin, can cancel it.",
                code="not_owner",
            )
        self._check_cancellable(job)
        error = failures.cancelled(job.id, by_admin=not owner)
        done = await self._fail(job.id, error, _CANCELLABLE, state=JobState.CANCELLED)
        if done is None:
            current = await self.store.get(job.id)
            self._check_cancellable(current or job)
            raise NotAllowed(f"Job {job.id} could not be cancelled.", code="not_cancellable")
        if done.task_id:
            self._cancel_at_provider(done.task_id)
        log.info("job %s: cancelled by %s", job.id, "an admin" if not owner else "its owner")
        return done

    @staticmethod
    def _check_cancellable(job: Job) -> None:
        if job.state.final:
            raise NotAllowed(
                f"Job {job.id} has already finished ({job.state.value}).", code="already_final"
            )
        if job.state is _D:
            raise NotAllowed(
                f"Job {job.id} is finished and its images are being posted.", code="delivering"
            )

    async def get(self, job_id: str) -> Job | None:
        key = normalize_job_id(job_id) or job_id.strip()
        job = await self.store.get(key)
        a = self._active.get(key)
        if job is not None and a is not None and a.progress != job.progress:
            job = job.model_copy(update={"progress": a.progress})
        return job

    def queue_position(self, job_id: str) -> int | None:
        return self._queue.position(normalize_job_id(job_id) or job_id.strip())

    async def on_provider_callback(self, provider: str, task_id: str) -> bool:
        self.stats.callbacks += 1
        if provider != self.provider.name:
            return False
        a = self._active.get(self._by_task.get(task_id, ""))
        if a is None:
            return False  # unknown or finished task: a forged or late callback changes nothing
        if a.job.state is _R:
            self._poll_now(a)
        return True

    async def on_callback_request(self, provider: str, job_id: str, token: str) -> bool:
        """A request to this job's callback URL: check its token, then query the status.
        The body is never read: results only ever come from a status query."""
        a = self._active.get(job_id)
        if a is None or provider != self.provider.name or a.job.provider != provider:
            return False
        expected = a.job.delivery.get(CALLBACK_TOKEN)
        if not isinstance(expected, str) or not hmac.compare_digest(
            expected.encode(), token.encode()
        ):
            return False
        if a.job.state is _R and a.job.task_id:
            return await self.on_provider_callback(provider, a.job.task_id)
        a.callback_seen = True  # came before the submit answer: poll as soon as running
        return True

    def callback_url(self, job_id: str, token: str) -> str:
        base = (self.config.callback_base_url or "").rstrip("/")
        return f"{base}/callback/{self.provider.name}/{job_id}/{token}"

    # --- tracking, queue and slots -------------------------------------------------

    def _track(self, job: Job) -> _Active:
        a = self._active[job.id] = _Active(job)
        if job.task_id:
            self._by_task[job.task_id] = job.id
        if job.deadline_at is not None:
            left = job.deadline_at - self.clock.now()
            self._timers.call_at(
                ("deadline", job.id),
                self.clock.monotonic() + max(0.0, left),
                lambda: self._deadline_due(job.id),
            )
        return a

    def _untrack(self, a: _Active) -> None:
        job_id = a.job.id
        if self._active.get(job_id) is a:
            del self._active[job_id]
        if a.job.task_id and self._by_task.get(a.job.task_id) == job_id:
            del self._by_task[a.job.task_id]
        for kind in ("poll", "deadline", "submit"):
            self._timers.cancel((kind, job_id))
        if self._queue.remove(job_id):
            self._positions_changed()
        if a.user_slot:
            a.user_slot = False
            left = self._user_running.get(a.user, 0) - 1
            if left > 0:
                self._user_running[a.user] = left
            else:
                self._user_running.pop(a.user, None)
        self._release_slot(a)
        self._pump()

    def _release_slot(self, a: _Active) -> None:
        if a.slot:
            a.slot = False
            self._running -= 1
            self._pump()

    def _take_user_slot(self, a: _Active) -> None:
        if not a.user_slot:
            a.user_slot = True
            self._user_running[a.user] = self._user_running.get(a.user, 0) + 1

    def _may_start(self, user: Hashable) -> bool:
        limit = self.config.max_running_per_user
        return limit is None or self._user_running.get(user, 0) < limit

    def _pump(self) -> None:
        """Start queued jobs while the provider has free slots (and their users may)."""
        if self._closing:
            return  # queued jobs stay stored; the next start submits them
        started = False
        while self._running < self.config.provider_concurrency:
            job_id = self._queue.pop(self._may_start)
            if job_id is None:
                break
            a = self._active.get(job_id)
            if a is None:
                continue
            a.slot = True
            self._running += 1
            self._take_user_slot(a)
            started = True
            self._finishing_task(self._submit(a), f"submit-{job_id}")
        if started:
            self._positions_changed()

    def _positions_changed(self) -> None:
        # One O(queue) scan per second at most, however many jobs come and go.
        due = max(self.clock.monotonic(), self._positions_scanned_at + 1.0)
        self._timers.call_at(("positions",), due, self._publish_positions)

    def _publish_positions(self) -> None:
        self._positions_scanned_at = self.clock.monotonic()
        for job_id, position in self._queue.positions().items():
            a = self._active.get(job_id)
            if a is None or position == a.sent_position:
                continue
            last = a.sent_position
            # Deep in a long queue, a move of a few places is not worth a message.
            if last is None or position <= 10 or abs(position - last) >= 0.1 * last:
                self._publish(a)

    # --- progress ------------------------------------------------------------------

    def _publish(self, a: _Active, *, force: bool = False) -> None:
        state = a.job.state
        position = self._queue.position(a.job.id) if state is _Q else None
        if state is _Q and position is None and a.slot:
            state = _S  # taken from the queue; the submit is starting
        eta: float | None = None
        if state is _R and a.plan is not None:
            eta = a.plan.eta(self.clock.monotonic())
        elif position is not None:
            eta = self._queue_eta(a, position)
        update = ProgressUpdate(
            state=state,
            progress=a.progress if state in (_R, _D) else None,
            eta_seconds=round(eta) if eta is not None else None,
            queue_position=position,
            note=a.note,
        )
        if position is not None:
            a.sent_position = position
        self._progress.publish(a.job.id, update, force=force)

    def _queue_eta(self, a: _Active, position: int) -> float | None:
        bounds = self._durations.bounds(self._duration_key(a.job))
        if bounds is None:
            return None
        rounds = math.ceil(position / self.config.provider_concurrency)
        return rounds * (bounds[0] + bounds[1]) / 2

    async def _send_progress(self, job_id: str, update: ProgressUpdate) -> None:
        a = self._active.get(job_id)
        if a is None or self._closing:
            return  # while stopping, only results and failure notices still go out
        port = self._ports.get(a.job.requester.platform)
        if port is None:
            return
        job = a.job
        if a.progress != job.progress:
            job = job.model_copy(update={"progress": a.progress})
        await port.progress(job, update)

    # --- submit ---------------------------------------------------------------------

    async def _submit(self, a: _Active) -> None:
        job_id = a.job.id
        if self._closing:
            self._release_slot(a)  # not sent: it stays QUEUED for the next start
            return
        try:
            delivery = dict(a.job.delivery)
            callback_url = None
            if self._callbacks:
                token = delivery.get(CALLBACK_TOKEN)
                if not isinstance(token, str):
                    token = delivery[CALLBACK_TOKEN] = secrets.token_urlsafe(18)
                callback_url = self.callback_url(job_id, token)
            job = await self.store.transition(job_id, [_Q], _S, delivery=delivery)
            if job is None:
                self._release_slot(a)  # cancelled or timed out while it waited
                return
            a.job = job
            self._publish(a)
            try:
                self.stats.submits += 1
                handle = await self.provider.submit(job.request, callback_url=callback_url)
            except SubmitUncertain:
                self._provider_failed(FailureCategory.TRANSIENT)  # counts towards an outage
                log.warning("job %s: submit uncertain; failing without a resubmit", job_id)
                await self._fail(job_id, failures.submit_uncertain(job_id), [_S])
                return
            except ProviderError as exc:
                await self._on_submit_error(a, exc)
                return
            except WanbotError as exc:  # e.g. the adapter's own last check of the request
                await self._fail(job_id, exc.to_user_error(job_id), [_S])
                return
            self._provider_ok()
            running = await self.store.transition(
                job_id, [_S], _R, task_id=handle.task_id, submitted_at=self.clock.now()
            )
            if running is None:
                # Cancelled or timed out while the submit was in flight.
                self._cancel_at_provider(handle.task_id)
                return
            a.job = running
            self._by_task[handle.task_id] = job_id
            now = self.clock.monotonic()
            history = self._durations.history(self._duration_key(running))
            a.plan = PollPlan.start(now, self.config.poll, history, handle.estimated_seconds)
            self._publish(a)
            first = (
                now
                if a.callback_seen
                else a.plan.next_poll(now, self.config.poll, callbacks=self._callbacks)
            )
            self._schedule_poll(a, first)
            log.info("job %s: running as %s task %s", job_id, self.provider.name, handle.task_id)
        except Exception:
            log.exception("job %s: submit failed unexpectedly", job_id)
            await self._fail(job_id, failures.internal(job_id), [_Q, _S])

    async def _on_submit_error(self, a: _Active, exc: ProviderError) -> None:
        self.metrics.provider_failure(self.provider.name, exc.category.value)
        self._provider_failed(exc.category)
        job_id = a.job.id
        now = self.clock.monotonic()
        if exc.category is FailureCategory.TRANSIENT:
            # Refused before it was taken (HTTP error, no connection): safe to send again.
            a.submit_attempts += 1
            delay = max(exc.retry_after or 0.0, self.config.backoff(a.submit_attempts))
            if a.submit_attempts < self.config.submit_attempts and self._time_left(a) > delay:
                back = await self.store.transition(job_id, [_S], _Q)
                if back is None:
                    self._release_slot(a)
                    return
                a.job = back
                log.warning(
                    "job %s: submit refused (%s); retry %d in %.0f s",
                    job_id,
                    exc.code,
                    a.submit_attempts,
                    delay,
                )
                # The job keeps its slot: it was first in line.
                self._timers.call_at(
                    ("submit", job_id), now + delay, lambda: self._resubmit(job_id)
                )
                return
        if exc.category is FailureCategory.CONFIG:
            self._alert_config(exc.code, exc.message)
        log.warning("job %s: submit failed: %s (%s)", job_id, exc.code, exc.category.value)
        error = failures.for_category(exc.category, exc.code, exc.message, job_id=job_id)
        await self._fail(job_id, error, [_S])

    def _resubmit(self, job_id: str) -> None:
        a = self._active.get(job_id)
        if a is not None and a.job.state is _Q and a.slot:
            self._finishing_task(self._submit(a), f"submit-{job_id}")

    # --- polling --------------------------------------------------------------------

    def _schedule_poll(self, a: _Active, when: float) -> None:
        job_id = a.job.id
        self._timers.call_at(("poll", job_id), when, lambda: self._poll_due(job_id))

    def _poll_now(self, a: _Active) -> None:
        if a.polling:
            a.recheck = True
            return
        a.token_reserved = False
        self._schedule_poll(a, self.clock.monotonic())

    def _poll_due(self, job_id: str) -> None:
        a = self._active.get(job_id)
        if a is None or a.job.state is not _R:
            return
        if a.polling:
            a.recheck = True
            return
        now = self.clock.monotonic()
        if not a.token_reserved or self._limiter.paused_until > now:
            at = self._limiter.reserve(now)
            if at > now:
                a.token_reserved = True
                self._schedule_poll(a, at)
                return
        a.token_reserved = False
        a.polling = True
        self._tasks.create_task(self._poll(a), name=f"poll-{job_id}")

    async def _poll(self, a: _Active) -> None:
        job_id = a.job.id
        task_id = a.job.task_id
        try:
            if task_id is None:
                raise RuntimeError("a running job without a task id")
            self.stats.status_calls += 1
            try:
                status = await self.provider.status(task_id)
            except ProviderError as exc:
                self.stats.status_errors += 1
                await self._on_status_error(a, exc)
                return
            self._provider_ok()
            a.status_errors = 0
            if self._active.get(job_id) is not a or a.job.state is not _R:
                return  # settled meanwhile (cancel, deadline)
            if status.state is TaskState.SUCCEEDED:
                await self._on_succeeded(a, status)
            elif status.state is TaskState.FAILED:
                await self._on_task_failed(a, status)
            else:
                self._on_running(a, status)
        except Exception:
            log.exception("job %s: status handling failed unexpectedly", job_id)
            await self._fail(job_id, failures.internal(job_id), [_R])
        finally:
            a.polling = False
            if a.recheck and self._active.get(job_id) is a and a.job.state is _R:
                a.recheck = False
                self._poll_now(a)

    def _on_running(self, a: _Active, status: TaskStatus) -> None:
        assert a.plan is not None
        now = self.clock.monotonic()
        a.plan.observe(now, status, self.config.poll)
        if status.progress is not None:
            a.progress = status.progress
        self._publish(a)
        self._schedule_poll(a, a.plan.next_poll(now, self.config.poll, callbacks=self._callbacks))

    async def _on_status_error(self, a: _Active, exc: ProviderError) -> None:
        self.metrics.provider_failure(self.provider.name, exc.category.value)
        self._provider_failed(exc.category)
        job_id = a.job.id
        now = self.clock.monotonic()
        if exc.status == 429 or exc.retry_after is not None:
            self._limiter.pause(now + (exc.retry_after or self.config.backoff(1)))
        if exc.category is FailureCategory.TRANSIENT:
            a.status_errors += 1
            if a.status_errors < self.config.status_error_limit:
                delay = max(exc.retry_after or 0.0, self.config.backoff(a.status_errors))
                log.warning(
                    "job %s: status query failed (%s); again in %.0f s", job_id, exc.code, delay
                )
                a.token_reserved = False
                self._schedule_poll(a, now + delay)
                return
        if exc.category is FailureCategory.CONFIG:
            self._alert_config(exc.code, exc.message)
        log.warning("job %s: giving up on status queries: %s", job_id, exc.code)
        # The user's request was accepted at submit: whatever a status query says
        # (400, a "bad request" code), it is the provider's or the bot's trouble.
        category = exc.category
        if category is not FailureCategory.CONFIG:
            category = FailureCategory.TRANSIENT
        error = failures.for_category(category, exc.code, exc.message, job_id=job_id)
        await self._fail(job_id, error, [_R])

    async def _on_task_failed(self, a: _Active, status: TaskStatus) -> None:
        job_id = a.job.id
        failure = status.failure
        category = failure.category if failure else FailureCategory.TRANSIENT
        code = failure.code if failure else "task_failed"
        message = failure.message if failure else ""
        self.metrics.provider_failure(self.provider.name, category.value)
        # A vanished task (GONE) is never replaced: it may still be generating, and
        # billing. A failed one is, once, only where the provider documents that failed
        # tasks cost nothing (Capabilities.failed_tasks_free; docs/providers.md).
        if (
            category is FailureCategory.TRANSIENT
            and self.provider.capabilities.failed_tasks_free
            # Stored with the job: "once" holds across restarts.
            and a.job.task_attempts + 1 < min(self.config.task_attempts, 2)
            and self._time_left(a) > self.config.poll.default_duration
        ):
            a.note = failures.retry_note(code)
            old_task = a.job.task_id
            back = await self.store.transition(
                job_id,
                [_R],
                _Q,
                task_id=None,
                progress=None,
                task_attempts=a.job.task_attempts + 1,
            )
            if back is None:
                return
            if old_task:
                self._by_task.pop(old_task, None)
            a.job, a.plan, a.progress = back, None, None
            self._timers.cancel(("poll", job_id))
            log.warning("job %s: task failed (%s); trying a new task", job_id, code)
            self._finishing_task(self._submit(a), f"submit-{job_id}")
            return
        if category is FailureCategory.CONFIG:
            self._alert_config(code, message)
        log.info("job %s: task failed: %s (%s)", job_id, code, category.value)
        error = failures.for_category(category, code, message, job_id=job_id)
        await self._fail(job_id, error, [_R])

    async def _on_succeeded(self, a: _Active, status: TaskStatus) -> None:
        job_id = a.job.id
        assert a.plan is not None
        if not a.resumed:
            self._durations.record(
                self._duration_key(a.job), a.plan.duration(self.clock.monotonic())
            )
        self._release_slot(a)
        urls = status.result_urls[: a.job.request.count]
        if not urls:
            failure = status.failure
            error = (
                failures.for_category(
                    failure.category, failure.code, failure.message, job_id=job_id
                )
                if failure
                else failures.no_results(job_id, "returned no images")
            )
            await self._fail(job_id, error, [_R])
            return
        job = await self.store.transition(job_id, [_R], _D, result_urls=urls, progress=100)
        if job is None:
            return  # lost to a cancel or the deadline, which settled it
        a.job, a.progress = job, 100
        self._timers.cancel(("poll", job_id))
        self._publish(a, force=True)
        current = asyncio.current_task()
        if current is not None:  # from here this task is a delivery: let close() wait for it
            self._finishing.add(current)
            current.add_done_callback(self._finishing.discard)
        await self._deliver(a)

    def _time_left(self, a: _Active) -> float:
        if a.job.deadline_at is None:
            return math.inf
        return a.job.deadline_at - self.clock.now()

    # --- delivery -------------------------------------------------------------------

    async def _deliver(self, a: _Active) -> None:
        budget = self.result_bytes
        hold = await budget.acquire(budget.estimate(len(a.job.result_urls)))
        try:
            await self._deliver_held(a, hold)
        finally:
            hold.release()

    async def _deliver_held(self, a: _Active, hold: Hold) -> None:
        job = a.job
        job_id = job.id
        posted = False
        try:
            images = await self._download_all(job.result_urls)
            size = sum(len(image.data) for image in images)
            self.result_bytes.observe(len(images), size)
            hold.resize(size)
            if not images:
                reason = "its images could not be downloaded"
                await self._fail(job_id, failures.no_results(job_id, reason), [_D])
                return
            count = job.request.count
            failed = count - len(images)
            notes = [failures.partial_note(failed, count)] if failed > 0 else []
            port = self._ports[job.requester.platform]
            await self._progress.drain(job_id)
            data = await self._post(port, job, images, notes)
            delivered_count = len(images)
            del images  # posted: the bytes can go now, before SQLite is written
            hold.release()
            if data is None:
                log.error("job %s: the results could not be posted", job_id)
                await self._fail(job_id, failures.internal(job_id), [_D])
                return
            posted = True
            delivered_count = _posted_count(data, delivered_count)
            delivery = {**job.delivery, **data}
            done = await self._record_delivery(job_id, delivered_count, delivery)
            self._untrack(a)
            if done is not None:
                self.stats.delivered += 1
                self.metrics.job_delivered(done, self.clock.now() - job.updated_at)
                log.info("job %s: delivered %d of %d image(s)", job_id, delivered_count, count)
        except Exception:
            if posted:
                # The user has the images; only recording it failed, again and again.
                # Left DELIVERING, the next start settles it (the port will not post twice).
                log.exception("job %s: posted but could not be recorded", job_id)
                self._untrack(a)
                return
            log.exception("job %s: delivery failed unexpectedly", job_id)
            await self._fail(job_id, failures.internal(job_id), [_D])

    async def _record_delivery(
        self, job_id: str, delivered: int, delivery: dict[str, Any]
    ) -> Job | None:
        """DONE and settled, retried: the compare-and-set is idempotent, and a job left
        DELIVERING would hold its user's reservation and running slot until a restart."""
        for attempt in range(1, self.config.deliver_attempts + 1):
            try:
                return await self.store.transition(
                    job_id,
                    [_D],
                    JobState.DONE,
                    delivered=delivered,
                    delivery=delivery,
                    result_urls=[],  # posted: the provider's links are not kept
                    progress=100,
                    finished_at=self.clock.now(),
                )
            except Exception:
                if attempt == self.config.deliver_attempts:
                    raise
                log.warning("job %s: recording the delivery failed (try %d)", job_id, attempt)
                await self.clock.sleep(self.config.backoff(attempt))
        return None

    async def _post(
        self, port: DeliveryPort, job: Job, images: list[ResultImage], notes: list[str]
    ) -> dict[str, Any] | None:
        """Post, retried; each try gets `deliver_attempt_timeout` and all of them together
        `deliver_deadline`, so a hung upload cannot hold the job (and its user's running
        slot) forever. A retry finds a post that was stored without an answer
        (DeliveryPort.deliver contract). None: give up (the job fails, refunded)."""
        config = self.config
        end = self.clock.monotonic() + config.deliver_deadline
        for attempt in range(1, config.deliver_attempts + 1):
            left = end - self.clock.monotonic()
            try:
                return dict(
                    await within(
                        self.clock,
                        min(config.deliver_attempt_timeout, left),
                        port.deliver(job, images, notes),
                    )
                )
            except DeadlinePassed:
                log.warning(
                    "job %s: posting results got no answer in time (try %d)", job.id, attempt
                )
            except Exception:
                log.warning(
                    "job %s: posting results failed (try %d)", job.id, attempt, exc_info=True
                )
            delay = config.backoff(attempt)
            if attempt == config.deliver_attempts or self.clock.monotonic() + delay >= end:
                break
            await self.clock.sleep(delay)
        return None

    async def _resume_delivery(self, a: _Active) -> None:
        """A job found DELIVERING after a restart may have been posted before the crash:
        ask its front end first, before downloading anything, and charge exactly the
        images posted. Otherwise deliver as usual."""
        job = a.job
        found = await self._find_posted(job)
        if found is None:
            await self._deliver(a)
            return
        await self._progress.drain(job.id)
        try:
            done = await self._record_delivery(
                job.id, found.images, {**job.delivery, **found.delivery}
            )
        except Exception:
            log.exception("job %s: found posted but could not be recorded", job.id)
            done = None
        self._untrack(a)
        if done is not None:
            self.stats.delivered += 1
            log.info("job %s: %d image(s) were posted before the restart", job.id, found.images)

    async def _find_posted(self, job: Job) -> PostedResults | None:
        port = self._ports.get(job.requester.platform)
        if port is None or not hasattr(port, "find_posted"):
            return None  # a front end without it finds its earlier post in deliver()
        lookup = cast(PostLookup, port)
        try:
            found = await within(
                self.clock, self.config.deliver_attempt_timeout, lookup.find_posted(job)
            )
        except Exception:
            log.warning("job %s: could not look for an earlier post", job.id, exc_info=True)
            return None
        return found if found is not None and found.images > 0 else None

    async def _download_all(self, urls: Sequence[str]) -> list[ResultImage]:
        results = await asyncio.gather(
            *(self._download(url, index) for index, url in enumerate(urls))
        )
        return [image for image in results if image is not None]

    async def _download(self, url: str, index: int) -> ResultImage | None:
        for attempt in range(1, self.config.download_attempts + 1):
            try:
                return await self.provider.download_result(url, index)
            except Exception as exc:
                transient = bool(getattr(exc, "transient", False)) or (
                    isinstance(exc, ProviderError) and exc.category is FailureCategory.TRANSIENT
                )
                log.warning("result %d download failed (try %d): %s", index, attempt, exc)
                if not transient or attempt == self.config.download_attempts:
                    return None
                await self.clock.sleep(self.config.backoff(attempt))
        return None

    # --- failure, deadline, cancel ---------------------------------------------------

    async def _fail(
        self,
        job_id: str,
        error: UserError,
        expected: Iterable[JobState],
        *,
        state: JobState = JobState.FAILED,
    ) -> Job | None:
        """Settle the job as failed (refunding everything) if it is still in one of
        `expected`; None when another path got there first."""
        job = await self.store.transition(
            job_id,
            list(expected),
            state,
            delivered=0,
            error_kind=error.kind,
            error_code=error.code,
            error_message=error.message,
            finished_at=self.clock.now(),
        )
        if job is None:
            return None
        a = self._active.get(job_id)
        if a is not None:
            a.job = job
            self._untrack(a)
        self.stats.failed += 1
        self.metrics.job_failed(job, error)
        if error.kind is ErrorKind.INTERNAL:
            log.error("job %s: failed: %s", job_id, error.code)
        self._finishing_task(self._notify_failure(job, error), f"fail-{job_id}")
        return job

    async def _notify_failure(self, job: Job, error: UserError) -> None:
        await self._progress.drain(job.id)
        port = self._ports.get(job.requester.platform)
        if port is None:
            return
        if error.kind is ErrorKind.PROVIDER_CONFIG and error.code != "provider_changed":
            # Billing, key or setup trouble: the card says the admins have been told
            # only when they have (now, or of the same cause within the hour).
            # The bot's own request is another cause than the account: told apart, so
            # one does not silence the other for the hour.
            request = error.category is FailureCategory.REQUEST
            told = await self._tell_admins(
                AlertFact(
                    cause=AlertCause.BOT_REQUEST if request else AlertCause.PROVIDER_SETUP,
                    guild_id=job.requester.guild_id,
                    detail=self._admin_detail(error),
                )
            )
            message = claim_admins_told(error.message, told, before=failures.NOT_CHARGED)
            error = error.model_copy(update={"message": message})
        try:
            await port.fail(job, error.model_copy(update={"job_id": job.id}))
        except Exception:
            log.warning("job %s: could not tell the user it failed", job.id, exc_info=True)

    def _deadline_due(self, job_id: str) -> None:
        a = self._active.get(job_id)
        if a is None or a.job.state is _D:
            return  # results are in hand: delivery finishes on its own
        self._tasks.create_task(self._timeout(job_id), name=f"deadline-{job_id}")

    async def _timeout(self, job_id: str) -> None:
        error = failures.timeout(self.config.deadline_seconds, job_id)
        job = await self._fail(job_id, error, _CANCELLABLE)
        if job is not None:
            log.warning("job %s: deadline passed", job_id)
            if job.task_id:
                self._cancel_at_provider(job.task_id)

    def _cancel_at_provider(self, task_id: str) -> None:
        """Ask the provider to stop a task nobody waits for (best effort)."""
        if not self.provider.capabilities.supports_cancel:
            return

        async def cancel() -> None:
            try:
                await self.provider.cancel(task_id)
            except Exception as exc:  # best effort: the job is already settled
                log.warning("task %s: cancel at the provider failed: %s", task_id, exc)

        self._tasks.create_task(cancel(), name=f"cancel-{task_id}")

    # --- provider health -------------------------------------------------------------

    def _alert_config(self, code: str, message: str) -> None:
        """Billing/key/setup trouble: tell the admins once per outage, not once per job.
        It has no server of its own: every server with a job in flight is affected (the
        failing job's own server too; later ones hear of it when their jobs fail)."""
        if self._config_outage:
            return
        self._config_outage = True
        text = self._setup_detail = self._setup_text(code, message)
        # The alert port logs the text itself (LogAlerts), once per server and hour.
        self._alert_affected(AlertCause.PROVIDER_SETUP, text)

    def _admin_detail(self, error: UserError) -> str:
        if error.category is FailureCategory.REQUEST:
            return (
                f"The image provider {self.provider.name} could not accept a request the bot "
                f"built ({error.code}). This is the bot's side, not the user's prompt or the "
                "provider account: check the bot's settings (provider, model, sizes) and the "
                "log, and report it if it goes on. The user was not charged."
            )
        return self._setup_detail or self._setup_text(error.code or "", "")

    def _setup_text(self, code: str, message: str) -> str:
        return (
            f"The image provider {self.provider.name} refuses the bot's requests "
            f"({code}{': ' + message if message else ''}). Check the API key, balance "
            "and access; users are told the service is unavailable and are not charged."
        )

    def _provider_failed(self, category: FailureCategory) -> None:
        """A failed provider call: an outage that lasts over OUTAGE_ALERT_AFTER is told
        to the servers with jobs in flight (the alert port throttles per server)."""
        if category is not FailureCategory.TRANSIENT:
            return
        now = self.clock.monotonic()
        if self._outage_since is None:
            self._outage_since = now
            return
        lasted = now - self._outage_since
        if lasted < OUTAGE_ALERT_AFTER or now - self._outage_alerted_at < 60.0:
            return
        self._outage_alerted_at = now
        minutes = round(lasted / 60)
        self._alert_affected(
            AlertCause.PROVIDER_OUTAGE,
            f"The image provider {self.provider.name} has been failing or overloaded for "
            f"{minutes} minutes. Jobs are retried, then failed and refunded; nothing is "
            "needed from you unless it lasts (check the provider's status page).",
        )

    def _alert_budget(self, guild_id: str | None, left: int | None) -> None:
        if guild_id is None:
            return
        what = "is used up" if not left else f"has only {left} image(s) left"
        self._send_alert(
            AlertFact(
                cause=AlertCause.BUDGET_EXHAUSTED,
                guild_id=guild_id,
                detail=(
                    f"The server's monthly image budget {what}: requests are refused until "
                    "the 1st of next month (UTC). Raise it with /quota budget."
                ),
            )
        )

    def _alert_affected(self, cause: AlertCause, detail: str) -> None:
        guilds = {a.job.requester.guild_id for a in self._active.values()}
        for guild_id in sorted(guilds, key=lambda g: g or ""):
            self._send_alert(AlertFact(cause=cause, guild_id=guild_id, detail=detail))

    def _send_alert(self, fact: AlertFact) -> None:
        if self.alerts is not None and not self._closing:
            self._tasks.create_task(self._tell_admins(fact), name=f"alert-{fact.cause.value}")

    async def _tell_admins(self, fact: AlertFact) -> bool:
        """True when a person has been told. Bounded: a user's failure card waits for
        this, and must not wait on a hung chat service."""
        if self.alerts is None:
            return False
        try:
            return await within(
                self.clock, self.config.deliver_attempt_timeout, self.alerts.alert(fact)
            )
        except Exception:
            log.warning("admin alert %s failed", fact.cause.value, exc_info=True)
            return False

    def _provider_ok(self) -> None:
        self.metrics.provider_ok(self.provider.name)
        self._outage_since = None
        if self._config_outage:
            self._config_outage = False
            log.warning("the image provider %s accepts requests again", self.provider.name)

    # --- restart --------------------------------------------------------------------

    async def _recover(self, job: Job) -> None:
        if job.requester.platform not in self._ports:
            log.info("job %s: no %s front end here; left as it is", job.id, job.requester.platform)
            return
        if job.provider != self.provider.name and job.state is not _D:
            await self._fail(job.id, failures.provider_changed(job.id), [job.state])
            return
        log.info("job %s: resuming from %s", job.id, job.state.value)
        job = await self._resume_deadline(job)
        if job.state is _Q:
            a = self._track(job)
            self._queue.push(a.user, job.id)
            self._positions_changed()
        elif job.state is _S:
            await self._fail(job.id, failures.interrupted_submit(job.id), [_S])
        elif job.state is _R:
            a = self._track(job)
            a.resumed = True
            a.slot = True
            self._running += 1
            self._take_user_slot(a)
            now = self.clock.monotonic()
            submitted = job.submitted_at if job.submitted_at is not None else job.created_at
            started = now - max(0.0, self.clock.now() - submitted)
            history = self._durations.history(self._duration_key(job))
            a.plan = PollPlan.start(started, self.config.poll, history, None)
            self._publish(a)
            self._poll_now(a)  # it may well have finished while we were away
        elif job.state is _D:
            # Posting and recording it are not one step: deliver again. The front end
            # finds a post that made it before the crash (DeliveryPort.deliver contract).
            a = self._track(job)
            self._take_user_slot(a)
            self._publish(a, force=True)
            self._finishing_task(self._resume_delivery(a), f"deliver-{job.id}")

    async def _resume_deadline(self, job: Job) -> Job:
        """The bot's own downtime must not use up a job's deadline before anyone looks:
        a queued job gets a full deadline again, a running or delivering one at least
        RESUME_GRACE seconds (its task may well have finished while the bot was away)."""
        now = self.clock.now()
        grace = self.config.deadline_seconds if job.state is _Q else RESUME_GRACE
        if job.deadline_at is not None and job.deadline_at >= now + grace:
            return job
        return await self.store.update(job.id, deadline_at=now + grace)

    def _finishing_task(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = self._tasks.create_task(coro, name=name)
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    @staticmethod
    def _duration_key(job: Job) -> DurationKey:
        return (job.provider, job.request.mode.value, job.request.count)


def _posted_count(data: dict[str, Any], given: int) -> int:
    """Images the front end says it posted (an earlier post it found may hold a different
    number than it was given now); the job is charged exactly that."""
    posted = data.pop(POSTED_IMAGES, None)
    return given if posted is None else max(0, int(posted))

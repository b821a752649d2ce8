"""Task watching: status polls on the job's plan (polling.py says when and why),
provider callbacks that bring a poll forward, and the job's deadline."""

from __future__ import annotations

import asyncio
import hmac
import logging

from bot.core.engine import failures
from bot.core.engine.context import CANCELLABLE, Active, Context
from bot.core.engine.polling import PollPlan
from bot.core.errors import ProviderError
from bot.core.models import FailureCategory, JobState, TaskState, TaskStatus

log = logging.getLogger(__name__)

_Q, _S, _R, _D = JobState.QUEUED, JobState.SUBMITTING, JobState.RUNNING, JobState.DELIVERING


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.category is FailureCategory.TRANSIENT


class Watch:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        config = ctx.config
        # Failed status queries in a row (each already retried by the provider adapter).
        self._retry = config.retry(
            config.status_error_limit, retryable=_transient, retry_after=True
        )

    # --- start ----------------------------------------------------------------------

    def started(self, a: Active, estimate: float | None) -> None:
        """The provider took the job's task: poll it on a fresh plan."""
        ctx = self._ctx
        now = ctx.clock.monotonic()
        history = ctx.durations.history(ctx.duration_key(a.job))
        a.plan = PollPlan.start(now, ctx.config.poll, history, estimate)
        ctx.publish(a)
        first = (
            now
            if a.callback_seen
            else a.plan.next_poll(now, ctx.config.poll, callbacks=ctx.callbacks)
        )
        self._schedule_poll(a, first)

    def resumed(self, a: Active) -> None:
        """A job found RUNNING after a restart: its task started `submitted_at`."""
        ctx = self._ctx
        job = a.job
        now = ctx.clock.monotonic()
        submitted = job.submitted_at if job.submitted_at is not None else job.created_at
        started = now - max(0.0, ctx.clock.now() - submitted)
        history = ctx.durations.history(ctx.duration_key(job))
        a.plan = PollPlan.start(started, ctx.config.poll, history, None)
        ctx.publish(a)
        self.poll_now(a)  # it may well have finished while we were away

    # --- callbacks ------------------------------------------------------------------

    async def on_provider_callback(self, provider: str, task_id: str) -> bool:
        ctx = self._ctx
        ctx.stats.callbacks += 1
        if provider != ctx.provider.name:
            return False
        a = ctx.active.get(ctx.by_task.get(task_id, ""))
        if a is None:
            if ctx.sharing is not None:
                # Maybe another process works it: its holder polls (wake-up).
                job = await ctx.store.find_by_task(provider, task_id)
                if job is not None and job.state in (_S, _R):
                    await ctx.sharing.forward_callback(job.id)
                    return True
            return False  # unknown or finished task: a forged or late callback changes nothing
        if a.job.state is _R:
            self.poll_now(a)
        return True

    async def on_callback_request(self, provider: str, job_id: str, token: str) -> bool:
        ctx = self._ctx
        a = ctx.active.get(job_id)
        if a is None and ctx.sharing is not None and provider == ctx.provider.name:
            return await self._callback_elsewhere(provider, job_id, token)
        if a is None or provider != ctx.provider.name or a.job.provider != provider:
            return False
        expected = a.job.callback_token
        if expected is None or not hmac.compare_digest(expected.encode(), token.encode()):
            return False
        if a.job.state is _R and a.job.task_id:
            return await self.on_provider_callback(provider, a.job.task_id)
        a.callback_seen = True  # came before the submit answer: poll as soon as running
        return True

    async def _callback_elsewhere(self, provider: str, job_id: str, token: str) -> bool:
        """A callback for a job this process does not hold: checked against the stored
        job, then its holder is woken to poll (any process may receive callbacks)."""
        ctx = self._ctx
        assert ctx.sharing is not None
        job = await ctx.store.get(job_id)
        if job is None or job.provider != provider or job.state not in (_S, _R):
            return False
        expected = job.callback_token
        if expected is None or not hmac.compare_digest(expected.encode(), token.encode()):
            return False
        await ctx.sharing.forward_callback(job_id)
        return True

    # --- polls ----------------------------------------------------------------------

    def _schedule_poll(self, a: Active, when: float) -> None:
        job_id = a.job.id
        self._ctx.timers.call_at(("poll", job_id), when, lambda: self._poll_due(job_id))

    def poll_now(self, a: Active) -> None:
        if a.polling:
            a.recheck = True
            return
        a.token_reserved = False
        self._schedule_poll(a, self._ctx.clock.monotonic())

    def _poll_due(self, job_id: str) -> None:
        ctx = self._ctx
        a = ctx.active.get(job_id)
        if a is None or a.job.state is not _R:
            return
        if a.polling:
            a.recheck = True
            return
        now = ctx.clock.monotonic()
        if not a.token_reserved or ctx.limiter.paused_until > now:
            at = ctx.limiter.reserve(now)
            if at > now:
                a.token_reserved = True
                self._schedule_poll(a, at)
                return
        a.token_reserved = False
        a.polling = True
        ctx.tasks.create_task(self._poll(a), name=f"poll-{job_id}")

    async def _poll(self, a: Active) -> None:
        ctx = self._ctx
        job_id = a.job.id
        task_id = a.job.task_id
        try:
            if task_id is None:
                raise RuntimeError("a running job without a task id")
            ctx.stats.status_calls += 1
            try:
                status = await ctx.provider.status(task_id)
            except ProviderError as exc:
                ctx.stats.status_errors += 1
                await self._on_status_error(a, exc)
                return
            ctx.health.provider_ok()
            a.status_errors = 0
            if ctx.active.get(job_id) is not a or a.job.state is not _R:
                return  # settled meanwhile (cancel, deadline)
            if status.state is TaskState.SUCCEEDED:
                await self._on_succeeded(a, status)
            elif status.state is TaskState.FAILED:
                await self._on_task_failed(a, status)
            else:
                self._on_running(a, status)
        except Exception:
            log.exception("job %s: status handling failed unexpectedly", job_id)
            await ctx.settle.fail_unexpected(a, [_R])
        finally:
            a.polling = False
            if a.recheck and ctx.active.get(job_id) is a and a.job.state is _R:
                a.recheck = False
                self.poll_now(a)

    def _on_running(self, a: Active, status: TaskStatus) -> None:
        ctx = self._ctx
        assert a.plan is not None
        now = ctx.clock.monotonic()
        a.plan.observe(now, status, ctx.config.poll)
        if status.progress is not None:
            a.progress = status.progress
        ctx.publish(a)
        self._schedule_poll(a, a.plan.next_poll(now, ctx.config.poll, callbacks=ctx.callbacks))

    async def _on_status_error(self, a: Active, exc: ProviderError) -> None:
        ctx = self._ctx
        ctx.metrics.provider_failure(ctx.provider.name, exc.category.value)
        ctx.health.provider_failed(exc.category)
        job_id = a.job.id
        now = ctx.clock.monotonic()
        if exc.status == 429 or exc.retry_after is not None:
            ctx.limiter.pause(now + (exc.retry_after or ctx.config.backoff(1)))
        if exc.category is FailureCategory.TRANSIENT:
            a.status_errors += 1
            delay = self._retry.delay_after(a.status_errors, exc, rng=ctx.rng)
            if delay is not None:
                log.warning(
                    "job %s: status query failed (%s); again in %.0f s", job_id, exc.code, delay
                )
                a.token_reserved = False
                self._schedule_poll(a, now + delay)
                return
        if exc.category is FailureCategory.CONFIG:
            ctx.health.alert_config(exc.code, exc.message)
        log.warning("job %s: giving up on status queries: %s", job_id, exc.code)
        # The user's request was accepted at submit: whatever a status query says
        # (400, a "bad request" code), it is the provider's or the bot's trouble.
        category = exc.category
        if category is not FailureCategory.CONFIG:
            category = FailureCategory.TRANSIENT
        error = failures.for_category(category, exc.code, exc.message, job_id=job_id)
        await ctx.settle.fail(job_id, error, [_R])

    async def _on_task_failed(self, a: Active, status: TaskStatus) -> None:
        ctx = self._ctx
        job_id = a.job.id
        failure = status.failure
        category = failure.category if failure else FailureCategory.TRANSIENT
        code = failure.code if failure else "task_failed"
        message = failure.message if failure else ""
        ctx.metrics.provider_failure(ctx.provider.name, category.value)
        # A vanished task (GONE) is never replaced: it may still be generating, and
        # billing. A failed one is, once, only where the provider documents that failed
        # tasks cost nothing (Capabilities.failed_tasks_free; docs/providers.md).
        if (
            category is FailureCategory.TRANSIENT
            and ctx.provider.capabilities.failed_tasks_free
            # Stored with the job: "once" holds across restarts.
            and a.job.task_attempts + 1 < min(ctx.config.task_attempts, 2)
            and ctx.time_left(a) > ctx.config.poll.default_duration
        ):
            a.retrying_after = code
            old_task = a.job.task_id
            back = await ctx.store.transition(
                job_id,
                [_R],
                _Q,
                task_id=None,
                progress=None,
                task_attempts=a.job.task_attempts + 1,
            )
            if back is None:
                ctx.untrack(a)  # settled meanwhile, here or by another process
                return
            if old_task:
                ctx.by_task.pop(old_task, None)
            a.job, a.plan, a.progress = back, None, None
            ctx.timers.cancel(("poll", job_id))
            log.warning("job %s: task failed (%s); trying a new task", job_id, code)
            ctx.finishing_task(ctx.dispatch.submit(a), f"submit-{job_id}")
            return
        if category is FailureCategory.CONFIG:
            ctx.health.alert_config(code, message)
        log.info("job %s: task failed: %s (%s)", job_id, code, category.value)
        error = failures.for_category(category, code, message, job_id=job_id)
        await ctx.settle.fail(job_id, error, [_R])

    async def _on_succeeded(self, a: Active, status: TaskStatus) -> None:
        ctx = self._ctx
        job_id = a.job.id
        assert a.plan is not None
        if not a.resumed:
            ctx.durations.record(ctx.duration_key(a.job), a.plan.duration(ctx.clock.monotonic()))
        ctx.release_slot(a)
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
            await ctx.settle.fail(job_id, error, [_R])
            return
        job = await ctx.store.transition(job_id, [_R], _D, result_urls=urls, progress=100)
        if job is None:
            # Lost to a cancel or the deadline (settled), or to another process.
            ctx.untrack(a)
            return
        a.job, a.progress = job, 100
        ctx.timers.cancel(("poll", job_id))
        ctx.publish(a, force=True)
        current = asyncio.current_task()
        if current is not None:  # from here this task is a delivery: let close() wait for it
            ctx.finishing.add(current)
            current.add_done_callback(ctx.finishing.discard)
        await ctx.deliver.deliver(a)

    # --- deadline -------------------------------------------------------------------

    def deadline_due(self, job_id: str) -> None:
        ctx = self._ctx
        a = ctx.active.get(job_id)
        if a is None or a.job.state is _D:
            return  # results are in hand: delivery finishes on its own
        ctx.tasks.create_task(self._timeout(job_id), name=f"deadline-{job_id}")

    async def _timeout(self, job_id: str) -> None:
        ctx = self._ctx
        error = failures.timeout(ctx.config.deadline_seconds, job_id)
        job = await ctx.settle.fail(job_id, error, CANCELLABLE)
        if job is not None:
            log.warning("job %s: deadline passed", job_id)
            if job.task_id:
                ctx.settle.cancel_at_provider(job.task_id)

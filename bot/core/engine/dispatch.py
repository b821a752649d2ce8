"""Dispatch: queued jobs take the provider's concurrency slots in fair order (and
within each user's running limit), and their submit is sent, exactly once unless
the provider refused it before taking it."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from bot.core.engine import failures
from bot.core.engine.context import Active, Context
from bot.core.errors import ProviderError, SubmitUncertain, WanbotError
from bot.core.models import FailureCategory, JobState

log = logging.getLogger(__name__)

_Q, _S, _R = JobState.QUEUED, JobState.SUBMITTING, JobState.RUNNING


def _refused(exc: BaseException) -> bool:
    """Refused before it was taken (HTTP error, no connection): safe to send again. An
    uncertain submit may be generating, and charging, already: never sent again."""
    return (
        isinstance(exc, ProviderError)
        and not isinstance(exc, SubmitUncertain)
        and exc.category is FailureCategory.TRANSIENT
    )


class Dispatch:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        config = ctx.config
        self._retry = config.retry(config.submit_attempts, retryable=_refused, retry_after=True)

    def pump(self) -> None:
        """Start queued jobs while the provider has free slots (and their users may)."""
        ctx = self._ctx
        if ctx.closing:
            return  # queued jobs stay stored; the next start submits them
        if ctx.sharing is not None:
            ctx.sharing.pump()  # the database is the queue, shared with other processes
            return
        started = False
        while ctx.running < ctx.config.provider_concurrency:
            job_id = ctx.queue.pop(ctx.may_start)
            if job_id is None:
                break
            a = ctx.active.get(job_id)
            if a is None:
                continue
            ctx.take_slot(a)
            started = True
            ctx.finishing_task(self.submit(a), f"submit-{job_id}")
        if started:
            ctx.positions_changed()

    def callback_url(self, job_id: str, token: str) -> str:
        ctx = self._ctx
        base = (ctx.config.callback_base_url or "").rstrip("/")
        return f"{base}/callback/{ctx.provider.name}/{job_id}/{token}"

    async def submit(self, a: Active) -> None:
        ctx = self._ctx
        job_id = a.job.id
        if ctx.closing:
            ctx.release_slot(a)  # not sent: it stays QUEUED for the next start
            return
        try:
            fields: dict[str, Any] = {}
            callback_url = None
            if ctx.callbacks:
                token = a.job.callback_token
                if token is None:
                    token = fields["callback_token"] = secrets.token_urlsafe(18)
                callback_url = self.callback_url(job_id, token)
            job = await ctx.store.transition(job_id, [_Q], _S, **fields)
            if job is None:
                ctx.untrack(a)  # cancelled or timed out while it waited (maybe elsewhere)
                return
            a.job = job
            ctx.publish(a)
            try:
                ctx.stats.submits += 1
                handle = await ctx.provider.submit(job.request, callback_url=callback_url)
            except SubmitUncertain:
                ctx.health.provider_failed(FailureCategory.TRANSIENT)  # counts as an outage
                log.warning("job %s: submit uncertain; failing without a resubmit", job_id)
                await ctx.settle.fail(job_id, failures.submit_uncertain(job_id), [_S])
                return
            except ProviderError as exc:
                await self._on_submit_error(a, exc)
                return
            except WanbotError as exc:  # e.g. the adapter's own last check of the request
                await ctx.settle.fail(job_id, exc.to_user_error(job_id), [_S])
                return
            ctx.health.provider_ok()
            running = await ctx.store.transition(
                job_id, [_S], _R, task_id=handle.task_id, submitted_at=ctx.clock.now()
            )
            if running is None:
                # Cancelled or timed out while the submit was in flight.
                ctx.settle.cancel_at_provider(handle.task_id)
                return
            a.job = running
            ctx.by_task[handle.task_id] = job_id
            ctx.watch.started(a, handle.estimated_seconds)
            log.info("job %s: running as %s task %s", job_id, ctx.provider.name, handle.task_id)
        except Exception:
            log.exception("job %s: submit failed unexpectedly", job_id)
            await ctx.settle.fail_unexpected(a, [_Q, _S])

    async def _on_submit_error(self, a: Active, exc: ProviderError) -> None:
        ctx = self._ctx
        ctx.metrics.provider_failure(ctx.provider.name, exc.category.value)
        ctx.health.provider_failed(exc.category)
        job_id = a.job.id
        now = ctx.clock.monotonic()
        if exc.category is FailureCategory.TRANSIENT:
            a.submit_attempts += 1
            delay = self._retry.delay_after(
                a.submit_attempts, exc, left=ctx.time_left(a), rng=ctx.rng
            )
            if delay is not None:
                back = await ctx.store.transition(job_id, [_S], _Q)
                if back is None:
                    ctx.untrack(a)
                    return
                a.job = back
                log.warning(
                    "job %s: submit refused (%s); retry %d in %.0f s",
                    job_id,
                    exc.code,
                    a.submit_attempts,
                    delay,
                )
                # The job keeps its slot: it was first in line. Queued again, not
                # SUBMITTING, so a restart meanwhile sends it rather than failing it.
                ctx.timers.call_at(("submit", job_id), now + delay, lambda: self._resubmit(job_id))
                return
        if exc.category is FailureCategory.CONFIG:
            ctx.health.alert_config(exc.code, exc.message)
        log.warning("job %s: submit failed: %s (%s)", job_id, exc.code, exc.category.value)
        error = failures.for_category(exc.category, exc.code, exc.message, job_id=job_id)
        await ctx.settle.fail(job_id, error, [_S])

    def _resubmit(self, job_id: str) -> None:
        ctx = self._ctx
        a = ctx.active.get(job_id)
        if a is not None and a.job.state is _Q and a.slot:
            ctx.finishing_task(self.submit(a), f"submit-{job_id}")

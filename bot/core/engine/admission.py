"""Admission: a validated request becomes a stored job with its quota reserved, queued
for a provider slot; and a job that has not finished can be cancelled."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bot.core.engine import failures
from bot.core.engine.context import CANCELLABLE, Context
from bot.core.errors import NotAllowed, NotFound, QuotaDenied, QuotaReason
from bot.core.ids import normalize_job_id
from bot.core.models import GenerationRequest, Job, JobState, Requester
from bot.core.retry import Backoff, Retry, retrying

log = logging.getLogger(__name__)


def _collided(exc: BaseException) -> bool:
    # QuotaDenied is not a ValueError: a refusal is never tried again.
    return isinstance(exc, ValueError)


# A new job id that is already taken is drawn again at once (no wait: nothing is busy).
_NEW_ID = Retry(3, Backoff(0.0, 0.0, jitter=0.0), retryable=_collided)


class Admission:
    def __init__(self, ctx: Context, new_id: Callable[[], str]) -> None:
        self._ctx = ctx
        self._new_id = new_id

    async def submit(
        self,
        requester: Requester,
        request: GenerationRequest,
        delivery: dict[str, Any] | None,
        parent_job_id: str | None,
    ) -> Job:
        ctx = self._ctx
        now = ctx.clock.now()
        drawn: list[str] = []

        async def admit() -> Job:
            drawn.append(self._new_id())
            job = Job(
                id=drawn[-1],
                requester=requester,
                provider=ctx.provider.name,
                request=request,
                delivery=dict(delivery or {}),
                parent_job_id=parent_job_id,
                created_at=now,
                updated_at=now,
                deadline_at=now + ctx.config.deadline_seconds,
            )
            return await ctx.store.admit(job)  # QuotaDenied goes up: nothing reserved

        def collided(attempt: int, exc: Exception) -> None:
            if _collided(exc) and attempt < _NEW_ID.attempts:
                log.warning("job id %s collided; drawing another", drawn[-1])

        try:
            job = await retrying(admit, _NEW_ID, clock=ctx.clock, on_failure=collided)
        except QuotaDenied as denied:
            if denied.reason is QuotaReason.SERVER_BUDGET:
                ctx.health.alert_budget(requester.guild_id, denied.remaining, requester.platform)
            raise
        if ctx.closing:
            # Stored and reserved while the engine stopped: the next start runs it.
            log.info("job %s: admitted during shutdown; it runs after the restart", job.id)
            return job
        if ctx.sharing is not None:
            # Queued in the database for whichever process has a slot first; this one
            # may take it before its status card is up (its updates wait for the card).
            ctx.sharing.pump(own=[job.id])
            log.info("job %s: admitted (%d image(s))", job.id, request.count)
            return job
        a = ctx.track(job)
        ctx.queue.push(a.user, job.id)
        ctx.dispatch.pump()
        ctx.publish(a)
        ctx.positions_changed()
        log.info("job %s: admitted (%d image(s))", job.id, request.count)
        return job

    async def cancel(self, job_id: str, requester: Requester) -> Job:
        ctx = self._ctx
        key = normalize_job_id(job_id) or job_id.strip()
        job = await ctx.store.get(key)
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
        _check_cancellable(job)
        error = failures.cancelled(job.id, by_admin=not owner)
        done = await ctx.settle.fail(job.id, error, CANCELLABLE, state=JobState.CANCELLED)
        if done is None:
            current = await ctx.store.get(job.id)
            _check_cancellable(current or job)
            raise NotAllowed(f"Job {job.id} could not be cancelled.", code="not_cancellable")
        if done.task_id:
            ctx.settle.cancel_at_provider(done.task_id)
        if ctx.sharing is not None:
            await ctx.sharing.settled_elsewhere(done.id)  # its holder stops watching it
        log.info("job %s: cancelled by %s", job.id, "an admin" if not owner else "its owner")
        return done


def _check_cancellable(job: Job) -> None:
    if job.state.final:
        raise NotAllowed(
            f"Job {job.id} has already finished ({job.state.value}).", code="already_final"
        )
    if job.state is JobState.DELIVERING:
        raise NotAllowed(
            f"Job {job.id} is finished and its images are being posted.", code="delivering"
        )

"""Recovery: after a restart, every stored job that has not finished is picked up
where it stood, with no paid work done twice."""

from __future__ import annotations

import logging

from bot.core.engine import failures
from bot.core.engine.config import RESUME_GRACE
from bot.core.engine.context import Context
from bot.core.models import Job, JobState

log = logging.getLogger(__name__)

_Q, _S, _R, _D = JobState.QUEUED, JobState.SUBMITTING, JobState.RUNNING, JobState.DELIVERING


class Recovery:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    async def resume_all(self) -> None:
        """Resume every stored job whose front end has registered its delivery port
        (others are left for that front end)."""
        for job in await self._ctx.store.active_jobs():
            await self.recover(job)
        self._ctx.dispatch.pump()

    async def recover(self, job: Job, *, lease: int | None = None, restart: bool = True) -> None:
        """Pick up one job where it stood. `lease`: taken over from another process
        (sharing.py), whose token this process now holds. `restart`: the whole bot was
        down, so the downtime must not use up the job's deadline."""
        try:
            await self._recover(job, lease, restart)
        except Exception:
            log.exception("job %s: recovery failed", job.id)

    async def _recover(self, job: Job, lease: int | None, restart: bool) -> None:
        ctx = self._ctx
        if job.requester.platform not in ctx.ports:
            log.info("job %s: no %s front end here; left as it is", job.id, job.requester.platform)
            return
        if job.provider != ctx.provider.name and job.state is not _D:
            await ctx.settle.fail(job.id, failures.provider_changed(job.id), [job.state])
            return
        log.info("job %s: resuming from %s", job.id, job.state.value)
        if restart or job.state is not _Q:
            job = await self._resume_deadline(job)
        if job.state is _Q:
            a = ctx.track(job)
            a.lease = lease
            if ctx.sharing is not None:
                # Taken over only past its deadline (the timer fails it now), or given
                # a new one after a restart: back to the shared queue.
                if ctx.time_left(a) > 0:
                    a.lease = None
                    ctx.untrack(a)
                    if lease is not None:
                        await ctx.sharing.share.release({job.id: lease})
                    ctx.sharing.pump()
                return
            ctx.queue.push(a.user, job.id)
            ctx.positions_changed()
        elif job.state is _S:
            # The submit may have reached the provider: never sent again (it may bill).
            await ctx.settle.fail(job.id, failures.interrupted_submit(job.id), [_S])
        elif job.state is _R:
            a = ctx.track(job)
            a.lease = lease
            a.resumed = True
            ctx.take_slot(a)
            ctx.watch.resumed(a)
        elif job.state is _D:
            # Posting and recording it are not one step: deliver again. The front end
            # finds a post that made it before the crash (DeliveryPort.deliver contract).
            a = ctx.track(job)
            a.lease = lease
            ctx.take_user_slot(a)
            ctx.publish(a, force=True)
            ctx.finishing_task(ctx.deliver.resume(a), f"deliver-{job.id}")

    async def _resume_deadline(self, job: Job) -> Job:
        """The bot's own downtime must not use up a job's deadline before anyone looks:
        a queued job gets a full deadline again, a running or delivering one at least
        RESUME_GRACE seconds (its task may well have finished while the bot was away)."""
        ctx = self._ctx
        now = ctx.clock.now()
        grace = ctx.config.deadline_seconds if job.state is _Q else RESUME_GRACE
        if job.deadline_at is not None and job.deadline_at >= now + grace:
            return job
        return await ctx.store.update(job.id, deadline_at=now + grace)

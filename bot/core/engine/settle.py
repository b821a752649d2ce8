"""Final states: failing a job (refunded, its user told), and who hears of a job this
engine has settled (`wait_final` waiters, `on_final` listeners)."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

from bot.core.engine import failures
from bot.core.engine.context import Active, Context
from bot.core.engine.deadline import within
from bot.core.errors import NotFound
from bot.core.ids import normalize_job_id
from bot.core.models import AdminAlert as AlertFact
from bot.core.models import AlertCause, ErrorKind, FailureCategory, Job, JobState, UserError

log = logging.getLogger(__name__)

FinalListener = Callable[[Job], Awaitable[None]]
_ANNOUNCED_KEPT = 1024


class Settle:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._waiters: dict[str, set[asyncio.Future[Job]]] = {}
        self._listeners: list[FinalListener] = []
        # Jobs announced lately: a second report of the same end is not news. Only the
        # compare-and-set winner reports today; this keeps "once" true if that changes.
        self._announced: OrderedDict[str, None] = OrderedDict()

    async def fail(
        self,
        job_id: str,
        error: UserError,
        expected: Iterable[JobState],
        *,
        state: JobState = JobState.FAILED,
    ) -> Job | None:
        """Settle the job as failed (refunding everything) if it is still in one of
        `expected`; None when another path got there first."""
        ctx = self._ctx
        job = await ctx.store.transition(
            job_id,
            list(expected),
            state,
            delivered=0,
            error_kind=error.kind,
            error_code=error.code,
            error_message=error.message or error.detail,
            finished_at=ctx.clock.now(),
        )
        if job is None:
            return None
        a = ctx.active.get(job_id)
        if a is not None:
            a.job = job
            ctx.untrack(a)
        ctx.stats.failed += 1
        ctx.metrics.job_failed(job, error)
        if error.kind is ErrorKind.INTERNAL:
            log.error("job %s: failed: %s", job_id, error.code)
        ctx.finishing_task(self._notify_failure(job, error), f"fail-{job_id}")
        self.settled(job)
        return job

    async def fail_unexpected(self, a: Active, expected: Iterable[JobState]) -> None:
        """Fail the job as the bot's own error after an unexpected exception (logged by
        the caller), unless another process holds the job now."""
        ctx = self._ctx
        if ctx.sharing is not None and not await ctx.sharing.still_holds(a):
            return
        await self.fail(a.job.id, failures.internal(a.job.id), expected)

    async def _notify_failure(self, job: Job, error: UserError) -> None:
        ctx = self._ctx
        await ctx.progress.drain(job.id)
        port = ctx.ports.get(job.requester.platform)
        if port is None:
            return
        if error.kind is ErrorKind.PROVIDER_CONFIG and error.code != "provider_changed":
            # Billing, key or setup trouble: the card says the admins have been told
            # only when they have (now, or of the same cause within the hour).
            # The bot's own request is another cause than the account: told apart, so
            # one does not silence the other for the hour.
            request = error.category is FailureCategory.REQUEST
            told = await ctx.health.tell_admins(
                AlertFact(
                    cause=AlertCause.BOT_REQUEST if request else AlertCause.PROVIDER_SETUP,
                    guild_id=job.requester.guild_id,
                    platform=job.requester.platform,
                    detail=ctx.health.admin_detail(error),
                )
            )
            error = error.model_copy(update={"admins_told": told})
        try:
            await port.fail(job, error.model_copy(update={"job_id": job.id}))
        except Exception:
            log.warning("job %s: could not tell the user it failed", job.id, exc_info=True)

    def cancel_at_provider(self, task_id: str) -> None:
        """Ask the provider to stop a task nobody waits for (best effort)."""
        provider = self._ctx.provider
        if not provider.capabilities.supports_cancel:
            return

        async def cancel() -> None:
            try:
                await provider.cancel(task_id)
            except Exception as exc:  # best effort: the job is already settled
                log.warning("task %s: cancel at the provider failed: %s", task_id, exc)

        self._ctx.tasks.create_task(cancel(), name=f"cancel-{task_id}")

    # --- who hears of a final job ---------------------------------------------------

    def settled(self, job: Job) -> None:
        """This engine has just moved `job` to a final state. Called only by the path
        whose compare-and-set won, so once per job: waiters wake, listeners run."""
        if job.id in self._announced:
            return
        self._announced[job.id] = None
        if len(self._announced) > _ANNOUNCED_KEPT:
            self._announced.popitem(last=False)
        for waiter in self._waiters.pop(job.id, ()):
            if not waiter.done():
                waiter.set_result(job)
        ctx = self._ctx
        for listener in self._listeners:
            try:
                ctx.tasks.create_task(self._tell(listener, job), name=f"final-{job.id}")
            except RuntimeError:  # the engine has closed: nobody is left to run it
                log.warning("job %s: final listener not run (engine closed)", job.id)

    @staticmethod
    async def _tell(listener: FinalListener, job: Job) -> None:
        try:
            await listener(job)
        except Exception:
            log.exception("job %s: a final-state listener failed", job.id)

    def on_final(self, listener: FinalListener) -> None:
        self._listeners.append(listener)

    async def wait_final(self, job_id: str, timeout: float | None = None) -> Job:
        ctx = self._ctx
        key = normalize_job_id(job_id) or job_id.strip()
        # Waiting before reading: a settle between the read and the wait still wakes it.
        waiter: asyncio.Future[Job] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, set()).add(waiter)
        try:
            job = await ctx.store.get(key)
            if job is None:
                raise NotFound(f"There is no job {job_id}.", code="job_not_found")
            if job.state.final:
                return job
            if timeout is None:
                return await waiter
            # On the engine's clock (DeadlinePassed is a TimeoutError), so fake time
            # drives it in tests.
            return await within(ctx.clock, timeout, waiter)
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[key]
            waiter.cancel()

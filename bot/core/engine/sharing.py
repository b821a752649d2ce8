"""Sharing the work with other bot processes on one database (a `WorkShare`).

Without a share the engine is the only worker: it holds every job in memory and its
fair queue decides who goes next. With one, the database is the queue: a job is
admitted without being held, and whichever process has a provider slot free claims
the next jobs in fair order, counted over every process (dispatch then submits them
as usual). A held job's lease is renewed every third of its length; a process that
stops renewing (killed, paused, cut off) loses its jobs to the others, who pick them
up as a restart would (recovery.py). A lease's token is checked right before results
are posted (delivery.py), so a holder that was paused past its lease never posts
what the new holder posts.

Wake-ups between processes (a job queued or a slot freed, a callback that reached
another process, a cancel) make this fast; timers make it correct without them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from bot.core.engine.context import Active, Context
from bot.core.models import JobState
from bot.core.ports import WAKE_FINAL, WAKE_POLL, WAKE_QUEUED, Claimed, WorkShare

log = logging.getLogger(__name__)

_S, _R = JobState.SUBMITTING, JobState.RUNNING
# Look for claimable and orphaned jobs at least this often when no wake-up comes.
SCAN_SECONDS = 2.0


class LeaseLost(Exception):
    """Another process holds the job now: this one lets go without settling it."""


class Sharing:
    def __init__(self, ctx: Context, share: WorkShare) -> None:
        self._ctx = ctx
        self.share = share
        self._renew_every = share.lease_seconds / 3
        self._scan_every = min(SCAN_SECONDS, self._renew_every)
        self._claiming = False
        self._again = False
        self._own: list[str] = []
        self._freed = False  # a slot of ours came free: wake the others if we take nothing
        self._scanning = False
        self._live = 1  # processes alive, as of the last heartbeat

    # --- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Join the others: take over what nobody holds, claim what fits, arm timers."""
        await self.share.start(self._wake)
        alone = await self._heartbeat() == 1
        await self._take_over(restart=alone)
        self.pump()
        self._arm_renew()
        self._arm_scan()

    async def close(self) -> None:
        """Give every held job back (the others take them over at once)."""
        try:
            await self.share.close()
        except Exception:
            log.warning("leaving the shared work failed", exc_info=True)

    # --- claiming queued jobs -------------------------------------------------------

    def pump(self, own: Sequence[str] = ()) -> None:
        """Claim queued jobs for the slots free across all processes (one claim at a
        time; a call during one runs another after it). `own`: just admitted here."""
        ctx = self._ctx
        if ctx.closing:
            return
        self._own.extend(own)
        if self._claiming:
            self._again = True
            return
        self._claiming = True
        ctx.tasks.create_task(self._claim(), name="share-claim")

    def slot_freed(self) -> None:
        self._freed = True
        self.pump()

    async def _claim(self) -> None:
        ctx = self._ctx
        try:
            while not ctx.closing:
                self._again = False
                own, self._own = self._own, []
                freed, self._freed = self._freed, False
                try:
                    claimed = await self.share.claim(
                        ctx.provider.name,
                        list(ctx.ports),
                        concurrency=ctx.config.provider_concurrency,
                        per_user=ctx.config.max_running_per_user,
                        own=own,
                        workers=self._live,
                    )
                except Exception:
                    log.warning("claiming queued jobs failed; trying again soon", exc_info=True)
                    return  # the scan timer claims again
                for c in claimed:
                    self._begin(c)
                if (freed and not claimed) or (claimed and self._live > 1):
                    # Nothing here fits the slot (a job of a front end another process
                    # runs may), or this process took its share: the others take theirs.
                    await self.share.notify(WAKE_QUEUED)
                if not self._again:
                    return
        finally:
            self._claiming = False

    def _begin(self, c: Claimed) -> None:
        ctx = self._ctx
        held = ctx.active.get(c.job.id)
        if held is not None:
            held.lease = c.token
            return
        a = ctx.track(c.job)
        a.lease = c.token
        ctx.take_slot(a)
        ctx.finishing_task(ctx.dispatch.submit(a), f"submit-{c.job.id}")

    # --- leases -----------------------------------------------------------------------

    def drop(self, job_id: str, why: str) -> None:
        """Let go of a job without settling it: another process has it now."""
        a = self._ctx.active.get(job_id)
        if a is None or a.lease is None:
            return
        log.warning("job %s: %s; letting go of it", job_id, why)
        a.lease = None
        self._ctx.untrack(a)

    async def fence(self, a: Active) -> None:
        """Right before posting: raises LeaseLost unless this process still holds the job.
        No lease is a lost one too: drop() clears it while a delivery may still be on its
        way here."""
        if a.lease is None or not await self.share.holds(a.job.id, a.lease):
            raise LeaseLost(a.job.id)

    async def still_holds(self, a: Active) -> bool:
        """Before settling a job on an unexpected error (the database, a bug): False,
        and the job let go, when another process holds it now. A process paused past
        its lease finds its transaction ended by the server when it wakes: that error
        is its own, not the job's, and the new holder goes on with the job. True when
        the lease cannot be checked either (the job is failed as before)."""
        try:
            await self.fence(a)
        except LeaseLost:
            self.drop(a.job.id, "another process holds it now")
            self._ctx.untrack(a)
            return False
        except Exception:
            log.warning("job %s: checking its lease failed", a.job.id, exc_info=True)
        return True

    async def _renew(self) -> None:
        ctx = self._ctx
        try:
            tokens = {job_id: a.lease for job_id, a in ctx.active.items() if a.lease is not None}
            for job_id in await self.share.renew(tokens):
                self.drop(job_id, "its lease was taken over")
            await self._heartbeat()
        except Exception:
            log.warning("renewing leases failed", exc_info=True)
        finally:
            self._arm_renew()

    async def _heartbeat(self) -> int:
        """Mark this process alive; the provider's status-call rate is shared evenly by
        the processes alive."""
        ctx = self._ctx
        live = self._live = max(1, await self.share.heartbeat())
        ctx.limiter.set_rate(ctx.config.status_rps / live)
        return live

    # --- taking over jobs nobody holds -------------------------------------------------

    async def _take_over(self, *, restart: bool = False) -> None:
        ctx = self._ctx
        claimed = await self.share.take_over(ctx.provider.name, list(ctx.ports))
        for c in claimed:
            held = ctx.active.get(c.job.id)
            if held is not None:  # ours all along, renewed late
                held.lease = c.token
                continue
            log.info("job %s: taking it over (%s)", c.job.id, c.job.state.value)
            await ctx.recovery.recover(c.job, lease=c.token, restart=restart)

    async def _scan(self) -> None:
        if self._scanning:
            return
        self._scanning = True
        try:
            await self._take_over()
            self.pump()
        except Exception:
            log.warning("looking for jobs to take over failed", exc_info=True)
        finally:
            self._scanning = False
            self._arm_scan()

    def _arm_renew(self) -> None:
        self._arm("renew", self._renew_every, self._renew)

    def _arm_scan(self) -> None:
        self._arm("scan", self._scan_every, self._scan)

    def _arm(self, what: str, every: float, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        ctx = self._ctx
        if not ctx.closing:
            ctx.timers.call_at(
                ("share", what),
                ctx.clock.monotonic() + every,
                lambda: self._spawn(run(), f"share-{what}"),
            )

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        ctx = self._ctx
        if ctx.closing:
            coro.close()
            return
        ctx.tasks.create_task(coro, name=name)

    # --- wake-ups from the other processes ------------------------------------------

    def _wake(self, kind: str, job_id: str) -> None:
        ctx = self._ctx
        if ctx.closing:
            return
        if kind == WAKE_QUEUED:
            self.pump()
            if job_id == "*":  # leases were given back: take them over now
                self._spawn(self._take_over(), "share-take-over")
        elif kind == WAKE_POLL:
            a = ctx.active.get(job_id)
            if a is None:
                return
            if a.job.state is _R:
                ctx.watch.poll_now(a)
            elif a.job.state is _S:
                a.callback_seen = True  # poll as soon as the submit's answer is stored
        elif kind == WAKE_FINAL:
            self.drop(job_id, "it was settled by another process")

    # --- callbacks for jobs another process holds -------------------------------------

    async def forward_callback(self, job_id: str) -> None:
        await self.share.notify(WAKE_POLL, job_id)

    async def settled_elsewhere(self, job_id: str) -> None:
        await self.share.notify(WAKE_FINAL, job_id)

"""Delivery: download the results (bounded in bytes held), post them through the
front end's DeliveryPort, and record the job DONE, charged what was posted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, cast

from bot.core.engine import failures
from bot.core.engine.budget import Hold
from bot.core.engine.context import Active, Context
from bot.core.engine.deadline import DeadlinePassed, within
from bot.core.engine.sharing import LeaseLost
from bot.core.errors import ProviderError
from bot.core.models import FailureCategory, Job, JobState, PostedResults, ResultImage
from bot.core.ports import POSTED_IMAGES, DeliveryPort, PostLookup
from bot.core.retry import retrying

log = logging.getLogger(__name__)

_D = JobState.DELIVERING


def _transient(exc: BaseException) -> bool:
    return bool(getattr(exc, "transient", False)) or (
        isinstance(exc, ProviderError) and exc.category is FailureCategory.TRANSIENT
    )


class Delivery:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        config = ctx.config
        self._download_retry = config.retry(config.download_attempts, retryable=_transient)
        # Each post gets `deliver_attempt_timeout` and all of them `deliver_deadline`, so a
        # hung upload cannot hold the job (and its user's running slot) forever.
        self._post_retry = config.retry(
            config.deliver_attempts, deadline=config.deliver_deadline, retryable=_not_lost
        )
        # The compare-and-set is idempotent: tried again as often as a post is.
        self._record_retry = config.retry(config.deliver_attempts)

    async def deliver(self, a: Active) -> None:
        budget = self._ctx.result_bytes
        hold = await budget.acquire(budget.estimate(len(a.job.result_urls)))
        try:
            await self._deliver_held(a, hold)
        finally:
            hold.release()

    async def _deliver_held(self, a: Active, hold: Hold) -> None:
        ctx = self._ctx
        job = a.job
        job_id = job.id
        posted = False
        try:
            images = await self._download_all(job.result_urls)
            size = sum(len(image.data) for image in images)
            ctx.result_bytes.observe(len(images), size)
            hold.resize(size)
            if not images:
                reason = "its images could not be downloaded"
                await ctx.settle.fail(job_id, failures.no_results(job_id, reason), [_D])
                return
            count = job.request.count
            failed = count - len(images)
            port = ctx.ports[job.requester.platform]
            await ctx.progress.drain(job_id)
            data = await self._post(a, port, images, max(0, failed))
            delivered_count = len(images)
            del images  # posted: the bytes can go now, before the store is written
            hold.release()
            if data is None:
                log.error("job %s: the results could not be posted", job_id)
                await ctx.settle.fail(job_id, failures.internal(job_id), [_D])
                return
            posted = True
            delivered_count = _posted_count(data, delivered_count)
            # The front end's answer replaces its keys; None removes one.
            merged = {**job.delivery, **data}
            delivery = {key: value for key, value in merged.items() if value is not None}
            done = await self.record(job_id, delivered_count, delivery)
            ctx.untrack(a)
            if done is not None:
                ctx.stats.delivered += 1
                ctx.metrics.job_delivered(done, ctx.clock.now() - job.updated_at)
                log.info("job %s: delivered %d of %d image(s)", job_id, delivered_count, count)
                ctx.settle.settled(done)
        except LeaseLost:
            # Another process took the job over while this one was away (paused, cut
            # off): it posts and settles; the fencing check kept this one from posting.
            if ctx.sharing is not None:
                ctx.sharing.drop(job_id, "another process holds it now")
            ctx.untrack(a)
        except Exception:
            if posted:
                # The user has the images; only recording it failed, again and again.
                # Left DELIVERING, the next start settles it (the port will not post twice).
                log.exception("job %s: posted but could not be recorded", job_id)
                ctx.untrack(a)
                return
            log.exception("job %s: delivery failed unexpectedly", job_id)
            await ctx.settle.fail_unexpected(a, [_D])

    async def record(self, job_id: str, delivered: int, delivery: dict[str, Any]) -> Job | None:
        """DONE and settled, retried: a job left DELIVERING would hold its user's
        reservation and running slot until a restart. The caller tells `settle`."""
        ctx = self._ctx

        def failed(attempt: int, exc: Exception) -> None:
            log.warning("job %s: recording the delivery failed (try %d)", job_id, attempt)

        return await retrying(
            lambda: ctx.store.transition(
                job_id,
                [_D],
                JobState.DONE,
                delivered=delivered,
                delivery=delivery,
                result_urls=[],  # posted: the provider's links are not kept
                progress=100,
                finished_at=ctx.clock.now(),
            ),
            self._record_retry,
            clock=ctx.clock,
            on_failure=failed,
            rng=ctx.rng,
        )

    async def _post(
        self, a: Active, port: DeliveryPort, images: list[ResultImage], not_made: int
    ) -> dict[str, Any] | None:
        """Post, retried (a retry finds a post that was stored without an answer:
        DeliveryPort.deliver contract). None: give up (the job fails, refunded).
        Raises LeaseLost when another process holds the job now (checked before each try)."""
        ctx = self._ctx
        clock, config = ctx.clock, ctx.config
        end = clock.monotonic() + config.deliver_deadline
        job = a.job

        async def post() -> dict[str, Any]:
            if ctx.sharing is not None:
                await ctx.sharing.fence(a)
            left = end - clock.monotonic()
            timeout = min(config.deliver_attempt_timeout, left)
            return dict(await within(clock, timeout, port.deliver(job, images, not_made)))

        def failed(attempt: int, exc: Exception) -> None:
            if isinstance(exc, DeadlinePassed):
                log.warning(
                    "job %s: posting results got no answer in time (try %d)", job.id, attempt
                )
            else:
                log.warning(
                    "job %s: posting results failed (try %d)", job.id, attempt, exc_info=exc
                )

        try:
            return await retrying(
                post, self._post_retry, clock=clock, on_failure=failed, rng=ctx.rng
            )
        except LeaseLost:
            raise
        except Exception:
            return None

    async def resume(self, a: Active) -> None:
        """A job found DELIVERING after a restart may have been posted before the crash:
        ask its front end first, before downloading anything, and charge exactly the
        images posted. Otherwise deliver as usual."""
        ctx = self._ctx
        job = a.job
        found = await self._find_posted(job)
        if found is None:
            await self.deliver(a)
            return
        await ctx.progress.drain(job.id)
        try:
            done = await self.record(job.id, found.images, {**job.delivery, **found.delivery})
        except Exception:
            log.exception("job %s: found posted but could not be recorded", job.id)
            done = None
        ctx.untrack(a)
        if done is not None:
            ctx.stats.delivered += 1
            log.info("job %s: %d image(s) were posted before the restart", job.id, found.images)
            ctx.settle.settled(done)

    async def _find_posted(self, job: Job) -> PostedResults | None:
        ctx = self._ctx
        port = ctx.ports.get(job.requester.platform)
        if port is None or not hasattr(port, "find_posted"):
            return None  # a front end without it finds its earlier post in deliver()
        lookup = cast(PostLookup, port)
        try:
            found = await within(
                ctx.clock, ctx.config.deliver_attempt_timeout, lookup.find_posted(job)
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
        ctx = self._ctx

        def failed(attempt: int, exc: Exception) -> None:
            log.warning("result %d download failed (try %d): %s", index, attempt, exc)

        try:
            return await retrying(
                lambda: ctx.provider.download_result(url, index),
                self._download_retry,
                clock=ctx.clock,
                on_failure=failed,
                rng=ctx.rng,
            )
        except Exception:
            return None


def _not_lost(exc: BaseException) -> bool:
    return not isinstance(exc, LeaseLost)


def _posted_count(data: dict[str, Any], given: int) -> int:
    """Images the front end says it posted (an earlier post it found may hold a different
    number than it was given now); the job is charged exactly that."""
    posted = data.pop(POSTED_IMAGES, None)
    return given if posted is None else max(0, int(posted))

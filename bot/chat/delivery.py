"""The one delivery path: the engine's `DeliveryPort` (and `PostLookup`) for every
chat front end, over its `ChatSurface`.

Progress goes through one throttle tuned per platform. A job's status card is posted
only once the job is stored and admitted (`card_posted`); until then, in this
process, its updates and results wait for it, so nothing reaches the user out of
order. Results are posted once: a retry answers what an earlier try posted, and a
job this process did not see before delivery (recovered after a restart) is first
looked for where it would have been posted.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict
from typing import Any

from bot.chat import cards, wording
from bot.chat.meta import ChatMeta
from bot.chat.surface import ChatSurface, DeliveryProblem, Posted
from bot.chat.throttle import ProgressThrottle
from bot.core.clock import Clock
from bot.core.engine.deadline import DeadlinePassed, within
from bot.core.models import (
    ErrorKind,
    Job,
    JobState,
    PostedResults,
    ProgressUpdate,
    ResultImage,
    UserError,
)
from bot.core.ports import POSTED_IMAGES

log = logging.getLogger(__name__)

_RECENT_LIMIT = 5000
# The last status edit is cosmetic: a hung one must not hold (or fail) a posted job.
STATUS_EDIT_TIMEOUT = 30.0
CARD_BY = "card_by"  # Job.delivery: the process that is posting the job's status card


class ChatDelivery:
    def __init__(self, surface: ChatSurface, clock: Clock) -> None:
        self.surface = surface
        self._clock = clock
        self._throttle = ProgressThrottle(surface.tuning)
        self._finished: OrderedDict[str, None] = OrderedDict()  # jobs past progress
        # Jobs seen before delivery in this process: not posted by an earlier process.
        self._fresh: OrderedDict[str, None] = OrderedDict()
        self._problems: dict[str, UserError] = {}  # why posting failed, by job id
        # Posted, then cut off before deliver() returned (a hung status edit).
        self._posted: dict[str, dict[str, Any]] = {}
        # Status cards being posted (job admitted, card not up yet), and their refs.
        self._token = secrets.token_hex(4)
        self._cards: dict[str, asyncio.Event] = {}
        self._cards_done: OrderedDict[str, None] = OrderedDict()
        self._refs: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------ status cards
    def card_marker(self) -> dict[str, Any]:
        """Stored with a job admitted in this process before its card is posted: its
        updates wait for the card here (after a restart nobody waits)."""
        return {CARD_BY: self._token}

    def card_posted(
        self,
        job_id: str,
        ref: dict[str, Any],
        shown: ProgressUpdate | None = None,
        shown_at: float | None = None,
    ) -> None:
        """The card is up (`ref` stored with the job), or could not be posted ({}).
        `shown`: what it says, as of `shown_at` (monotonic), so the same news is not
        edited in again at once."""
        if ref:
            self._refs[job_id] = ref
            if shown is not None:
                at = self._clock.monotonic() if shown_at is None else shown_at
                self._throttle.worth_showing(job_id, shown, at)
        _remember(self._cards_done, job_id)
        event = self._cards.pop(job_id, None)
        if event is not None:
            event.set()

    async def _with_card(self, job: Job) -> Job:
        await self._card_ready(job)
        return self._with_ref(job)

    async def _card_ready(self, job: Job) -> None:
        mine = job.delivery.get(CARD_BY) == self._token
        if mine and job.id not in self._cards_done:
            # No timer of its own: `card_posted` always follows (in a finally), the post
            # is bounded by the platform client's timeouts, and the engine bounds each
            # delivery attempt.
            await self._cards.setdefault(job.id, asyncio.Event()).wait()

    def _with_ref(self, job: Job) -> Job:
        ref = self._refs.get(job.id)
        if ref and any(job.delivery.get(k) != v for k, v in ref.items()):
            # The engine read the job before the card's reference was stored.
            job = job.model_copy(update={"delivery": {**job.delivery, **ref}})
        return job

    def _done_with(self, job_id: str) -> None:
        """Past progress (a delivery retried after a failure keeps the card's ref)."""
        self._throttle.forget(job_id)
        _remember(self._finished, job_id)
        self._fresh.pop(job_id, None)

    # ------------------------------------------------------------------ progress
    async def progress(self, job: Job, update: ProgressUpdate) -> None:
        if update.state is not JobState.DELIVERING:
            _remember(self._fresh, job.id)
        if job.id in self._finished:
            return
        await self._card_ready(job)
        if not self._throttle.worth_showing(job.id, update, self._clock.monotonic()):
            return
        job = self._with_ref(job)
        card = cards.status_card(
            job.request,
            update,
            self.surface.style,
            self._clock.now(),
            requester_id=job.requester.user_id,
            job_id=job.id,
            notes=ChatMeta.of(job).notes,
        )
        try:
            await self.surface.show_status(job, card)
        except Exception as exc:  # progress is cosmetic: never let it fail the job
            log.info("job %s: status edit failed (%s)", job.id, exc)

    # ------------------------------------------------------------------- deliver
    async def deliver(self, job: Job, images: list[ResultImage], failed: int) -> dict[str, Any]:
        job = await self._with_card(job)
        fresh = job.id in self._fresh
        self._done_with(job.id)
        ref = self._refs.get(job.id, {})
        if (posted_before := self._posted.pop(job.id, None)) is not None:
            self._problems.pop(job.id, None)
            self._refs.pop(job.id, None)
            return posted_before  # the images are up: only the status edit was cut off
        notes = ChatMeta.of(job).notes
        if failed:
            notes = [*notes, wording.partial_note(failed, job.request.count)]
        card = cards.result_card(job, [image.index for image in images], notes)
        try:
            # Seen before delivery in this process: nothing to look for.
            posted = await self.surface.post_results(job, images, card, look_first=not fresh)
        except DeliveryProblem as exc:
            # The engine retries, then fails the job (refunded) and calls `fail`, which
            # shows this cause rather than a generic one.
            self._problems[job.id] = exc.error
            raise
        except asyncio.CancelledError:
            # The engine gave up waiting (a hung upload): if it fails the job for good,
            # `fail` says so. A retry first looks for a post stored meanwhile.
            self._problems[job.id] = self.surface.timeout_error(job)
            raise
        self._problems.pop(job.id, None)
        # The card marker has done its job: left out of the stored record (None).
        result = {**ref, **posted.ref, POSTED_IMAGES: posted.images, CARD_BY: None}
        self._posted[job.id] = result
        await self._show_done(job, posted)
        del self._posted[job.id]
        self._refs.pop(job.id, None)
        return result

    async def find_posted(self, job: Job) -> PostedResults | None:
        """`PostLookup`: results a process posted before a crash and could not record."""
        posted = await self.surface.find_posted(job)
        if posted is None:
            return None
        self._done_with(job.id)
        self._refs.pop(job.id, None)
        log.info("job %s: results were posted before the restart", job.id)
        await self._show_done(job, posted)
        return PostedResults(images=posted.images, delivery=posted.ref)

    async def _show_done(self, job: Job, posted: Posted) -> None:
        job = job.model_copy(update={"delivery": {**job.delivery, **posted.ref}})
        card = cards.done_card(job, posted.images, self.surface.results_link(job, posted))
        try:
            await within(self._clock, STATUS_EDIT_TIMEOUT, self.surface.show_done(job, card))
        except (Exception, DeadlinePassed) as exc:
            log.info("job %s: final status edit failed (%s)", job.id, exc)

    # ---------------------------------------------------------------------- fail
    async def fail(self, job: Job, error: UserError) -> None:
        job = await self._with_card(job)
        self._done_with(job.id)
        self._refs.pop(job.id, None)
        self._posted.pop(job.id, None)
        problem = self._problems.pop(job.id, None)
        if problem is not None and error.kind is ErrorKind.INTERNAL:
            error = problem.model_copy(update={"job_id": job.id})
        if error.job_id is None:
            error = error.model_copy(update={"job_id": job.id})
        card = cards.failure_card(job.request, error, self.surface.style)
        try:
            await self.surface.show_failure(job, card)
        except Exception as exc:
            log.warning("job %s failed and the user could not be told: %s", job.id, exc)

    async def job_ended(self, job: Job) -> None:
        """Engine `on_final` listener: what was hosted for the job's inputs goes."""
        if job.requester.platform == self.surface.platform:
            await self.surface.release_inputs(job)


def _remember(recent: OrderedDict[str, None], job_id: str) -> None:
    recent[job_id] = None
    recent.move_to_end(job_id)
    while len(recent) > _RECENT_LIMIT:
        recent.popitem(last=False)

"""What the result buttons and the job commands do: reroll, try again, edit one
image, delete, info, show, jobs, cancel. The same rules on every platform."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import PurePosixPath

from bot.chat import cards, wording
from bot.chat.meta import RESULTS_DELETED, RETRIED_AS, ChatMeta
from bot.chat.starting import ChatDeps, Starter
from bot.chat.surface import ChatSurface, Conversation
from bot.core.errors import NotAllowed, NotFound, ValidationFailed
from bot.core.ids import normalize_job_id
from bot.core.models import Job, JobState
from bot.core.validation import (
    Fetched,
    Fetcher,
    ImageMeta,
    ImageSource,
    InputFetchFailed,
    check_options,
)

log = logging.getLogger(__name__)


def url_filename(url: str) -> str | None:
    name = PurePosixPath(url.split("?", 1)[0]).name
    return name or None


def result_filename(job_id: str, index: int, extension: str) -> str:
    """Result files are named after their job and image, so buttons (and a delivery
    after a restart) can find them."""
    return f"{result_prefix(job_id)}{index + 1}.{extension}"


def result_prefix(job_id: str) -> str:
    return f"wan_{job_id}_"


def result_index(job_id: str, filename: str) -> int | None:
    """The image index of `job_id`'s result file `filename`, None for any other file."""
    stem = PurePosixPath(filename).stem
    number = stem.removeprefix(result_prefix(job_id))
    if number == stem or not number.isdigit() or int(number) < 1:
        return None
    return int(number) - 1


class JobActions:
    def __init__(self, deps: ChatDeps, starter: Starter, surfaces: dict[str, ChatSurface]) -> None:
        self._deps = deps
        self._starter = starter
        self._surfaces = surfaces
        self._retrying: set[str] = set()  # jobs whose Try again is being handled

    @property
    def price_per_image(self) -> float:
        price = self._deps.price_per_image
        return self._deps.provider.capabilities.price_per_image_usd if price is None else price

    async def job_for(self, conv: Conversation, job_id: str) -> Job:
        """The job, if it exists and belongs to this platform and space."""
        canonical = normalize_job_id(job_id)
        job = await self._deps.engine.get(canonical) if canonical else None
        if job is None or job.requester.space != conv.requester.space:
            raise NotFound(wording.job_not_found(job_id, conv.style), code="job_not_found")
        return job

    # ------------------------------------------------------------------ buttons
    async def reroll(self, conv: Conversation, job_id: str) -> Job:
        job = await self.job_for(conv, job_id)
        if not job.request.images:
            request = job.request.model_copy(update={"seed": None})
            return await self._starter.start_request(conv, request, parent_job_id=job.id)
        return await self._again_with_images(conv, job)

    async def retry(self, conv: Conversation, job_id: str) -> Job:
        """Try again: the same request as a NEW job (quota checked as usual), only on its
        requester's word. The failed job's submit was never resent, so this is the only
        way it runs again; once per failed job, after restarts too."""
        job = await self.job_for(conv, job_id)
        if conv.requester.user_id != job.requester.user_id:
            raise NotAllowed(wording.retry_not_owner(), code="not_owner")
        if job.state is not JobState.FAILED:
            raise NotAllowed(wording.retry_not_failed(job.id, conv.style), code="not_failed")
        done = ChatMeta.of(job).retried_as
        if job.id in self._retrying or done:
            raise NotAllowed(wording.retry_done(job.id, done, conv.style), code="retrying")
        self._retrying.add(job.id)  # a double click must not start (and charge) two jobs
        try:
            if job.request.images:
                new = await self._again_with_images(conv, job)  # fetched and checked anew
            else:
                new = await self._starter.start_request(conv, job.request, parent_job_id=job.id)
            await self._deps.jobs.update(job.id, delivery={**job.delivery, RETRIED_AS: new.id})
            return new
        finally:
            self._retrying.discard(job.id)

    async def _again_with_images(self, conv: Conversation, job: Job) -> Job:
        """Stored input links expire (chat CDNs after about a day), and the provider would
        refuse a dead one as if the user had sent a bad image: fetch and check them again
        like new attachments, and say so plainly when they are gone."""
        request = job.request
        surface = self._surfaces.get(job.requester.platform)
        again = await surface.input_sources(job) if surface is not None else None
        if again is None:
            sources = [
                ImageSource.from_url(ref.url, ImageMeta(index=i, filename=url_filename(ref.url)))
                for i, ref in enumerate(request.images, start=1)
            ]
            fetch = _NoticingFetcher(self._deps.downloader)
        elif len(again.sources) < len(request.images):
            raise ValidationFailed([wording.INPUTS_GONE])  # an original was deleted
        else:
            sources, fetch = again.sources, _NoticingFetcher(again.fetch)
        options = check_options(
            request.prompt,
            request.negative_prompt,
            request.aspect_ratio,
            request.count,
            len(sources),
            self._deps.provider.capabilities,
        )
        try:
            return await self._starter.start(
                conv, options, sources, parent_job_id=job.id, fetch=fetch
            )
        except InputFetchFailed:
            raise  # the links may be fine: their host did not answer right now
        except ValidationFailed as exc:
            if fetch.failed:
                raise ValidationFailed([wording.INPUTS_GONE]) from exc
            raise

    async def edit_result(
        self, conv: Conversation, job_id: str, index: int, prompt: str, url: str | None
    ) -> Job:
        """Edit result image `index` of a job (`url`: its link where the button was, if
        known; else the provider's link kept with the job)."""
        caps = self._deps.provider.capabilities
        options = check_options(prompt, None, None, 1, 1, caps)
        if url is None:
            job = await self.job_for(conv, job_id)
            if ChatMeta.of(job).results_deleted:
                raise NotFound(wording.results_deleted(job.id, conv.style), code="results_deleted")
            if index >= len(job.result_urls):
                raise NotFound(
                    wording.no_such_image(job_id, index, conv.style), code="image_not_found"
                )
            url = job.result_urls[index]
        meta = ImageMeta(index=1, filename=result_filename(job_id, index, "png"))
        return await self._starter.start(
            conv, options, [ImageSource.from_url(url, meta)], parent_job_id=job_id
        )

    async def delete(
        self, conv: Conversation, job_id: str, remove: Callable[[], Awaitable[None]]
    ) -> Job:
        """Delete a job's result post (`remove` does it on the platform): its requester
        or an admin only; /show then never brings the images back."""
        job = await self.job_for(conv, job_id)
        mine = conv.requester.user_id == job.requester.user_id
        if not (mine or conv.requester.is_admin):
            raise NotAllowed(wording.delete_not_allowed(), code="not_owner")
        await remove()
        await self._deps.jobs.update(job.id, delivery={**job.delivery, RESULTS_DELETED: True})
        log.info("job %s: results deleted by %s", job.id, conv.requester.user_id)
        return job

    async def info(self, conv: Conversation, job_id: str) -> cards.Card:
        job = await self.job_for(conv, job_id)
        return cards.info_card(job, self.price_per_image, conv.style)

    # ----------------------------------------------------------------- commands
    async def show(self, conv: Conversation, job_id: str) -> cards.Card:
        """A finished job's images again (fresh links), else its info."""
        job = await self.job_for(conv, job_id)
        if job.state is not JobState.DONE:
            return cards.info_card(job, self.price_per_image, conv.style)
        urls = None
        if not ChatMeta.of(job).results_deleted:
            surface = self._surfaces.get(job.requester.platform)
            urls = await surface.result_urls(job) if surface else list(job.result_urls)
        if urls is None:
            return cards.Card(
                title=f"Job {job.id}", text=wording.results_deleted(job.id, conv.style)
            )
        if not urls:
            return cards.info_card(job, self.price_per_image, conv.style)
        return cards.shown_card(job, urls)

    async def jobs(self, conv: Conversation) -> cards.Card:
        requester = conv.requester
        recent = await self._deps.jobs.user_jobs(requester.platform, requester.user_id, limit=10)
        here = [job for job in recent if job.requester.space == requester.space]
        return cards.jobs_card(here, conv.style, self._deps.clock.now())

    async def cancel(self, conv: Conversation, job_id: str) -> str:
        job = await self.job_for(conv, job_id)
        job = await self._deps.engine.cancel(job.id, conv.requester)  # owner or admin
        return wording.cancelled_text(job.id, conv.style)


class _NoticingFetcher:
    """Passes downloads through and notes whether any failed."""

    def __init__(self, inner: Fetcher) -> None:
        self._inner = inner
        self.failed = False

    async def fetch(
        self, url: str, *, max_bytes: int | None = None, any_type: bool = False
    ) -> Fetched:
        try:
            return await self._inner.fetch(url, max_bytes=max_bytes, any_type=any_type)
        except Exception:
            self.failed = True
            raise

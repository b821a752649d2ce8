"""Starting a job, the same steps for every entry point on every platform: instant
checks, the place, the quota pre-check, the images, admission, then the status card.

Nothing public is posted before the job is stored and admitted: a refused request
leaves no card behind, and a crash between admission and the card leaves a job
that still runs (its results then go to the channel it was asked in).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

from bot.chat import cards, wording
from bot.chat.configs import SpaceConfigs
from bot.chat.delivery import CARD_BY, ChatDelivery
from bot.chat.meta import ChatMeta
from bot.chat.surface import Conversation
from bot.core.clock import Clock
from bot.core.errors import ValidationFailed
from bot.core.models import GenerationRequest, Job
from bot.core.ports import ImageProvider, JobService, JobStore, QuotaAdmin
from bot.core.validation import (
    CheckedOptions,
    Fetcher,
    ImageSource,
    check_metadata,
    check_options,
    prepare_images,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChatDeps:
    """The core parts the conversation layer works with (built in `__main__`)."""

    engine: JobService
    jobs: JobStore
    quotas: QuotaAdmin
    provider: ImageProvider
    downloader: Fetcher
    clock: Clock
    image_executor: Executor | None = None
    price_per_image: float | None = None  # None: the provider's


def instant_checks(
    deps: ChatDeps,
    prompt: str | None,
    negative: str | None,
    aspect: str | None,
    count: int | None,
    sources: Sequence[ImageSource],
    normalize: bool,
) -> CheckedOptions:
    """Validation stage 1 (no I/O): options and image metadata, every problem at once."""
    caps = deps.provider.capabilities
    problems: list[str] = []
    options: CheckedOptions | None = None
    try:
        options = check_options(prompt, negative, aspect, count, len(sources), caps)
    except ValidationFailed as exc:
        problems += exc.problems
    try:
        check_metadata([s.metadata(i) for i, s in enumerate(sources, 1)], caps, normalize)
    except ValidationFailed as exc:
        problems += exc.problems
    if problems or options is None:
        raise ValidationFailed(list(dict.fromkeys(problems)))
    return options


class Starter:
    def __init__(
        self, deps: ChatDeps, configs: SpaceConfigs, deliveries: Mapping[str, ChatDelivery]
    ) -> None:
        self._deps = deps
        self._configs = configs
        self._deliveries = deliveries

    async def start(
        self,
        conv: Conversation,
        options: CheckedOptions,
        sources: Sequence[ImageSource] = (),
        *,
        parent_job_id: str | None = None,
        fetch: Fetcher | None = None,
    ) -> Job:
        """Prepare the images and submit. Raises WanbotError (ValidationFailed,
        QuotaDenied, NotAllowed) with nothing spent and nothing left behind. `fetch`
        downloads the images (default: the runtime's downloader)."""
        deps = self._deps
        config = await self._configs.get(conv.requester.space)
        conv.check_place(config)
        if not sources:
            return await self.submit(
                conv, options.to_request(), notes=options.notes, parent_job_id=parent_job_id
            )
        # Before downloading (and hosting repaired copies of) images that could not be
        # used anyway. Admission stays the real, atomic check: the same rule.
        await deps.jobs.precheck(conv.requester, options.count)
        host = conv.image_host()
        try:
            prepared = await prepare_images(
                sources,
                deps.provider.capabilities,
                normalize=config.normalize_images,
                fetch=fetch or deps.downloader,
                host=host,
                executor=deps.image_executor,
            )
            job = await self.submit(
                conv,
                options.to_request(prepared.refs),
                notes=[*options.notes, *prepared.notes],
                parent_job_id=parent_job_id,
                originals=[s.url for s in sources if s.private and s.url],
                hosted=host.kept(),
            )
        except BaseException:
            # Refused after all: copies hosted for the provider must not stay up for a
            # job that does not exist.
            await host.withdraw()
            raise
        host.bind(job.id)
        return job

    async def start_request(
        self, conv: Conversation, request: GenerationRequest, *, parent_job_id: str | None = None
    ) -> Job:
        """A request already checked (a reroll, a try again without images)."""
        conv.check_place(await self._configs.get(conv.requester.space))
        return await self.submit(conv, request, parent_job_id=parent_job_id)

    async def submit(
        self,
        conv: Conversation,
        request: GenerationRequest,
        *,
        notes: Sequence[str] = (),
        parent_job_id: str | None = None,
        originals: Sequence[str] = (),
        hosted: Sequence[str] = (),
    ) -> Job:
        """Admit and store the job, then post its status card (never before)."""
        deps = self._deps
        requester = conv.requester
        delivery = self._deliveries[requester.platform]
        job = await deps.engine.submit(
            requester,
            request,
            delivery={
                **delivery.card_marker(),
                **ChatMeta(
                    notes=list(notes), originals=list(originals), hosted=list(hosted)
                ).stored(),
            },
            parent_job_id=parent_job_id,
        )
        update = deps.engine.card_update(job.id)
        card = cards.status_card(
            request,
            update,
            conv.style,
            deps.clock.now(),
            requester_id=requester.user_id,
            job_id=job.id,
            notes=notes,
        )
        ref: dict[str, object] = {}
        shown_at = deps.clock.monotonic()
        try:
            ref = await conv.post_status(card)
            if ref:
                kept = {k: v for k, v in job.delivery.items() if k != CARD_BY}
                await deps.jobs.update(job.id, delivery={**kept, **ref})
        except Exception:
            # The job is stored and runs all the same; its results go to the channel.
            log.warning("job %s: could not post its status card", job.id, exc_info=True)
            with contextlib.suppress(Exception):
                await conv.answer(wording.no_status_card(job.id, conv.style))
        finally:
            delivery.card_posted(job.id, ref, update, shown_at)
        log.info(
            "job %s submitted by %s:%s in %s (%s)",
            job.id,
            requester.platform,
            requester.user_id,
            requester.guild_id,
            request.mode.value,
        )
        return job

"""The conversation layer (bot/chat) over the real engine and store, with a recording
surface: what users see, in order, once, and in the same words on every platform."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from bot.chat import cards, wording
from bot.chat.cards import ActionKind, Card
from bot.chat.delivery import ChatDelivery
from bot.chat.service import ChatService
from bot.chat.starting import ChatDeps
from bot.chat.style import PlainStyle
from bot.chat.surface import DeliveryProblem, Posted
from bot.chat.throttle import CHAT, TERMINAL, ProgressThrottle, Tuning
from bot.core.clock import FakeClock
from bot.core.engine import JobEngine
from bot.core.errors import QuotaDenied
from bot.core.models import (
    ErrorKind,
    GenerationRequest,
    GuildConfig,
    Job,
    JobState,
    Period,
    ProgressUpdate,
    Requester,
    ResultImage,
    UserError,
)
from bot.core.quota import QuotaDefaults
from bot.core.validation import ImageMeta, ImageSource
from storage.sqlite.db import Database
from storage.sqlite.jobs import SqliteJobStore
from storage.sqlite.quotas import SqliteQuotaAdmin
from tests.engine_doubles import (
    ScriptedProvider,
    TrackedStore,
    png_bytes,
    run_until_final,
)

PLATFORM = "test"
ALICE = Requester(platform=PLATFORM, user_id="alice", guild_id="g1", channel_id="c1")


@dataclass
class RecordingSurface:
    """A ChatSurface that records what it is asked to show, in order."""

    platform: str = PLATFORM
    style: PlainStyle = field(default_factory=PlainStyle)
    tuning: Tuning = CHAT
    events: list[tuple[str, str, Any]] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    refuse_posts: int = 0  # the next posts fail (a platform refusing an upload)

    async def show_status(self, job: Job, card: Card) -> None:
        self.events.append(("status", job.id, card))

    async def show_failure(self, job: Job, card: Card) -> None:
        self.events.append(("failure", job.id, card))

    async def post_results(
        self, job: Job, images: list[ResultImage], card: Card, *, look_first: bool
    ) -> Posted:
        self.events.append(("results", job.id, (card, look_first, dict(job.delivery))))
        if self.refuse_posts:
            self.refuse_posts -= 1
            raise DeliveryProblem(UserError(kind=ErrorKind.INTERNAL, code="lost", job_id=job.id))
        return Posted(images=len(images), ref={"result_ids": [f"r-{job.id}"]})

    async def find_posted(self, job: Job) -> Posted | None:
        return None

    def results_link(self, job: Job, posted: Posted) -> str | None:
        return None

    async def show_done(self, job: Job, card: Card) -> None:
        self.events.append(("done", job.id, card))

    async def release_inputs(self, job: Job) -> None:
        self.released.append(job.id)

    def timeout_error(self, job: Job) -> UserError:
        return UserError(kind=ErrorKind.INTERNAL, code="upload_timeout", job_id=job.id)

    async def input_sources(self, job: Job) -> Any:
        return None

    async def result_urls(self, job: Job) -> list[str] | None:
        return list(job.result_urls)

    def kinds(self, job_id: str) -> list[str]:
        return [kind for kind, jid, _ in self.events if jid == job_id]


@dataclass
class Host:
    """A HostSession recording what happened to what it hosted."""

    hosted: list[str] = field(default_factory=list)
    withdrawn: bool = False
    bound_to: str | None = None

    async def host(self, data: bytes, content_type: str, filename: str) -> str:
        self.hosted.append(filename)
        return f"https://hosted.example/{filename}"

    async def withdraw(self) -> None:
        self.withdrawn = True

    def bind(self, job_id: str) -> None:
        self.bound_to = job_id

    def kept(self) -> list[str]:
        return []


@dataclass
class Conv:
    """A Conversation: who asked and where; what was posted publicly and privately."""

    surface: RecordingSurface
    requester: Requester = field(default_factory=lambda: ALICE)
    style: PlainStyle = field(default_factory=PlainStyle)
    host: Host = field(default_factory=Host)
    posted: list[Card] = field(default_factory=list)
    answers: list[Card | str] = field(default_factory=list)

    def check_place(self, config: GuildConfig | None) -> None:
        return None

    def image_host(self) -> Host:
        return self.host

    async def post_status(self, card: Card) -> dict[str, Any]:
        self.posted.append(card)
        self.surface.events.append(("card", card.footer or "", card))
        return {"status_id": f"s{len(self.posted)}"}

    async def answer(self, card: Card | str, *, files: Sequence[Any] = ()) -> None:
        self.answers.append(card)


@dataclass
class World:
    service: ChatService
    engine: JobEngine
    store: TrackedStore
    provider: ScriptedProvider
    surface: RecordingSurface
    clock: FakeClock

    async def final(self, job_id: str) -> Job:
        return await run_until_final(self.clock, self.store, job_id)


@dataclass
class Fetched:
    data: bytes


class ImageFetcher:
    """Serves one acceptable image for any URL (no network)."""

    async def fetch(self, url: str, *, max_bytes: int | None = None, any_type: bool = False) -> Any:
        return Fetched(png_bytes())


@pytest.fixture
async def world(db: Database, clock: FakeClock) -> AsyncIterator[World]:
    defaults = QuotaDefaults(default_limit=3, max_running=5, max_queued=5)
    store = TrackedStore(SqliteJobStore(db, clock, defaults))
    provider = ScriptedProvider(clock)
    engine = JobEngine(store, provider, clock=clock)  # type: ignore[arg-type]
    deps = ChatDeps(
        engine=engine,
        jobs=store,  # type: ignore[arg-type]
        quotas=SqliteQuotaAdmin(db, clock, defaults, 0.03),
        provider=provider,
        downloader=ImageFetcher(),  # type: ignore[arg-type]
        clock=clock,
    )
    service = ChatService(deps)
    surface = RecordingSurface()
    service.add_surface(surface)
    await engine.start()
    try:
        yield World(service, engine, store, provider, surface, clock)
    finally:
        await engine.close()


async def test_the_card_comes_after_admission_and_before_any_update(world: World) -> None:
    conv = Conv(world.surface)
    options = world.service.check("a red fox", count=2)
    job = await world.service.starter.start(conv, options)
    [card] = conv.posted
    # Nothing was waiting for this job: it had a provider slot at once, so the card
    # says it is generating, not waiting for a free slot...
    assert card.title == "🎨 Generating" and card.footer == f"Job {job.id}"
    final = await world.final(job.id)
    assert final.state is JobState.DONE and final.delivered == 2
    kinds = world.surface.kinds(job.id)
    # ...and the submit's own "generating" news is not edited in again: only progress.
    edits = [c for k, _, c in world.surface.events if k == "status"]
    assert all(c.progress is not None for c in edits), edits
    assert kinds[0] != "results" and kinds[-2:] == ["results", "done"]
    assert world.surface.events[0][0] == "card"  # before any edit of it
    [(_, _, (result, look_first, delivery))] = [
        e for e in world.surface.events if e[0] == "results"
    ]
    # Seen from the start in this process: nothing to look for; the card's reference is
    # there even though the engine read the job before it was stored.
    assert look_first is False and delivery["status_id"] == "s1"
    # The result post names nobody (the platform's mention does, once) and the done
    # card says the count once.
    assert "alice" not in (result.text or "") + result.title
    [done] = [c for k, jid, c in world.surface.events if k == "done"]
    assert [f.value for f in done.fields].count("2 images") == 1
    assert "2 images" not in next(f.value for f in done.fields if f.name == "Mode")
    assert world.surface.released == [job.id]  # the job ended: hosted inputs go


async def test_once_tasks_have_finished_a_starting_card_tells_the_usual_duration(
    world: World,
) -> None:
    first = await world.service.starter.start(Conv(world.surface), world.service.check("a fox"))
    await world.final(first.id)
    conv = Conv(world.surface)
    await world.service.starter.start(conv, world.service.check("a second fox"))
    [card] = conv.posted
    # The first task's duration is history now: the card estimates from it at once.
    assert card.title == "🎨 Generating" and card.eta_seconds is not None


async def test_a_refused_request_posts_nothing_and_says_one_wording(world: World) -> None:
    conv = Conv(world.surface)
    with pytest.raises(QuotaDenied) as refused:
        await world.service.starter.start(conv, world.service.check("too many", count=4))
    assert conv.posted == [] and world.surface.events == []
    said = wording.refusal(refused.value, conv.style, world.clock.now())
    assert said.startswith("This needs 4 images but you have 3 of 3 left today; more in")
    # The pre-check (before images are fetched) refuses with the same words.
    source = ImageSource.from_url("https://cdn.example/cat.png", ImageMeta(index=1))
    with pytest.raises(QuotaDenied) as early:
        await world.service.starter.start(
            conv, world.service.check("x", count=4, sources=[source]), [source]
        )
    assert wording.refusal(early.value, conv.style, world.clock.now()) == said
    assert conv.host.hosted == [] and conv.posted == []


async def test_hosted_inputs_are_withdrawn_on_refusal_and_bound_to_the_job(world: World) -> None:
    conv = Conv(world.surface)
    source = ImageSource.from_bytes(png_bytes(), "tiny.png")  # 16 px: repaired, so hosted
    options = world.service.check("bigger", count=1, sources=[source])
    job = await world.service.starter.start(conv, options, [source])
    assert conv.host.hosted and conv.host.bound_to == job.id and not conv.host.withdrawn
    # Now the quota is used up: the same request is refused after hosting.
    await world.service.starter.start(Conv(world.surface), world.service.check("b", count=2))
    refused = Conv(world.surface)
    with pytest.raises(QuotaDenied):
        await world.service.starter.submit(refused, options.to_request([]), notes=[])
    assert refused.posted == []


async def test_failures_show_the_true_cause_once_with_try_again(world: World) -> None:
    from bot.core.errors import SubmitUncertain

    world.provider.submit_errors.append(SubmitUncertain())
    conv = Conv(world.surface)
    job = await world.service.starter.start(conv, world.service.check("a cat"))
    final = await world.final(job.id)
    assert final.state is JobState.FAILED and final.delivered == 0
    [card] = [c for k, jid, c in world.surface.events if k == "failure" and jid == job.id]
    assert card.text is not None and card.text.count("charged") == 1
    assert "may have started" in card.text and "change the prompt" not in card.text
    assert [a.kind for a in card.actions] == [ActionKind.RETRY]
    again = await world.service.actions.retry(conv, job.id)
    assert again.parent_job_id == job.id
    with pytest.raises(Exception, match="already tried again"):
        await world.service.actions.retry(conv, job.id)


async def test_admin_answers_use_plurals_and_are_checked_in_code(world: World) -> None:
    admin = Conv(world.surface, requester=ALICE.model_copy(update={"is_admin": True}))
    assert await world.service.admin.set_user_limit(admin, "bob", 1, Period.DAY) == (
        "bob may now make 1 image per day."
    )
    assert "2 extra images" in await world.service.admin.grant(admin, "bob", 2)
    with pytest.raises(Exception, match="Only admins"):
        await world.service.admin.set_budget(Conv(world.surface), 10)


def test_one_throttle_tuned_per_platform() -> None:
    chat, terminal = ProgressThrottle(CHAT), ProgressThrottle(TERMINAL)
    sending = ProgressUpdate(state=JobState.SUBMITTING)
    assert not chat.worth_showing("a", sending, 0.0)  # a chat edit for a blink is wasted
    assert terminal.worth_showing("a", sending, 0.0)  # a terminal line is not
    for shown in (chat, terminal):
        assert shown.worth_showing("j", ProgressUpdate(state=JobState.RUNNING, progress=10), 0)
    step = ProgressUpdate(state=JobState.RUNNING, progress=36)
    assert terminal.worth_showing("j", step, 0.5)  # 26 points: a new line at once
    assert not chat.worth_showing("j", step, 0.5)  # too soon for another edit
    assert chat.worth_showing("j", step, 11.0)


def test_cards_carry_no_platform_markup_of_their_own() -> None:
    request = GenerationRequest(prompt="a fox", count=1)
    error = UserError(
        kind=ErrorKind.PROVIDER_OUTAGE, code="submit_uncertain", job_id="k1", retry=True
    )
    card = cards.failure_card(request, error, PlainStyle())
    assert card.title == "❌ Failed" and "`k1`" in (card.text or "")
    assert wording.plural(1, "image") == "1 image" and wording.plural(4, "image") == "4 images"


async def test_chat_delivery_waits_for_a_card_only_in_the_process_posting_it(
    world: World,
) -> None:
    surface = RecordingSurface()
    delivery = ChatDelivery(surface, world.clock)
    stranger = ChatDelivery(surface, world.clock)
    job = Job(
        id="k3f9x2m7qa",
        requester=ALICE,
        provider="scripted",
        request=GenerationRequest(prompt="x"),
        delivery=delivery.card_marker(),
        created_at=0,
        updated_at=0,
    )
    # Another process (a restart) does not wait for a card nobody will post.
    await stranger.progress(job, ProgressUpdate(state=JobState.RUNNING, progress=5))
    assert surface.kinds(job.id) == ["status"]
    delivery.card_posted(job.id, {"status_id": "s9"})
    await delivery.progress(job, ProgressUpdate(state=JobState.RUNNING, progress=50))
    [_, (_, _, card)] = [e for e in surface.events if e[1] == job.id]
    assert card.progress == 50


async def test_a_card_that_cannot_be_posted_leaves_a_running_job_and_says_so(
    world: World,
) -> None:
    class Broken(Conv):
        async def post_status(self, card: Card) -> dict[str, Any]:
            raise ConnectionError("the chat platform is down")

    conv = Broken(world.surface)
    job = await world.service.starter.start(conv, world.service.check("a cat"))
    [said] = conv.answers
    assert isinstance(said, str) and "has started" in said and job.id in said
    final = await world.final(job.id)
    assert final.state is JobState.DONE and final.delivered == 1  # nothing waited for a card
    assert world.surface.kinds(job.id)[-2:] == ["results", "done"]


async def test_a_retried_post_still_goes_where_the_card_is(world: World) -> None:
    # The first post fails; the engine tries again with the job it read before the
    # card's reference was stored: the retry must still know the card (and look first).
    world.surface.refuse_posts = 1
    conv = Conv(world.surface)
    job = await world.service.starter.start(conv, world.service.check("a cat"))
    final = await world.final(job.id)
    assert final.state is JobState.DONE and final.delivery["status_id"] == "s1"
    posts = [e[2] for e in world.surface.events if e[0] == "results"]
    assert [p[2].get("status_id") for p in posts] == ["s1", "s1"]
    assert [p[1] for p in posts] == [False, True]  # the retry looks for an earlier post

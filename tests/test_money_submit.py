"""Issue 13, rules 1 and 2: never pay twice, never a new paid task behind the user's back.

Each test runs the real engine, SQLite store and HTTP adapter against the provider's
fake server, for all three providers.

Rule 1: a submit is sent again only when the answer proves no task exists (the
provider's error envelope with 400/401/402/403/422, a 429, a refused connection).
Anything else is uncertain: one task at most, the job fails, nothing is charged, and
the failure offers Try again.
Rule 2: a task that vanishes is never replaced; one that fails with a transient code is
replaced once only where the provider documents that failed tasks are free.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.chat import cards
from bot.chat.cards import status_card
from bot.chat.wording import failure_text as said
from bot.chat.wording import retry_note
from bot.console.delivery import STYLE
from bot.console.render import failure_text, progress_words, retry_command
from bot.core.clock import FakeClock
from bot.core.engine import failures
from bot.core.errors import SubmitUncertain
from bot.core.models import (
    ErrorKind,
    FailureCategory,
    GenerationRequest,
    Job,
    JobState,
    ProgressUpdate,
)
from bot.discord import embeds
from storage.sqlite.db import Database
from tests.engine_doubles import make_engine, request, requester
from tests.fakes.discord import FakeDiscord, FakeUser
from tests.fakes.discord.harness import Running, running_bot
from tests.fakes.providers import Fault
from tests.provider_engine import PROVIDERS, World, new_fake, provider_world
from tests.store_backends import space

UNCERTAIN = {
    "html-502": Fault.html(502),
    "500": Fault.http(500),
    "503": Fault.http(503),
    "504": Fault.http(504),
    "html-403": Fault.html(403),  # a 4xx without the provider's own envelope
    "malformed-200": Fault.malformed_json(),
    "reset": Fault.reset(),
    "disconnect": Fault.disconnect(),
    "timeout": Fault.hang(),
}


async def _failed_job(world: World, count: int = 2) -> tuple[str, JobState, ErrorKind | None]:
    job = await world.engine.submit(requester(), request(count=count))
    final = await world.final(job.id)
    return job.id, final.state, final.error_kind


@pytest.mark.parametrize("fault", list(UNCERTAIN), ids=list(UNCERTAIN))
@pytest.mark.parametrize("name", PROVIDERS)
async def test_an_answer_lost_after_the_task_was_made_is_never_resent(
    name: str, fault: str, db: Database, clock: FakeClock
) -> None:
    async with provider_world(name, db, clock) as world:
        # The provider creates (and would bill) the task; its answer is lost.
        world.fake.script_submit_fault(UNCERTAIN[fault].after_task())
        job_id, state, kind = await _failed_job(world)
        assert len(world.fake.requests_for("submit")) == 1
        assert len(world.fake.tasks) == 1  # exactly one task: nothing was sent twice
        assert (state, kind) == (JobState.FAILED, ErrorKind.PROVIDER_OUTAGE)
        assert await world.ledger(job_id) == {"reserve": 2, "charge": 0, "refund": 2}
        [error] = world.port.failed(job_id)
        assert error.code == "submit_uncertain" and error.retry
        assert "may have started this" in said(error)
        assert "not sent again so you are not billed twice" in said(error)
        assert "change the prompt" not in said(error)


@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_429_is_proof_of_no_task_and_is_sent_again(
    name: str, db: Database, clock: FakeClock
) -> None:
    async with provider_world(name, db, clock) as world:
        world.fake.complete_after = 1
        world.fake.script_submit_fault(Fault.rate_limited(1), Fault.rate_limited(1))
        job = await world.engine.submit(requester(), request(count=1))
        final = await world.final(job.id)
        assert final.state is JobState.DONE and final.delivered == 1
        assert len(world.fake.requests_for("submit")) == 3 and len(world.fake.tasks) == 1
        assert await world.ledger(job.id) == {"reserve": 1, "charge": 1, "refund": 0}


ENVELOPES = {  # the provider's own refusal: proof that nothing was created
    "apixo": (Fault.http(400, message="Invalid request"), ErrorKind.PROVIDER_CONFIG),
    "evolink": (Fault.http(400, code="invalid_request"), ErrorKind.PROVIDER_CONFIG),
    "dashscope": (Fault.http(400, code="DataInspectionFailed"), ErrorKind.USER_INPUT),
}


@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_documented_refusal_fails_at_once_without_a_resend(
    name: str, db: Database, clock: FakeClock
) -> None:
    fault, kind = ENVELOPES[name]
    async with provider_world(name, db, clock) as world:
        world.fake.script_submit_fault(fault)
        job_id, state, got = await _failed_job(world)
        assert (state, got) == (JobState.FAILED, kind)
        assert len(world.fake.requests_for("submit")) == 1 and world.fake.tasks == {}
        [error] = world.port.failed(job_id)
        assert error.code != "submit_uncertain" and not error.retry
        assert await world.ledger(job_id) == {"reserve": 2, "charge": 0, "refund": 2}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_refused_connection_sent_nothing_and_is_sent_again(
    name: str, db: Database, clock: FakeClock
) -> None:
    fake = new_fake(name)
    fake.listen_port = _closed_port()
    fake.complete_after = 1
    async with provider_world(name, db, clock, fake=fake, started=False) as world:
        job = await world.engine.submit(requester(), request(count=1))
        # The first submit finds nothing listening: the job waits for its retry.
        await world.until(lambda: world.engine.stats.submits == 1)
        await world.idle()
        assert (await world.store.get(job.id)).state is JobState.QUEUED  # type: ignore[union-attr]
        await fake.start()  # the provider is back, on the same port
        final = await world.final(job.id)
        assert final.state is JobState.DONE and world.engine.stats.submits == 2
        assert len(fake.requests_for("submit")) == 1 and len(fake.tasks) == 1


# --- rule 2: vanished and failed tasks -------------------------------------------------

GONE_CODES = {"apixo": "task_not_found", "evolink": "task_not_found", "dashscope": "task_expired"}


@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_vanished_task_is_never_replaced(name: str, db: Database, clock: FakeClock) -> None:
    async with provider_world(name, db, clock) as world:
        job = await world.engine.submit(requester(), request(count=2))
        await world.until(lambda: len(world.fake.tasks) == 1)
        world.fake.expire()  # not found (APIXO, EvoLink: 404; DashScope: UNKNOWN)
        final = await world.final(job.id)
        assert len(world.fake.requests_for("submit")) == 1 and len(world.fake.tasks) == 1
        assert final.state is JobState.FAILED
        assert final.error_kind is ErrorKind.PROVIDER_OUTAGE
        assert final.error_code == GONE_CODES[name]
        [error] = world.port.failed(job.id)
        assert "not started behind your back" in said(error) and error.retry
        assert "change the prompt" not in said(error)
        assert await world.ledger(job.id) == {"reserve": 2, "charge": 0, "refund": 2}


# Where the provider documents that a failed task costs nothing (docs/providers.md).
TRANSIENT_CODES = {
    "apixo": ("Timeout", True),  # "pre-charged for num_images, refunded for failures"
    "evolink": ("service_error", True),  # charged "based on the number of generated images"
    "dashscope": ("InternalError.Algo", False),  # nothing documented: never replaced
}


@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_transient_task_failure_is_retried_once_only_where_failures_are_free(
    name: str, db: Database, clock: FakeClock
) -> None:
    code, free = TRANSIENT_CODES[name]
    async with provider_world(name, db, clock) as world:
        assert world.provider.capabilities.failed_tasks_free is free
        job = await world.engine.submit(requester(), request(count=1))
        await world.until(lambda: len(world.fake.tasks) == 1)
        world.fake.fail(world.fake.task().id, code, "the model timed out")
        world.fake.complete_after = 1  # a second task, if any, succeeds
        final = await world.final(job.id)
        notes = [
            retry_note(u.retrying_after)
            for u, _ in world.port.updates_for(job.id)
            if u.retrying_after
        ]
        if free:
            assert len(world.fake.tasks) == 2
            assert final.state is JobState.DONE and final.delivered == 1
            assert notes and f"failed this attempt ({code})" in notes[-1]
            assert "trying once more at no cost" in notes[-1]
            assert await world.ledger(job.id) == {"reserve": 1, "charge": 1, "refund": 0}
        else:
            assert len(world.fake.tasks) == 1 and notes == []
            assert final.state is JobState.FAILED
            assert final.error_kind is ErrorKind.PROVIDER_OUTAGE
            assert await world.ledger(job.id) == {"reserve": 1, "charge": 0, "refund": 1}


@pytest.mark.parametrize("name", ["apixo", "evolink"])
async def test_a_second_transient_failure_is_not_retried_again(
    name: str, db: Database, clock: FakeClock
) -> None:
    code, _ = TRANSIENT_CODES[name]
    async with provider_world(name, db, clock) as world:
        world.fake.fail_new_tasks(code)
        job_id, state, kind = await _failed_job(world, count=1)
        assert len(world.fake.tasks) == 2  # the first, and one retry
        assert (state, kind) == (JobState.FAILED, ErrorKind.PROVIDER_OUTAGE)
        assert await world.ledger(job_id) == {"reserve": 1, "charge": 0, "refund": 1}


async def test_the_one_retry_is_remembered_across_a_restart(db: Database, clock: FakeClock) -> None:
    code, _ = TRANSIENT_CODES["apixo"]
    async with provider_world("apixo", db, clock) as world:
        world.fake.fail_new_tasks(code)
        job = await world.engine.submit(requester(), request(count=1))
        await world.until(lambda: len(world.fake.tasks) == 2)  # the first, and its retry
        await world.engine.close()  # a restart while the retry's task runs
        stored = await world.store.get(job.id)
        assert stored is not None and stored.task_attempts == 1
        world.engine = make_engine(world.store, world.provider, clock, world.port)
        await world.engine.start()
        final = await world.final(job.id)
        assert len(world.fake.tasks) == 2  # no third task after the restart
        assert (final.state, final.error_kind) == (JobState.FAILED, ErrorKind.PROVIDER_OUTAGE)
        assert await world.ledger(job.id) == {"reserve": 1, "charge": 0, "refund": 1}


# --- Try again: only on the user's word -------------------------------------------------


def _first_submit_uncertain() -> Callable[[GenerationRequest], None]:
    """A mock provider hook: the first submit's answer is lost, the next ones work."""
    uncertain = [True]

    def hook(job_request: GenerationRequest) -> None:
        if uncertain and uncertain.pop():
            raise SubmitUncertain("apixo submit: HTTP 502 (http_502)")

    return hook


async def _uncertain_failure_card(
    fake: FakeDiscord, run: Running, alice: FakeUser
) -> tuple[str, dict[str, Any], Job]:
    """Alice's /imagine whose submit was uncertain: its failure card and failed job."""
    asked = await fake.slash("imagine", alice, {"prompt": "a red fox", "count": 2})
    await fake.wait_callback(asked)
    card_id = await fake.wait_until(lambda: asked.original_message_id)
    card = fake.messages[card_id]
    await run.drive(lambda: bool(card.get("embeds")) and "❌" in card["embeds"][0]["title"])
    await run.finish()
    return card_id, card, await run.latest_job()


async def test_try_again_on_discord_starts_a_new_job_only_for_the_requester(
    fake: FakeDiscord, clock: FakeClock, tmp_path: Path, alice: FakeUser, bob: FakeUser
) -> None:
    async with running_bot(
        fake, tmp_path / "db.sqlite3", clock, failure_hook=_first_submit_uncertain()
    ) as run:
        card_id, card, failed = await _uncertain_failure_card(fake, run, alice)
        text = card["embeds"][0]["description"]
        assert "may have started this" in text and text.lower().count("charged") == 1
        retry_id = f"wanbot:retry:{failed.id}"
        assert retry_id in fake.custom_ids(card)  # the Try again button
        assert (await run.rt.quotas.usage(space(fake.guild_id), alice.id)).used == 0
        # Someone else cannot start it (and pay with alice's request).
        refused = await fake.click(bob, card_id, retry_id)
        await run.drive(lambda: refused.answer(ephemeral=True))
        assert "Only the person who asked" in refused.text()
        assert (await run.latest_job()).id == failed.id
        # Alice can: a new job, same request, quota checked and charged on delivery.
        again = await fake.click(alice, card_id, retry_id)
        await fake.wait_callback(again)
        [result] = await run.wait_results()
        await run.finish()
        retried = await run.latest_job()
        assert retried.id != failed.id and retried.parent_job_id == failed.id
        assert retried.request == failed.request and retried.state is JobState.DONE
        assert result["attachments"]
        assert (await run.rt.quotas.usage(space(fake.guild_id), alice.id)).used == 2
        assert retry_id not in fake.custom_ids(card)  # one click, one new job
        assert (await run.job(failed.id)).delivery["retried_as"] == retried.id  # for good


async def test_a_double_click_on_try_again_starts_one_job(
    fake: FakeDiscord, clock: FakeClock, tmp_path: Path, alice: FakeUser
) -> None:
    # Found untested in review: two clicks that arrive together must not start (and
    # charge) two jobs: the click handled second is refused.
    async with running_bot(
        fake, tmp_path / "db.sqlite3", clock, failure_hook=_first_submit_uncertain()
    ) as run:
        card_id, _, failed = await _uncertain_failure_card(fake, run, alice)
        retry_id = f"wanbot:retry:{failed.id}"
        clicks = [await fake.click(alice, card_id, retry_id) for _ in range(2)]
        await run.wait_results()
        await run.finish()
        refused = await run.drive(
            lambda: [c for c in clicks if "already tried again" in (c.text() or "")] or None
        )
        assert len(refused) == 1
        rows = await run.rt.db.fetchall("SELECT id FROM jobs WHERE parent_job_id = ?", (failed.id,))
        assert len(rows) == 1
        assert (await run.rt.quotas.usage(space(fake.guild_id), alice.id)).used == 2


def test_the_console_says_how_to_try_again() -> None:
    job_request = GenerationRequest(prompt="a red fox", aspect_ratio="16:9", count=2)
    error = failures.submit_uncertain("k3f9x2m7qa")
    card = cards.failure_card(job_request, error, STYLE)
    text = failure_text(card, error.kind, retry_command(job_request))
    assert 'enter `/imagine "a red fox" --aspect 16:9 -n 2`' in text
    assert text.lower().count("charged") == 1
    # Without the offer (an ordinary outage) there is no hint.
    plain = failures.for_category(FailureCategory.TRANSIENT, "http_500", job_id="k3f9x2m7qa")
    plain_card = cards.failure_card(job_request, plain, STYLE)
    assert "try again as a new job" not in failure_text(
        plain_card, plain.kind, retry_command(job_request)
    )


def test_the_status_card_and_console_say_a_failed_attempt_is_retried_at_no_cost() -> None:
    update = ProgressUpdate(state=JobState.SUBMITTING, retrying_after="Timeout")
    card = status_card(
        GenerationRequest(prompt="a red fox"), update, embeds.STYLE, 0, requester_id="7"
    )
    embed = embeds.embed(card)
    [notes] = [field.value for field in embed.fields if field.name == "Notes"]
    assert notes is not None and "failed this attempt (Timeout)" in notes
    card = cards.status_card(
        GenerationRequest(prompt="a red fox"), update, STYLE, 0.0, requester_id="u"
    )
    assert "trying once more at no cost" in progress_words(card)

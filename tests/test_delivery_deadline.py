"""Issue 13, rule 7: delivery has a deadline. A result upload Discord never answers is
given up on after DELIVERY_ATTEMPT_TIMEOUT_SECONDS and tried again; after
DELIVERY_DEADLINE_SECONDS (or the last try) the job fails, is refunded, and its user's
running slot is free for their next job. Fake time only: the fake Discord hangs the
uploads, the injected clock runs the deadlines."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from bot.chat.delivery import ChatDelivery
from bot.console.delivery import ConsoleSurface
from bot.console.views import ChatView
from bot.core.clock import FakeClock
from bot.core.engine import EngineConfig, JobEngine
from bot.core.models import ErrorKind, GenerationRequest, JobState, Requester
from storage.sqlite.db import Database
from tests.engine_doubles import (
    Script,
    ScriptedProvider,
    eventually,
    ledger,
    make_store,
    run_until_final,
)
from tests.fakes.discord import RecordedRequest
from tests.reliability.audit import check_money, failure_shown, kind_shown, result_messages
from tests.reliability.flows import everyone_told, imagine, job_for
from tests.reliability.world import open_world

RESULTS_POST = r"/channels/\d+/messages"


def is_upload(request: RecordedRequest) -> bool:
    return bool(request.files)


@pytest.mark.parametrize(
    ("deadline", "tries"), [(600.0, 3), (200.0, 2)], ids=["three-tries", "total-deadline"]
)
async def test_a_hung_upload_is_retried_then_failed_refunded_and_the_slot_freed(
    tmp_path: Path, clock: FakeClock, deadline: float, tries: int
) -> None:
    async with open_world(
        tmp_path,
        clock,
        max_running_jobs_per_user=1,
        delivery_attempt_timeout_seconds=120.0,
        delivery_deadline_seconds=deadline,
    ) as world:
        fake = world.fake
        fake.hang_next("POST", RESULTS_POST, times=tries, when=is_upload)
        alice = fake.add_user("alice")
        first = await imagine(world, alice, prompt="a paper boat")
        second = await imagine(world, alice, prompt="a paper plane")
        jobs = await world.drive(lambda: everyone_told(world))
        hung_job, next_job = await job_for(world, first), await job_for(world, second)
        assert hung_job is not None and next_job is not None
        assert len(fake.hung) == tries  # each try was one upload, never answered
        assert [len(r.files) for r in fake.hung] == [1] * tries
        # Retried after the per-try timeout, and given up within the total deadline.
        waits = [b.clock_at - a.clock_at for a, b in zip(fake.hung, fake.hung[1:], strict=False)]
        assert all(120.0 <= w <= 130.0 for w in waits), waits
        assert hung_job.state is JobState.FAILED and hung_job.delivered == 0
        assert hung_job.error_kind is ErrorKind.INTERNAL
        assert hung_job.finished_at is not None
        first_try_at = fake.hung[0].clock_at + clock.now() - clock.monotonic()  # wall clock
        assert hung_job.finished_at - first_try_at <= deadline
        shown = failure_shown(fake, hung_job)
        assert shown is not None and kind_shown(shown) is ErrorKind.INTERNAL
        assert "Discord did not take the upload in time" in shown
        # The user's running slot was freed: their next job ran and was delivered.
        assert next_job.state is JobState.DONE and next_job.delivered == 1
        submits = world.apixo.requests_for("submit")
        assert len(submits) == 2
        await check_money(world.rt.db, fake, jobs)  # the hung job: charged 0, refunded 1


@pytest.mark.parametrize(
    "attempt_timeout",
    [120.0, 400.0],
    ids=["nonce-remembered", "nonce-forgotten"],  # Discord keeps nonces about 5 minutes
)
async def test_an_upload_stored_but_never_answered_is_found_not_posted_twice(
    tmp_path: Path, clock: FakeClock, attempt_timeout: float
) -> None:
    # Discord stores the post but its answer never comes: the retry finds that post (by
    # the nonce while Discord remembers it, after that in the channel's history) and
    # the job is delivered and charged once.
    async with open_world(
        tmp_path,
        clock,
        delivery_attempt_timeout_seconds=attempt_timeout,
        delivery_deadline_seconds=3 * attempt_timeout,
    ) as world:
        fake = world.fake
        fake.hang_next("POST", RESULTS_POST, when=is_upload, after_storing=True)
        interaction = await imagine(world, prompt="a paper crane")
        jobs = await world.drive(lambda: everyone_told(world))
        job = await job_for(world, interaction)
        assert job is not None and len(fake.hung) == 1
        assert job.state is JobState.DONE and job.delivered == 1
        assert len(result_messages(fake, job.id)) == 1
        uploads = [r for r in fake.find_requests("POST", RESULTS_POST) if is_upload(r)]
        assert len(uploads) == 1  # the retry looked before uploading again
        await check_money(world.rt.db, fake, jobs)


def is_done_edit(request: RecordedRequest) -> bool:
    titles = [e.get("title") for e in (request.json or {}).get("embeds") or []]
    return "✅ Done" in titles


async def test_a_hung_status_edit_after_the_post_never_fails_a_posted_job(
    tmp_path: Path, clock: FakeClock
) -> None:
    # The images are on Discord; only the status card's last edit hangs, every time.
    # That edit is cosmetic: the job is delivered and charged, not failed and refunded
    # with "Discord did not take the upload" under images the user can see.
    async with open_world(tmp_path, clock, delivery_attempt_timeout_seconds=120.0) as world:
        fake = world.fake
        fake.hang_next("PATCH", r"/.*/messages/\d+", times=10, when=is_done_edit)
        interaction = await imagine(world, prompt="a paper lantern")
        jobs = await world.drive(lambda: everyone_told(world))
        job = await job_for(world, interaction)
        assert job is not None and fake.hung
        assert job.state is JobState.DONE and job.delivered == 1
        assert len(result_messages(fake, job.id)) == 1
        await check_money(world.rt.db, fake, jobs)


# --- the console ---------------------------------------------------------------------


async def test_a_console_save_that_hangs_is_given_up_refunded_and_leaves_no_file(
    tmp_path: Path, db: Database, clock: FakeClock
) -> None:
    # A stuck disk (here a FIFO nobody reads, where the first image's file is written):
    # each try is given up after the per-try timeout, the job fails and is refunded,
    # the user's next job runs, and the abandoned writes leave no image behind when the
    # disk comes back (an image the ledger says was refunded).
    out = tmp_path / "out"
    out.mkdir()
    lines: list[str] = []
    port = ChatDelivery(ConsoleSurface(out, ChatView(lines.append)), clock)
    store = make_store(db, clock)
    provider = ScriptedProvider(clock, Script(duration=10.0))
    engine = JobEngine(
        store,
        provider,
        clock=clock,
        config=EngineConfig(max_running_per_user=1, deliver_attempt_timeout=120.0),
    )
    engine.register_delivery("console", port)
    await engine.start()
    local = Requester(platform="console", user_id="local")
    reader: int | None = None
    try:
        hung = await engine.submit(local, GenerationRequest(prompt="a paper boat"))
        stuck = out / f"{hung.id}_1.png.part"
        os.mkfifo(stuck)  # opening it to write blocks until someone reads
        after = await engine.submit(local, GenerationRequest(prompt="a paper plane"))
        failed = await run_until_final(clock, store, hung.id)
        assert failed.state is JobState.FAILED and failed.error_kind is ErrorKind.INTERNAL
        assert await ledger(db, hung.id) == {"reserve": 1, "charge": 0, "refund": 1}
        await eventually(lambda: any("did not finish saving" in line for line in lines))
        [told] = [line for line in lines if "did not finish saving" in line]
        assert told.startswith(f"[{hung.id}]") and told.count("You were not charged.") == 1
        done = await run_until_final(clock, store, after.id)  # the slot was freed
        assert done.state is JobState.DONE and (out / f"{after.id}_1.png").is_file()
    finally:
        await engine.close()
        if os.path.exists(out / f"{hung.id}_1.png.part"):
            reader = os.open(out / f"{hung.id}_1.png.part", os.O_RDONLY | os.O_NONBLOCK)
        await asyncio.get_running_loop().shutdown_default_executor()  # the writes end
        if reader is not None:
            os.close(reader)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(hung.id)) == []

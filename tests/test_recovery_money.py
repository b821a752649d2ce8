"""Issue 13, rule 5: a job recovered in DELIVERING looks for an earlier post before
downloading anything, and in every recovery path the images charged are the images
actually posted. Real WanBot and Runtime against the fake Discord and fake APIXO."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.chat.delivery import ChatDelivery
from bot.console.delivery import ConsoleSurface
from bot.console.views import ChatView
from bot.core.clock import FakeClock
from bot.core.engine import EngineConfig, JobEngine
from bot.core.models import GenerationRequest, Job, JobState, Requester
from storage.sqlite.db import Database
from tests.engine_doubles import (
    PostThenHang,
    Script,
    ScriptedProvider,
    eventually,
    ledger,
    make_store,
    png_bytes,
    run_until_final,
)
from tests.fakes.discord import FakeDiscord
from tests.fakes.providers import FakeApixo
from tests.reliability.audit import check_money, delivered_images, result_posts
from tests.reliability.flows import imagine, job_for
from tests.reliability.world import World, running_world, world_settings


async def post_then_crash(world: World, job_id_box: list[str]) -> None:
    """Results are posted, then the process dies before recording it (its delivery task
    is cancelled: no grace period, as after a SIGKILL)."""
    hang = PostThenHang(world.bot.delivery)
    await world.drive(lambda: bool(hang.jobs))
    job_id_box.extend(hang.jobs)
    hang.crash()
    await world.settle()


@pytest.mark.parametrize("partial", [False, True], ids=["all-posted", "one-of-two-posted"])
async def test_a_recovered_delivery_finds_the_post_before_downloading(
    tmp_path: Path, clock: FakeClock, partial: bool
) -> None:
    async with (
        FakeDiscord(clock=clock) as fake,
        FakeApixo(complete_after=None) as apixo,
    ):
        settings = world_settings(tmp_path, apixo)
        posted: list[str] = []
        async with running_world(fake, apixo, settings, clock) as first:
            interaction = await imagine(first, prompt="a lighthouse at dusk", count=2)
            task = await first.drive(lambda: next(iter(apixo.tasks.values()), None))
            apixo.complete(task.id)
            if partial:
                apixo.break_result(task.id, 1)  # the first process could post 1 of 2
            await post_then_crash(first, posted)
            job = await job_for(first, interaction)
            assert job is not None and job.state is JobState.DELIVERING
        on_discord = delivered_images(fake, job.id)
        assert on_discord == (1 if partial else 2)
        downloads_before = len(apixo.requests_for("result"))
        posts_before = result_posts(fake, job.id)
        restart = fake.last_seq

        async with running_world(fake, apixo, settings, clock) as second:
            done = await second.drive(lambda: second_job_final(second, job.id), limit=3600.0)
            await second.settle()
            # Nothing was downloaded again: the post was found first.
            assert len(apixo.requests_for("result")) == downloads_before
            assert result_posts(fake, job.id) == posts_before == 1
            assert done.state is JobState.DONE
            assert done.delivered == on_discord  # charged = what Discord shows
            after = [r for r in fake.requests if r.seq > restart]
            assert any(r.matches("GET", r"/channels/\d+/messages") for r in after)
            await check_money(second.rt.db, fake, [done])
            charge = await second.rows(
                "SELECT images FROM ledger WHERE job_id = ? AND kind = 'charge'", (job.id,)
            )
            assert charge == [(on_discord,)]


async def second_job_final(world: World, job_id: str) -> Job | None:
    job = await world.job(job_id)
    return job if job.state.final else None


async def test_a_recovered_delivery_without_a_post_downloads_and_posts_once(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The other recovery path: nothing was posted before the crash (the downloads hung),
    so the job is downloaded and posted after the restart, and charged what is posted."""
    async with (
        FakeDiscord(clock=clock) as fake,
        FakeApixo(complete_after=None) as apixo,
    ):
        settings = world_settings(tmp_path, apixo)
        async with running_world(fake, apixo, settings, clock) as first:
            interaction = await imagine(first, prompt="a quiet harbour", count=2)
            task = await first.drive(lambda: next(iter(apixo.tasks.values()), None))
            apixo.complete(task.id)
            apixo.break_result(task.id, 1)  # one image is gone for good at the provider
            port = first.bot.delivery
            hung: list[asyncio.Task[Any]] = []

            async def never(job: Job, images: list[Any], notes: list[str]) -> Any:
                task = asyncio.current_task()
                assert task is not None
                hung.append(task)
                await asyncio.Event().wait()

            port.deliver = never  # type: ignore[method-assign]
            await first.drive(lambda: bool(hung))
            job = await job_for(first, interaction)
            assert job is not None and job.state is JobState.DELIVERING
            for running in hung:  # the crash
                running.cancel()
            await first.settle()
        async with running_world(fake, apixo, settings, clock) as second:
            done = await second.drive(lambda: second_job_final(second, job.id))
            await second.settle()
            assert done.state is JobState.DONE and done.delivered == 1
            assert delivered_images(fake, job.id) == 1 and result_posts(fake, job.id) == 1
            await check_money(second.rt.db, fake, [done])


async def test_a_console_job_recovered_in_delivering_keeps_the_files_it_saved(
    tmp_path: Path, db: Database, clock: FakeClock
) -> None:
    # The console saved both images, then the process died before recording it. After
    # the restart the provider's links are dead: the files are found before anything is
    # downloaded, and the job is charged for them (not refunded beside saved images).
    out = tmp_path / "out"
    store = make_store(db, clock)
    now = clock.now()
    job = await store.admit(
        Job(
            id="consolejob",
            requester=Requester(platform="console", user_id="local"),
            provider="scripted",
            request=GenerationRequest(prompt="a red fox", count=2),
            created_at=now,
            updated_at=now,
        )
    )
    urls = ["https://results.example/1.png", "https://results.example/2.png"]
    for old, new, fields in (
        (JobState.QUEUED, JobState.SUBMITTING, {}),
        (JobState.SUBMITTING, JobState.RUNNING, {"task_id": "t1"}),
        (JobState.RUNNING, JobState.DELIVERING, {"result_urls": urls}),
    ):
        assert await store.transition(job.id, [old], new, **fields) is not None
    out.mkdir()
    for number in (1, 2):
        (out / f"{job.id}_{number}.png").write_bytes(png_bytes())
    provider = ScriptedProvider(clock, Script(duration=10.0))
    provider.broken_urls.update(urls)
    engine = JobEngine(store, provider, clock=clock, config=EngineConfig())
    lines: list[str] = []
    port = ChatDelivery(ConsoleSurface(out, ChatView(lines.append)), clock)
    engine.register_delivery("console", port)
    await engine.start()
    try:
        # The look is real work on a thread: let it finish before fake time moves on
        # (a jump past the delivery timeout would fail the job in a way no real run does).
        # (A progress line may come first: wait for the job to be let go, found posted.)
        await eventually(lambda: engine.active_count == 0, timeout=20, what="the files found")
        final = await run_until_final(clock, store, job.id)
    finally:
        await engine.close()
    assert final.state is JobState.DONE and final.delivered == 2
    assert provider.downloads == []  # looked for the files before downloading anything
    rows = await ledger(db, job.id)
    assert rows["charge"] == 2 and rows.get("refund", 0) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{job.id}_1.png", f"{job.id}_2.png"]

"""Result buttons (reroll, edit one image, delete, info) and /show, /jobs, /cancel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.core.clock import FakeClock
from bot.core.models import Job, JobState
from tests.fakes.discord import FakeDiscord, FakeUser
from tests.fakes.discord.harness import Running, running_bot
from tests.image_corpus import solid
from tests.store_backends import space


async def made(
    run: Running, user: FakeUser, prompt: str = "a red fox", count: int = 2
) -> tuple[Job, dict[str, Any]]:
    await run.fake.slash("imagine", user, {"prompt": prompt, "count": count})
    [message] = await run.wait_results()
    await run.finish()
    return await run.latest_job(), message


async def test_reroll_makes_a_new_job_for_the_clicker_in_the_same_thread(
    run: Running, fake: FakeDiscord, alice: FakeUser, bob: FakeUser
) -> None:
    job, message = await made(run, alice)
    click = await fake.click(bob, message["id"], f"wanbot:reroll:{job.id}")
    await fake.wait_callback(click)
    assert click.callback_type == 5
    await run.drive(lambda: len(run.result_messages()) == 2)
    await run.finish()
    again = await run.latest_job()
    assert again.parent_job_id == job.id and again.requester.user_id == bob.id
    assert again.request.prompt == job.request.prompt and again.request.count == 2
    [second] = run.result_messages(again.id)
    assert second["channel_id"] == message["channel_id"]  # the thread of the first job


async def test_reroll_of_an_image_edit_fetches_the_inputs_again(
    run: Running, fake: FakeDiscord, alice: FakeUser
) -> None:
    photo = fake.upload(solid((640, 480), "JPEG"), "photo.jpg")
    await fake.slash("imagine", alice, {"prompt": "warmer", "image1": photo})
    [message] = await run.wait_results()
    await run.finish()
    job = await run.latest_job()
    cdn = rf"/attachments/{fake.general.id}/{photo.id}/photo.jpg"
    fetched = len(fake.find_requests("GET", cdn))  # by the bot (checks), then the provider
    assert fetched == 2
    again = await fake.click(alice, message["id"], f"wanbot:reroll:{job.id}")
    await run.drive(lambda: len(run.result_messages()) == 2)
    await run.finish()
    reroll = await run.latest_job()
    assert reroll.parent_job_id == job.id and again.callback_type == 5
    assert [ref.url for ref in reroll.request.images] == [photo.url]
    assert len(fake.find_requests("GET", cdn)) == 2 * fetched  # checked again, then used
    # A day later Discord's link is dead: the user is told, nothing is started or charged.
    del fake.attachments[photo.id]
    tasks, usage = run.mock.task_count, await run.rt.quotas.usage(space(fake.guild_id), alice.id)
    expired = await fake.click(alice, message["id"], f"wanbot:reroll:{job.id}")
    await run.drive(lambda: expired.answer(ephemeral=True))
    assert "no longer available" in expired.text() and "attach them again" in expired.text()
    assert "Nothing was charged" in expired.text()
    await run.settle()
    assert (await run.latest_job()).id == reroll.id and run.mock.task_count == tasks
    assert await run.rt.quotas.usage(space(fake.guild_id), alice.id) == usage


async def test_edit_asks_for_a_prompt_and_uses_that_result_image(
    run: Running, fake: FakeDiscord, alice: FakeUser
) -> None:
    job, message = await made(run, alice)
    opened = await fake.click(alice, message["id"], f"wanbot:edit:{job.id}:1")
    submitted = await fake.fill_modal(opened, "make it night time")
    await fake.wait_callback(submitted)
    assert submitted.callback_type == 5
    await run.drive(lambda: len(run.result_messages()) == 2)
    await run.finish()
    edit = await run.latest_job()
    assert edit.parent_job_id == job.id and edit.request.prompt == "make it night time"
    second_image = message["attachments"][1]
    assert [ref.url for ref in edit.request.images] == [second_image["url"]]


async def test_delete_is_for_the_requester_or_an_admin(
    run: Running, fake: FakeDiscord, alice: FakeUser, bob: FakeUser
) -> None:
    job, message = await made(run, alice)
    refused = await fake.click(bob, message["id"], f"wanbot:delete:{job.id}")
    await run.drive(lambda: refused.answer(ephemeral=True))
    assert "Only the person who asked" in refused.text()
    assert message["id"] in fake.messages
    deleted = await fake.click(alice, message["id"], f"wanbot:delete:{job.id}")
    await fake.wait_until(lambda: message.get("deleted"))
    assert deleted.callback_type == 6 and deleted.answers == []
    _, other = await made(run, alice, "a second fox")
    other_job = await run.latest_job()
    await fake.click(fake.owner, other["id"], f"wanbot:delete:{other_job.id}")
    await fake.wait_until(lambda: other.get("deleted"))


async def test_info_shows_every_parameter_privately(
    run: Running, fake: FakeDiscord, alice: FakeUser, bob: FakeUser
) -> None:
    job, message = await made(run, alice)
    info = await fake.click(bob, message["id"], f"wanbot:info:{job.id}")
    await run.drive(lambda: info.answer(ephemeral=True))
    text = info.text()
    assert f"Job {job.id}" in text and str(job.task_id) in text
    assert "Provider: mock" in text and "Aspect ratio: 1:1" in text and "Count: 2" in text
    assert "2 images charged" in text


async def test_show_brings_back_a_card_and_jobs_lists_mine(
    run: Running, fake: FakeDiscord, alice: FakeUser, bob: FakeUser
) -> None:
    job, message = await made(run, alice)
    shown = await fake.slash("show", alice, {"job_id": job.id.upper()})
    await run.drive(lambda: shown.answer(ephemeral=True))
    card = shown.answer(ephemeral=True)
    assert card is not None
    assert [e["image"]["url"] for e in card["embeds"]] == [a["url"] for a in message["attachments"]]
    assert f"wanbot:edit:{job.id}:0" in FakeDiscord.custom_ids(card)
    missing = await fake.slash("show", alice, {"job_id": "nope"})
    await run.drive(lambda: missing.answer(ephemeral=True))
    assert "no job" in missing.text()
    listed = await fake.slash("jobs", alice)
    await run.drive(lambda: listed.answer(ephemeral=True))
    assert job.id in listed.text()
    nothing = await fake.slash("jobs", bob)
    await run.drive(lambda: nothing.answer(ephemeral=True))
    assert "No jobs yet" in nothing.text()


async def test_show_does_not_bring_deleted_results_back(
    run: Running, fake: FakeDiscord, alice: FakeUser, bob: FakeUser
) -> None:
    job, message = await made(run, alice)
    await fake.click(alice, message["id"], f"wanbot:delete:{job.id}")
    await fake.wait_until(lambda: message.get("deleted"))
    await run.settle()
    shown = await fake.slash("show", bob, {"job_id": job.id})
    await run.drive(lambda: shown.answer(ephemeral=True))
    card = shown.answer(ephemeral=True)
    assert card is not None and "were deleted" in shown.text()
    assert not [e for e in card["embeds"] if e.get("image")]  # not the provider's links
    # Removed by a moderator instead of the button: gone all the same.
    other, posted = await made(run, alice, "a second fox")
    await fake.delete_message(posted["id"])
    again = await fake.slash("show", bob, {"job_id": other.id})
    await run.drive(lambda: again.answer(ephemeral=True))
    assert "were deleted" in again.text()


async def test_cancel_stops_a_running_job_and_refunds_it(
    fake: FakeDiscord, clock: FakeClock, tmp_path: Path, alice: FakeUser, bob: FakeUser
) -> None:
    async with running_bot(fake, tmp_path / "db.sqlite3", clock, latency=600) as run:
        started = await fake.slash("imagine", alice, {"prompt": "a slow cat"})
        await fake.wait_callback(started)
        await run.drive(lambda: run.busy.count == 0 and run.rt.engine.active_count == 1)
        job = await run.latest_job()
        intruder = await fake.slash("cancel", bob, {"job_id": job.id})
        await run.drive(lambda: intruder.answer(ephemeral=True))
        assert "Only the person who started a job" in intruder.text()
        assert (await run.job(job.id)).state is not JobState.CANCELLED
        cancel = await fake.slash("cancel", alice, {"job_id": job.id})
        await run.drive(lambda: cancel.answer(ephemeral=True))
        assert "is cancelled" in cancel.text()
        status = fake.messages[started.original_message_id]
        await run.drive(lambda: status["embeds"][0]["title"].startswith("🚫"))
        assert (await run.job(job.id)).state is JobState.CANCELLED
        usage = await run.rt.quotas.usage(space(fake.guild_id), alice.id)
        assert usage.used == 0 and usage.in_flight == 0

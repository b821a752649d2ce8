"""/imagine end to end: the real discord.py client, the fake Discord, the real Runtime
(engine, SQLite, quotas) and the mock provider, all on one fake clock."""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any

import pytest

from bot.chat.meta import ChatMeta
from bot.core.clock import FakeClock
from bot.core.errors import ShuttingDown
from bot.core.models import (
    FailureCategory,
    GenerationRequest,
    GuildConfig,
    JobState,
    ProviderFailure,
)
from bot.discord.bot import YOUNG_GENERATION
from tests.fakes.discord import ATTACH_FILES, CREATE_PUBLIC_THREADS, FakeDiscord, FakeUser
from tests.fakes.discord.harness import Running, running_bot
from tests.image_corpus import solid
from tests.reliability.flows import finish_every_task
from tests.reliability.world import open_world
from tests.store_backends import space

EPHEMERAL = 64


def title(message: dict[str, Any]) -> str:
    return str(message["embeds"][0].get("title", "")) if message.get("embeds") else ""


def field(message: dict[str, Any], name: str) -> str | None:
    for embed in message.get("embeds") or []:
        for item in embed.get("fields") or []:
            if item["name"] == name:
                return str(item["value"])
    return None


def image_pool_work(run: Running, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the functions the runtime's image pool runs from now on."""
    pool = run.rt.image_executor
    real_submit = pool.submit
    ran: list[str] = []

    def submit(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        ran.append(getattr(getattr(fn, "func", fn), "__name__", "?"))
        return real_submit(fn, *args, **kwargs)

    monkeypatch.setattr(pool, "submit", submit)
    return ran


def hosted_inputs(fake: FakeDiscord) -> list[dict[str, Any]]:
    return [m for m in fake.messages_in(fake.general) if m["content"].startswith("Input image")]


async def test_text_to_image_is_deferred_at_once_and_delivered_in_a_thread(
    run: Running, fake: FakeDiscord, alice: FakeUser
) -> None:
    interaction = await fake.slash("imagine", alice, {"prompt": "a red fox in snow", "count": 2})
    await fake.wait_callback(interaction)
    assert interaction.callback_type == 5  # deferred (public "thinking") first
    assert interaction.ack_real_seconds is not None and interaction.ack_real_seconds < 3.0
    [message] = await run.wait_results()
    job = await run.latest_job()
    assert len(message["attachments"]) == 2
    assert all(a["filename"].startswith(f"wan_{job.id}_") for a in message["attachments"])
    thread = fake.channels[message["channel_id"]]  # a thread started on the status message
    assert thread.is_thread and thread.id == interaction.original_message_id
    assert thread.parent_id == fake.general.id
    assert all(e["image"]["url"].startswith(fake.base_url) for e in message["embeds"])
    assert message["content"] == f"<@{alice.id}>"
    buttons = FakeDiscord.custom_ids(message)
    assert f"wanbot:reroll:{job.id}" in buttons and f"wanbot:edit:{job.id}:1" in buttons
    status = fake.messages[interaction.original_message_id]
    await run.drive(lambda: title(status).startswith("✅"))
    done = await run.job(job.id)
    assert done.state is JobState.DONE and done.delivered == 2
    assert done.delivery["thread_id"] == thread.id
    assert done.delivery["result_message_ids"] == [message["id"]]
    assert not fake.find_requests("GET", r"/channels/\d+/messages")  # no look-up: first post
    assert fake.errors == []


async def test_a_command_in_a_thread_delivers_in_that_thread(
    run: Running, fake: FakeDiscord, alice: FakeUser
) -> None:
    thread = await fake.add_thread(fake.general, "ideas", alice)
    await fake.wait_until(lambda: run.bot.get_channel(int(thread.id)))
    await fake.slash("imagine", alice, {"prompt": "a lighthouse"}, channel=thread)
    [message] = await run.wait_results()
    assert message["channel_id"] == thread.id
    assert len(fake.threads()) == 1  # no second thread


async def test_hosted_inputs_go_when_another_process_ends_the_job(
    run: Running, fake: FakeDiscord, alice: FakeUser
) -> None:
    # The copy hosted for the provider is stored with the job: a process that did not
    # host it (another one sharing the database, or this one after a restart) removes it.
    surface = run.bot.surface
    forgotten: list[str] = []
    real_keep = surface.inputs.keep

    def keep(job_id: str, messages: list[Any]) -> None:
        forgotten.append(job_id)  # as if another process had admitted the job

    surface.inputs.keep = keep  # type: ignore[method-assign]
    odd = fake.upload(solid((600, 600), "PNG", mode="RGBA"), "logo.png")  # repaired: hosted
    await fake.slash("imagine", alice, {"prompt": "a logo", "image1": odd})
    await run.wait_results()
    job = await run.latest_job()
    assert forgotten == [job.id]
    [hosted] = ChatMeta.of(job).hosted
    channel_id, message_id = hosted.split("/")
    assert channel_id == str(fake.general.id)
    await run.drive(lambda: hosted_inputs(fake) == [])
    assert fake.find_requests("DELETE", rf"/channels/{channel_id}/messages/{message_id}")
    surface.inputs.keep = real_keep  # type: ignore[method-assign]


async def test_image_to_image_downloads_repairs_and_hosts_the_input(
    run: Running, fake: FakeDiscord, alice: FakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool_work = image_pool_work(run, monkeypatch)
    good = fake.upload(solid((640, 480), "JPEG"), "photo.jpg")
    odd = fake.upload(solid((600, 600), "PNG", mode="RGBA"), "logo.png")  # alpha: repaired
    await fake.slash("imagine", alice, {"prompt": "combine them", "image1": good, "image2": odd})
    [result] = await run.wait_results()
    job = await run.latest_job()
    # The user is told what was changed, on the results as on the status card.
    note_fields = [f for e in result["embeds"] for f in e.get("fields", []) if f["name"] == "Notes"]
    assert note_fields and "transparency flattened" in note_fields[0]["value"]
    urls = [ref.url for ref in job.request.images]
    assert urls[0] == good.url  # accepted as it is: the provider fetches Discord's copy
    [upload] = [
        r
        for r in fake.find_requests("POST", rf"/channels/{fake.general.id}/messages")
        if r.files and r.json["content"].startswith("Input image")
    ]
    assert [a["url"] for a in upload.response["attachments"]] == [urls[1]]
    assert fake.find_requests("GET", rf"/attachments/{fake.general.id}/{odd.id}/logo.png")
    # The job has ended: the copy hosted for the provider is removed.
    await run.drive(lambda: hosted_inputs(fake) == [])
    assert fake.find_requests(
        "DELETE", rf"/channels/{fake.general.id}/messages/{upload.response['id']}"
    )
    # Pillow ran in the runtime's image pool, not the loop's default executor (DNS).
    assert pool_work.count("check_image") == 2


async def test_bad_options_are_refused_at_once_and_privately(
    run: Running, fake: FakeDiscord, alice: FakeUser
) -> None:
    pdf = fake.upload(b"%PDF-1.4 not an image", "doc.pdf", "application/pdf")
    interaction = await fake.slash(
        "imagine", alice, {"prompt": "x", "aspect": "7:3", "image1": pdf}
    )
    await fake.wait_callback(interaction)
    assert interaction.callback_type == 4  # answered, not deferred: no slow work happened
    answer = interaction.answer(ephemeral=True)
    assert answer is not None
    assert "aspect ratio 7:3" in answer["content"] and "not an image" in answer["content"]
    assert not fake.find_requests("GET", r"/attachments/.*")  # nothing downloaded
    assert await run.rt.jobs.user_jobs("discord", alice.id) == []


async def test_quota_denial_replaces_the_thinking_message_with_a_private_answer(
    fake: FakeDiscord, clock: FakeClock, tmp_path: Path, alice: FakeUser
) -> None:
    settings = {"default_user_limit": 1}
    async with running_bot(fake, tmp_path / "db.sqlite3", clock, settings=settings) as run:
        await fake.slash("imagine", alice, {"prompt": "first"})
        await run.wait_results()
        second = await fake.slash("imagine", alice, {"prompt": "second"})
        await run.drive(lambda: second.answer(ephemeral=True))
        assert second.callback_type == 5
        assert fake.find_requests("DELETE", r"/webhooks/\d+/.+/messages/@original")
        assert "used 1 of 1 image" in second.text() and "/usage" in second.text()
        jobs = await run.rt.jobs.user_jobs("discord", alice.id)
        assert len(jobs) == 1  # the refused request left nothing behind


async def test_outside_the_allowed_channels_is_refused_clearly(
    run: Running, fake: FakeDiscord, alice: FakeUser
) -> None:
    art = fake.add_channel("art")
    await run.rt.chat.configs.save(
        GuildConfig(guild_id=fake.guild_id, allowed_channel_ids=[art.id])
    )
    interaction = await fake.slash("imagine", alice, {"prompt": "a cat"})
    await fake.wait_callback(interaction)
    assert interaction.callback_type == 4 and f"<#{art.id}>" in interaction.text()
    await fake.slash("imagine", alice, {"prompt": "a cat"}, channel=art)
    [message] = await run.wait_results()
    assert fake.channels[message["channel_id"]].parent_id == art.id


async def test_missing_bot_permissions_are_explained_before_anything_is_spent(
    run: Running, fake: FakeDiscord, alice: FakeUser
) -> None:
    locked = fake.add_channel("locked", bot_deny=ATTACH_FILES | CREATE_PUBLIC_THREADS)
    await run.rt.chat.configs.get(
        space(fake.guild_id)
    )  # settings known: thread mode is checked too
    interaction = await fake.slash("imagine", alice, {"prompt": "a cat"}, channel=locked)
    await fake.wait_callback(interaction)
    text = interaction.text()
    assert interaction.callback_type == 4
    assert "Attach Files" in text and "Create Public Threads" in text
    assert await run.rt.jobs.user_jobs("discord", alice.id) == []


async def test_losing_permission_before_posting_fails_the_job_with_the_reason(
    run: Running, fake: FakeDiscord, alice: FakeUser
) -> None:
    interaction = await fake.slash("imagine", alice, {"prompt": "a cat"})
    await fake.wait_callback(interaction)
    job = await _job_once(run, fake, interaction)
    await fake.set_bot_deny(fake.general, ATTACH_FILES)
    status = fake.messages[interaction.original_message_id]
    await run.drive(lambda: title(status).startswith("❌"))
    failed = await run.job(job.id)
    assert failed.state is JobState.FAILED and failed.delivered == 0
    assert "permission" in status["embeds"][0]["description"]
    assert run.result_messages() == []
    report = await run.rt.quotas.usage(space(fake.guild_id), alice.id)
    assert report.used == 0 and report.in_flight == 0  # refunded


async def _job_once(run: Running, fake: FakeDiscord, interaction: Any) -> Any:
    await fake.wait_until(lambda: interaction.original_message_id)
    await fake.wait_until(
        lambda: title(fake.messages[interaction.original_message_id]).startswith(
            ("🚀", "⏳", "📨", "🎨")
        )
    )
    await run.settle()
    return await run.latest_job()


async def test_results_over_the_upload_limit_are_re_encoded_to_fit(
    run: Running, fake: FakeDiscord, alice: FakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool_work = image_pool_work(run, monkeypatch)
    fake.attachment_size_limit = 6000  # the mock's 512 px PNGs are ~10 kB
    await fake.slash("imagine", alice, {"prompt": "a detailed city"})
    [message] = await run.wait_results()
    [attachment] = message["attachments"]
    assert attachment["content_type"] == "image/jpeg" and attachment["size"] <= 6000
    assert "re-encoded" in str(message["embeds"][0].get("fields"))
    assert "fit_bytes" in pool_work
    await run.finish()
    assert (await run.latest_job()).delivered == 1


async def test_inline_mode_replies_to_the_status_in_the_channel(
    run: Running, fake: FakeDiscord, alice: FakeUser
) -> None:
    await run.rt.chat.configs.save(GuildConfig(guild_id=fake.guild_id, delivery_mode="inline"))
    interaction = await fake.slash("imagine", alice, {"prompt": "a boat"})
    [message] = await run.wait_results()
    assert message["channel_id"] == fake.general.id and fake.threads() == []
    assert message["message_reference"]["message_id"] == interaction.original_message_id


async def test_a_result_after_the_token_expired_is_posted_through_the_channel(
    fake: FakeDiscord, clock: FakeClock, tmp_path: Path, alice: FakeUser
) -> None:
    async with running_bot(fake, tmp_path / "db.sqlite3", clock, latency=20 * 60) as run:
        interaction = await fake.slash("imagine", alice, {"prompt": "a slow painting"})
        [message] = await run.wait_results()
        assert fake.clock.monotonic() - interaction.dispatched_clock > 15 * 60
        status = fake.messages[interaction.original_message_id]
        await run.drive(lambda: title(status).startswith("✅"))
        late = [r for r in fake.requests if r.clock_at - interaction.dispatched_clock > 15 * 60]
        assert late and not any(r.path.startswith("/webhooks/") for r in late)
        assert any(r.matches("PATCH", rf"/channels/\d+/messages/{status['id']}") for r in late)
        assert not [r for r in fake.requests if r.status == 401]  # never tried a dead token
        assert message["channel_id"] == interaction.original_message_id


async def test_an_unexpected_error_gets_an_apology_with_an_error_id(
    run: Running,
    fake: FakeDiscord,
    alice: FakeUser,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(run.rt.engine, "submit", broken)
    with caplog.at_level(logging.ERROR, logger="bot.discord.tree"):
        interaction = await fake.slash("imagine", alice, {"prompt": "a cat"})
        await run.drive(lambda: interaction.answer(ephemeral=True))
    text = interaction.text()
    assert "something went wrong on our side" in text
    error_id = text.split("`")[1]
    assert any(error_id in r.getMessage() for r in caplog.records)
    assert len(interaction.answers) >= 1 and interaction.answer(ephemeral=True) is not None


async def test_an_interaction_that_expired_before_the_ack_leaves_nothing_behind(
    run: Running,
    fake: FakeDiscord,
    alice: FakeUser,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.CALLBACK_WINDOW = -1.0  # every acknowledgement arrives too late
    with caplog.at_level(logging.INFO, logger="bot.discord.respond"):
        interaction = await fake.slash("imagine", alice, {"prompt": "a cat"})
        await run.drive(lambda: any("expired" in r.getMessage() for r in caplog.records))
    assert interaction.callback is None and interaction.answers == []
    assert await run.rt.jobs.user_jobs("discord", alice.id) == []
    assert fake.errors == []


@pytest.mark.parametrize(
    ("category", "code", "told"),
    [
        (FailureCategory.USER, "content_policy", "refused your prompt or image"),
        (FailureCategory.CONFIG, "insufficient_balance", "not your fault"),
    ],
)
async def test_failures_tell_the_true_cause(
    fake: FakeDiscord,
    clock: FakeClock,
    tmp_path: Path,
    alice: FakeUser,
    category: FailureCategory,
    code: str,
    told: str,
) -> None:
    def hook(request: GenerationRequest) -> ProviderFailure:
        return ProviderFailure(code=code, message="refused", category=category)

    async with running_bot(fake, tmp_path / "db.sqlite3", clock, failure_hook=hook) as run:
        interaction = await fake.slash("imagine", alice, {"prompt": "something"})
        await fake.wait_callback(interaction)
        status = fake.messages[await fake.wait_until(lambda: interaction.original_message_id)]
        await run.drive(lambda: title(status).startswith("❌"))
        assert told in status["embeds"][0]["description"]
        assert status["embeds"][0]["description"].count("not charged") == 1
        await run.finish()
        usage = await run.rt.quotas.usage(space(fake.guild_id), alice.id)
        assert usage.used == 0


async def test_discord_rate_limits_and_outages_while_posting_are_survived(
    run: Running, fake: FakeDiscord, alice: FakeUser
) -> None:
    fake.fail_next("POST", r"/channels/\d+/messages/\d+/threads", 429, retry_after=0.01)
    fake.fail_next("POST", r"/channels/\d+/messages", 503, code=0, message="upstream")
    await fake.slash("imagine", alice, {"prompt": "a storm"})
    [message] = await run.wait_results()
    await run.finish()
    statuses = [r.status for r in fake.requests if r.method == "POST" and "/channels/" in r.path]
    assert 429 in statuses and 503 in statuses
    assert (await run.latest_job()).state is JobState.DONE
    assert len(run.result_messages()) == 1 and message["attachments"]


async def test_results_still_arrive_when_the_status_message_was_deleted(
    run: Running, fake: FakeDiscord, alice: FakeUser
) -> None:
    interaction = await fake.slash("imagine", alice, {"prompt": "a quiet lake"})
    job = await _job_once(run, fake, interaction)
    await fake.delete_message(interaction.original_message_id)
    [message] = await run.wait_results(job.id)
    assert message["channel_id"] == fake.general.id and fake.threads() == []
    await run.finish()
    assert (await run.job(job.id)).state is JobState.DONE


async def test_a_blocked_user_is_refused_before_any_image_is_fetched(
    run: Running, fake: FakeDiscord, alice: FakeUser
) -> None:
    await run.rt.quotas.block(space(fake.guild_id), alice.id, "spam")
    odd = fake.upload(solid((600, 600), "PNG", mode="RGBA"), "logo.png")
    interaction = await fake.slash("imagine", alice, {"prompt": "x", "image1": odd})
    await run.drive(lambda: interaction.answer(ephemeral=True))
    assert "blocked" in interaction.text()
    assert not fake.find_requests("GET", r"/attachments/.*")
    assert not [m for m in fake.messages_in(fake.general) if m["attachments"]]  # none hosted


async def test_a_token_that_dies_while_images_are_prepared_is_not_needed(
    run: Running,
    fake: FakeDiscord,
    alice: FakeUser,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_fetch = run.rt.downloader.fetch

    async def slow_fetch(url: str, **kwargs: Any) -> Any:
        await clock.advance(16 * 60)  # the download outlives the interaction token
        return await real_fetch(url, **kwargs)

    monkeypatch.setattr(run.rt.downloader, "fetch", slow_fetch)
    photo = fake.upload(solid((640, 480), "JPEG"), "photo.jpg")
    interaction = await fake.slash("imagine", alice, {"prompt": "warmer", "image1": photo})
    [message] = await run.wait_results()
    status = fake.messages[message["channel_id"]]  # the thread hangs on the new status
    assert status["id"] != interaction.original_message_id
    assert status["content"] == f"<@{alice.id}>" and status["channel_id"] == fake.general.id


async def test_a_user_at_the_job_cap_is_refused_before_any_image_is_posted(
    fake: FakeDiscord, clock: FakeClock, tmp_path: Path, alice: FakeUser
) -> None:
    settings = {"max_running_jobs_per_user": 1, "max_queued_jobs_per_user": 0}
    async with running_bot(
        fake, tmp_path / "db.sqlite3", clock, settings=settings, latency=600
    ) as run:
        await fake.slash("imagine", alice, {"prompt": "a slow cat"})
        await run.drive(lambda: run.busy.count == 0 and run.mock.task_count == 1)
        odd = fake.upload(solid((600, 600), "PNG", mode="RGBA"), "logo.png")  # needs repair
        refused = await fake.slash("imagine", alice, {"prompt": "x", "image1": odd})
        await run.drive(lambda: refused.answer(ephemeral=True))
        assert "You already have 1 job running" in refused.text()
        assert not fake.find_requests("GET", r"/attachments/.*")  # not even downloaded
        assert hosted_inputs(fake) == []
        assert len(await run.rt.jobs.user_jobs("discord", alice.id)) == 1


async def test_a_refusal_after_hosting_deletes_the_hosted_copies(
    fake: FakeDiscord,
    clock: FakeClock,
    tmp_path: Path,
    alice: FakeUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = {"max_running_jobs_per_user": 1, "max_queued_jobs_per_user": 0}
    async with running_bot(
        fake, tmp_path / "db.sqlite3", clock, settings=settings, latency=600
    ) as run:
        await fake.slash("imagine", alice, {"prompt": "a slow cat"})
        await run.drive(lambda: run.busy.count == 0 and run.mock.task_count == 1)

        async def passes(*args: Any) -> None:
            return None  # a race: the precheck passed, then another job took the slot

        monkeypatch.setattr(run.rt.jobs, "precheck", passes)
        odd = fake.upload(solid((600, 600), "PNG", mode="RGBA"), "logo.png")
        refused = await fake.slash("imagine", alice, {"prompt": "x", "image1": odd})
        await run.drive(lambda: refused.answer(ephemeral=True))
        assert "You already have 1 job running" in refused.text()
        [upload] = [
            r
            for r in fake.find_requests("POST", rf"/channels/{fake.general.id}/messages")
            if r.files
        ]
        assert upload.ok and upload.json["content"].startswith("Input image")
        await run.settle()
        assert hosted_inputs(fake) == []  # deleted again
        assert fake.find_requests(
            "DELETE", rf"/channels/{fake.general.id}/messages/{upload.response['id']}"
        )


async def test_a_stopping_bot_says_so_and_charges_nothing(
    run: Running, fake: FakeDiscord, alice: FakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def stopping(*args: Any, **kwargs: Any) -> Any:
        raise ShuttingDown()

    monkeypatch.setattr(run.rt.engine, "submit", stopping)
    interaction = await fake.slash("imagine", alice, {"prompt": "a cat"})
    await run.drive(lambda: interaction.answer(ephemeral=True))
    assert "The bot is restarting" in interaction.text()
    assert interaction.original_message_id not in fake.messages  # no card left waiting


async def test_queued_cards_follow_their_queue_position(
    fake: FakeDiscord, clock: FakeClock, tmp_path: Path, alice: FakeUser
) -> None:
    settings = {"provider_concurrency": 1}
    async with running_bot(
        fake, tmp_path / "db.sqlite3", clock, settings=settings, latency=600
    ) as run:
        for jobs in (1, 2):
            await fake.slash("imagine", alice, {"prompt": f"job {jobs}"})
            await run.drive(
                lambda jobs=jobs: run.busy.count == 0 and run.rt.engine.active_count == jobs
            )
        first = await run.latest_job()
        third = await fake.slash("imagine", alice, {"prompt": "job 2"})
        card = fake.messages[await fake.wait_until(lambda: third.original_message_id)]
        await run.drive(lambda: field(card, "Queue") == "#2")
        await clock.advance(15)
        # The running job ends (no duration learnt, so no estimate changes): the second
        # starts and the third moves up while it waits.
        await run.rt.engine.cancel(first.id, first.requester)
        await run.drive(lambda: field(card, "Queue") != "#2" or not title(card).startswith("⏳"))
        assert title(card).startswith("⏳") and field(card, "Queue") == "#1"


# --- invisible and control characters (nothing is paid for an empty request) ----------


async def test_a_prompt_of_zero_width_characters_is_refused_like_an_empty_one(
    run: Running, fake: FakeDiscord, alice: FakeUser
) -> None:
    invisible = "\u200b\u200c\u200d\u2060\ufeff"
    interaction = await fake.slash("imagine", alice, {"prompt": invisible, "count": 2})
    await fake.wait_callback(interaction)
    answer = interaction.answer(ephemeral=True)
    assert answer is not None and "the prompt is empty" in answer["content"]
    assert await run.rt.jobs.user_jobs("discord", alice.id) == []
    usage = await run.rt.quotas.usage(space(fake.guild_id), alice.id)
    assert (usage.used, usage.in_flight) == (0, 0)


async def test_control_characters_never_reach_the_provider_or_a_message(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_world(tmp_path, clock) as world:
        alice = world.fake.add_user("alice")
        prompt = "a red\x00 fox\x1b[2J in\nsnow\u202e"
        options = {"prompt": prompt, "negative": "blur\x00ry\x07"}
        await world.fake.slash("imagine", alice, options)
        jobs = await world.drive(lambda: finish_every_task(world))
        assert jobs is not None and [job.state for job in jobs] == [JobState.DONE]
        [submit] = world.apixo.requests_for("submit")
        assert submit.json["input"]["prompt"] == "a red fox[2J in snow"
        assert submit.json["input"]["negative_prompt"] == "blurry"
        assert b"\\u0000" not in submit.body and b"\x00" not in submit.body
        for message in world.fake.messages.values():
            shown = repr(message["content"]) + repr(message["embeds"])
            assert "\\x00" not in shown and "\\x1b" not in shown and "\\u202e" not in shown


async def test_once_ready_start_up_objects_are_frozen_and_young_passes_are_rarer(
    run: Running,
) -> None:
    # Most of a job's objects die young: a larger young generation frees them before a
    # collection pass ever walks them (bot/discord/bot.py, measured in bench scale).
    gc.set_threshold(700, 10, 10)
    frozen = gc.get_freeze_count()
    await run.bot.on_ready()
    assert gc.get_threshold() == (YOUNG_GENERATION, 10, 10)
    assert gc.get_freeze_count() >= frozen > 0

"""Editing existing images: reply + mention, the "Edit image" message menu, and what
happens when the Message Content intent is off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.core.clock import FakeClock
from tests.fakes.discord import FakeDiscord, FakeUser
from tests.fakes.discord.harness import Running, running_bot
from tests.image_corpus import solid


async def test_reply_with_a_mention_edits_the_replied_image(
    run: Running, fake: FakeDiscord, alice: FakeUser, bob: FakeUser
) -> None:
    photo = fake.upload(solid((800, 600), "JPEG"), "cat.jpg")
    original = await fake.post_user_message(bob, "my cat", attachments=[photo])
    reply = await fake.post_user_message(
        alice, "give it a hat", reply_to=original["id"], mention_bot=True
    )
    [message] = await run.wait_results()
    await run.finish()
    job = await run.latest_job()
    assert job.request.prompt == "give it a hat" and job.requester.user_id == alice.id
    assert [ref.url for ref in job.request.images] == [photo.url]
    status = fake.replies_to(reply["id"])[0]
    assert message["channel_id"] == status["id"]  # results in a thread on the bot's reply


async def test_a_reply_whose_submit_crashes_leaves_no_waiting_card(
    run: Running, fake: FakeDiscord, alice: FakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_submit(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database is locked")  # not a WanbotError: a bug or an outage

    monkeypatch.setattr(run.rt.engine, "submit", broken_submit)
    photo = fake.upload(solid((800, 600), "JPEG"), "cat.jpg")
    original = await fake.post_user_message(alice, "my cat", attachments=[photo])
    reply = await fake.post_user_message(
        alice, "give it a hat", reply_to=original["id"], mention_bot=True
    )

    def replies() -> list[dict[str, Any]]:
        return fake.replies_to(reply["id"])

    [apology] = await run.drive(lambda: [m for m in replies() if "error id" in m["content"]])
    assert "went wrong on our side" in apology["content"]
    await run.settle()
    assert replies() == [apology]
    # Nothing public before the job is stored: no status card was ever posted.
    posts = fake.find_requests("POST", rf"/channels/{fake.general.id}/messages")
    assert not [r for r in posts if (r.json or {}).get("embeds")]


async def test_reply_without_the_referenced_message_fetches_it(
    run: Running, fake: FakeDiscord, alice: FakeUser
) -> None:
    photo = fake.upload(solid((800, 600), "PNG"), "sketch.png")
    original = await fake.post_user_message(alice, "sketch", attachments=[photo])
    await fake.post_user_message(
        alice, "color it in", reply_to=original["id"], mention_bot=True, include_referenced=False
    )
    await run.wait_results()
    assert fake.find_requests("GET", rf"/channels/{fake.general.id}/messages/{original['id']}")
    assert [ref.url for ref in (await run.latest_job()).request.images] == [photo.url]


async def test_a_reply_without_images_gets_a_helpful_answer(
    run: Running, fake: FakeDiscord, alice: FakeUser
) -> None:
    original = await fake.post_user_message(alice, "just words")
    reply = await fake.post_user_message(
        alice, "make it pretty", reply_to=original["id"], mention_bot=True
    )

    message = await run.drive(lambda: next(iter(fake.replies_to(reply["id"])), None))
    assert "found no image" in message["content"]
    assert await run.rt.jobs.user_jobs("discord", alice.id) == []


async def test_messages_not_for_the_bot_are_ignored(
    run: Running, fake: FakeDiscord, alice: FakeUser
) -> None:
    photo = fake.upload(solid((800, 600), "PNG"), "a.png")
    original = await fake.post_user_message(alice, "look", attachments=[photo])
    await fake.post_user_message(alice, "nice one", reply_to=original["id"])
    await fake.post_user_message(alice, "hello", mention_bot=True)  # mention, no reply
    await run.settle()
    assert len(fake.messages) == 3 and run.rt.engine.active_count == 0


async def test_the_message_menu_asks_for_a_prompt_then_edits(
    run: Running, fake: FakeDiscord, alice: FakeUser, bob: FakeUser
) -> None:
    photo = fake.upload(solid((1024, 768), "WEBP"), "view.webp")
    original = await fake.post_user_message(bob, "view", attachments=[photo])
    opened = await fake.message_command("Edit image", alice, original["id"])
    submitted = await fake.fill_modal(opened, "add a rainbow")
    await fake.wait_callback(submitted)
    assert submitted.callback_type == 5
    await run.wait_results()
    await run.finish()
    job = await run.latest_job()
    assert job.request.prompt == "add a rainbow"
    assert [ref.url for ref in job.request.images] == [photo.url]


async def test_the_menu_on_a_message_without_images_says_so(
    run: Running, fake: FakeDiscord, alice: FakeUser
) -> None:
    original = await fake.post_user_message(alice, "no pictures here")
    opened = await fake.message_command("Edit image", alice, original["id"])
    await fake.wait_callback(opened)
    assert opened.callback_type == 4 and "no image to edit" in opened.text()


async def test_without_message_content_the_bot_says_how_to_edit(
    fake: FakeDiscord, clock: FakeClock, tmp_path: Path, alice: FakeUser, bob: FakeUser
) -> None:
    fake.message_content_allowed = False
    async with running_bot(fake, tmp_path / "db.sqlite3", clock) as run:
        assert run.bot.message_content is False
        assert not fake.intents & (1 << 15)  # not asked for: the gateway would refuse it
        photo = fake.upload(solid((800, 600), "PNG"), "b.png")
        original = await fake.post_user_message(bob, "mine", attachments=[photo])
        reply = await fake.post_user_message(
            alice, "edit this", reply_to=original["id"], mention_bot=True
        )

        message = await run.drive(lambda: next(iter(fake.replies_to(reply["id"])), None))
        assert "Edit image" in message["content"]
        helped = await fake.slash("help", alice)
        await fake.wait_callback(helped)
        assert "Message Content intent is off" in helped.text()

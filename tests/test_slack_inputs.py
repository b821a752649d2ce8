"""Images shared on Slack: bad files are refused privately and specifically with nothing
charged; fixable ones are repaired; Slack's 429 on chat.update is waited out."""

# ruff: noqa: F811 (the harness's fixtures are imported, then named as arguments)

from __future__ import annotations

import asyncio

import pytest

from bot.core.clock import FakeClock
from bot.core.models import JobState
from bot.core.providers.mock import MockProvider
from bot.core.tasks import TaskGroup
from bot.media import HostingUnavailable, MediaHost
from bot.slack.inputs import SlackImageHost
from tests.fakes.slack import FakeSlack, SlackChannel, SlackUser
from tests.image_corpus import big_solid_png, solid
from tests.slack_harness import (  # noqa: F401 (fixtures)
    SlackRun,
    general,
    header,
    member,
    results,
    run,
    slack,
)


async def test_a_text_file_named_png_is_refused_privately_and_nothing_is_charged(
    run: SlackRun, slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    photo = slack.add_file(member, "notes.png", b"just some text, not an image " * 10)
    mention, plain = await slack.mention(member, general, "make it snowy", files=[photo])
    await slack.acked(mention)
    await slack.acked(plain)
    [answer] = await run.drive(lambda: slack.world.ephemerals)
    assert answer["to"] == member.id and "notes.png" in answer["text"]
    assert "Nothing was charged" in answer["text"]
    assert await run.jobs_of(member.id) == []
    assert slack.bot_messages(general.id) == []  # no status card for a refused request


@pytest.mark.parametrize(
    ("data", "size"),
    [(solid((100, 100)), (100, 100)), (big_solid_png(6000, 6000), (6000, 6000))],
    ids=["100x100", "6000x6000"],
)
async def test_an_image_of_the_wrong_size_is_repaired_and_said_so(
    run: SlackRun,
    slack: FakeSlack,
    general: SlackChannel,
    member: SlackUser,
    data: bytes,
    size: tuple[int, int],
) -> None:
    photo = slack.add_file(member, "odd.png", data, size=size)
    mention, _ = await slack.mention(member, general, "make it snowy", files=[photo])
    await slack.acked(mention)
    await run.drive(lambda: results(slack))
    [job] = await run.jobs_of(member.id)
    image = job.request.images[0]
    assert image.width is not None and 384 <= image.width <= 5000
    assert "odd.png" in " ".join(job.delivery.get("input_notes", []))


async def test_a_sign_in_page_instead_of_the_file_is_refused(
    run: SlackRun, slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    photo = slack.add_file(member, "cat.png", solid((640, 480)), size=(640, 480))
    slack.file_script.sign_in_page.add(photo.id)
    mention, _ = await slack.mention(member, general, "make it snowy", files=[photo])
    await slack.acked(mention)
    [answer] = await run.drive(lambda: slack.world.ephemerals)
    assert "sign-in page" in answer["text"] and "files:read" in answer["text"]
    assert await run.jobs_of(member.id) == []


async def test_a_png_with_transparency_is_repaired_and_used(
    run: SlackRun, slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    photo = slack.add_file(member, "logo.png", solid((640, 480), mode="RGBA"), size=(640, 480))
    mention, _ = await slack.mention(member, general, "on a beach", files=[photo])
    await slack.acked(mention)
    await run.drive(lambda: results(slack))
    [job] = await run.jobs_of(member.id)
    assert job.request.images and job.request.images[0].url.startswith("data:image/")


async def test_a_429_on_chat_update_is_waited_out(
    run: SlackRun, slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    slack.rate_limit_next("chat.update", retry_after=0)
    await slack.acked(await slack.slash_command(member, general, "/imagine", "a lake"))
    await run.drive(lambda: results(slack))
    [job] = await run.jobs_of(member.id)
    job = await run.drive_done(job.id)
    assert job.state is JobState.DONE and job.delivered == 1
    updates = slack.calls_of("chat.update")
    assert updates[0].status == 429 and any(c.ok for c in updates[1:])
    [root] = [
        m for m in slack.bot_messages(general.id) if m["ts"] == job.delivery["slack_status_ts"]
    ]
    assert header(root).startswith("✅")


async def test_a_provider_that_only_fetches_public_urls_needs_media_public_url(
    run: SlackRun,
    slack: FakeSlack,
    general: SlackChannel,
    member: SlackUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Like APIXO: no data: URIs, no file host of its own, and no MEDIA_PUBLIC_URL set.
    caps = run.mock.capabilities.model_copy(update={"accepts_data_uri": False})
    monkeypatch.setattr(run.mock, "capabilities", caps)
    photo = slack.add_file(member, "cat.png", solid((640, 480)), size=(640, 480))
    mention, _ = await slack.mention(member, general, "make it snowy", files=[photo])
    await slack.acked(mention)
    [answer] = await run.drive(lambda: slack.world.ephemerals)
    assert "MEDIA_PUBLIC_URL" in answer["text"] and "Nothing was charged" in answer["text"]
    assert await run.jobs_of(member.id) == []
    assert not [f for f in slack.fetches if photo.id in f.path]  # not even downloaded


async def test_with_a_media_host_slack_images_are_served_until_the_job_ends() -> None:
    class PublicUrlsOnly:  # APIXO's shape: no data: URIs, no file host of its own
        capabilities = MockProvider.capabilities.model_copy(update={"accepts_data_uri": False})

    clock = FakeClock()
    media = MediaHost("https://bot.example", clock)
    tasks = TaskGroup("test")
    host = SlackImageHost(PublicUrlsOnly(), media, tasks)  # type: ignore[arg-type]
    url = await host.host(b"\x89PNG fake", "image/png", "cat.png")
    assert url.startswith("https://bot.example/media/") and url.endswith("/cat.png")
    assert media.count == 1
    host.bind("job1")  # in a task: MediaSession.bind is a coroutine, HostSession's is not
    async with asyncio.timeout(5):
        while len(tasks):
            await asyncio.sleep(0)
    assert media.release("job1") == 1 and media.count == 0
    # A refused request's images go at once.
    refused = SlackImageHost(PublicUrlsOnly(), media, tasks)  # type: ignore[arg-type]
    await refused.host(b"\x89PNG other", "image/png", "dog.png")
    await refused.withdraw()
    assert media.count == 0
    with pytest.raises(HostingUnavailable):
        SlackImageHost(PublicUrlsOnly(), None, tasks)  # type: ignore[arg-type]
    await tasks.close()

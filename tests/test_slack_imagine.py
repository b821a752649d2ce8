"""/imagine on Slack end to end: the real Bolt app over Socket Mode against the fake
Slack, the real Runtime (engine, SQLite, quotas) and the mock provider, one FakeClock."""

# ruff: noqa: F811 (the harness's fixtures are imported, then named as arguments)

from __future__ import annotations

from typing import Any

from bot.core.models import JobState
from bot.slack.manifest import build_manifest, listeners
from tests.fakes.slack import BOT_TOKEN, FakeSlack, SlackChannel, SlackUser
from tests.image_corpus import solid
from tests.slack_harness import (  # noqa: F401 (fixtures)
    SlackRun,
    action_ids,
    general,
    has_buttons,
    header,
    member,
    results,
    run,
    slack,
)

ACK_DEADLINE = 3.0


async def test_imagine_posts_a_thread_root_updates_it_and_uploads_into_the_thread(
    run: SlackRun, slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    envelope = await slack.slash_command(
        member, general, "/imagine", "a red fox --aspect 16:9 -n 2"
    )
    ack = await slack.acked(envelope)
    assert ack.latency < ACK_DEADLINE and ack.payload is None  # a bare ack: nothing shown
    files = await run.drive(lambda: results(slack))
    [job] = await run.jobs_of(member.id)
    # The status message is a new channel message: the thread root.
    [root] = [
        m
        for m in slack.bot_messages(general.id)
        if "thread_ts" not in m or m["thread_ts"] == m["ts"]
    ]
    assert len(files) == 2
    assert [f.id for f in slack.world.files_in(general.id, root["ts"])] == [f.id for f in files]
    assert all(f.name.startswith(f"wan_{job.id}_") for f in files)
    await run.drive(lambda: header(root).startswith("✅"))
    # The card's news (here: done) went through chat.update on that root.
    updates = [c for c in slack.calls_of("chat.update") if c.args.get("ts") == root["ts"]]
    assert updates and "✅" in str(updates[-1].args.get("blocks") or updates[-1].args)
    [card] = [m for m in slack.world.thread(general.id, root["ts"]) if has_buttons(m)]
    assert "wan_reroll" in action_ids(card) and "wan_edit_2" in action_ids(card)
    final = await run.job(job.id)
    assert final.state is JobState.DONE
    assert final.delivered == 2  # charged == delivered
    assert final.request.aspect_ratio == "16:9"


async def test_not_in_the_channel_answers_how_to_invite_and_starts_nothing(
    run: SlackRun, slack: FakeSlack, member: SlackUser
) -> None:
    secret = slack.add_channel("secret", bot_member=False)
    await slack.acked(await slack.slash_command(member, secret, "/imagine", "a red fox"))
    [response] = await run.drive(lambda: slack.world.responses)
    assert "/invite @wanbot" in response["text"] and "Nothing was charged" in response["text"]
    assert response.get("response_type") == "ephemeral"
    assert await run.jobs_of(member.id) == []
    assert slack.bot_messages(secret.id) == []


async def test_a_bad_option_is_refused_privately_with_the_closest_one(
    run: SlackRun, slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    await slack.acked(await slack.slash_command(member, general, "/imagine", "a fox --aspcet 16:9"))
    [answer] = await run.drive(lambda: slack.world.ephemerals)
    assert answer["to"] == member.id and "--aspect" in answer["text"]
    assert await run.jobs_of(member.id) == []


async def test_mention_with_an_image_is_one_job_though_slack_sends_two_events(
    run: SlackRun, slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    photo = slack.add_file(member, "cat.png", solid((640, 480)), size=(640, 480))
    mention, plain = await slack.mention(member, general, "make it snowy", files=[photo])
    await slack.acked(mention)
    await slack.acked(plain)
    again = await slack.redeliver(mention)  # Slack thought the first was missed
    await slack.acked(again)
    files = await run.drive(lambda: results(slack))
    [job] = await run.jobs_of(member.id)
    assert job.request.mode.value == "image-to-image" or job.request.images
    assert job.request.prompt == "make it snowy"
    # Everything went into the mention's thread.
    root = mention.payload["event"]["ts"]
    in_thread = slack.world.files_in(general.id, root)
    assert [f.id for f in in_thread] == [photo.id, *(f.id for f in files)]
    status = [m for m in slack.bot_messages(general.id) if m.get("thread_ts") == root]
    assert status
    # The private file was read with the bot token.
    assert any(f.authorization == f"Bearer {BOT_TOKEN}" for f in slack.fetches)


async def test_a_mention_in_a_thread_edits_the_parents_image(
    run: SlackRun, slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    photo = slack.add_file(member, "cat.png", solid((640, 480)), size=(640, 480))
    parent = slack.user_message(member, general, "my cat", files=[photo])
    mention, plain = await slack.mention(member, general, "add a hat", thread_ts=parent["ts"])
    await slack.acked(mention)
    await slack.acked(plain)
    await run.drive(lambda: results(slack))
    [job] = await run.jobs_of(member.id)
    assert len(job.request.images) == 1 and job.request.prompt == "add a hat"
    assert slack.world.files_in(general.id, parent["ts"])[-1].user == slack.bot_user_id


async def test_the_imagine_form_with_an_image(
    run: SlackRun, slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    await slack.acked(await slack.slash_command(member, general, "/imagine", ""))
    opened = await slack.wait_call("views.open")
    view_id = opened.response["view"]["id"]  # type: ignore[index]
    photo = slack.add_file(member, "dog.png", solid((800, 600)), size=(800, 600))
    values: dict[str, dict[str, Any]] = {
        "prompt": {"value": {"type": "plain_text_input", "value": "a dog in space"}},
        "negative": {"value": {"type": "plain_text_input", "value": None}},
        "aspect": {"value": {"type": "static_select", "selected_option": {"value": "1:1"}}},
        "count": {"value": {"type": "static_select", "selected_option": {"value": "1"}}},
        "images": {"files": slack.file_input([photo])},
    }
    ack = await slack.acked(await slack.view_submission(member, view_id, values))
    assert ack.latency < ACK_DEADLINE and ack.payload is None  # the modal closes
    await run.drive(lambda: results(slack))
    [job] = await run.jobs_of(member.id)
    assert job.request.prompt == "a dog in space" and len(job.request.images) == 1


async def test_the_form_keeps_itself_open_with_the_problem(
    run: SlackRun, slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    await slack.acked(await slack.slash_command(member, general, "/imagine", ""))
    opened = await slack.wait_call("views.open")
    values: dict[str, dict[str, Any]] = {
        "prompt": {"value": {"type": "plain_text_input", "value": "x" * 5000}},
        "count": {"value": {"type": "static_select", "selected_option": {"value": "1"}}},
    }
    view_id = opened.response["view"]["id"]  # type: ignore[index]
    ack = await slack.acked(await slack.view_submission(member, view_id, values))
    assert ack.payload is not None and ack.payload["response_action"] == "errors"
    assert "prompt" in ack.payload["errors"]
    assert await run.jobs_of(member.id) == []


async def test_edit_image_shortcut_opens_a_prompt_and_edits_that_image(
    run: SlackRun, slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    photo = slack.add_file(member, "cat.png", solid((640, 480)), size=(640, 480))
    message = slack.user_message(member, general, "look", files=[photo])
    await slack.acked(await slack.message_shortcut(member, general, message["ts"]))
    opened = await slack.wait_call("views.open")
    view_id = opened.response["view"]["id"]  # type: ignore[index]
    values = {"prompt": {"value": {"type": "plain_text_input", "value": "paint it blue"}}}
    await slack.acked(await slack.view_submission(member, view_id, values))
    await run.drive(lambda: results(slack))
    [job] = await run.jobs_of(member.id)
    assert job.request.prompt == "paint it blue" and len(job.request.images) == 1
    assert slack.world.files_in(general.id, message["ts"])[-1].user == slack.bot_user_id


async def test_every_subscribed_event_has_a_listener(
    run: SlackRun, slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    # No listener means Bolt answers 404, sends no ack, and Slack delivers it again.
    manifest = build_manifest()
    events = {name for kind, name in listeners(manifest) if kind == "event"}
    assert events == {"app_mention", "message"}
    chatter = slack.user_message(member, general, "just talking")
    envelope = await slack.event({**chatter, "channel": general.id, "channel_type": "channel"})
    assert (await slack.acked(envelope)).latency < ACK_DEADLINE
    for kind, name in listeners(manifest):
        if kind == "command":
            ack = await slack.acked(await slack.slash_command(member, general, name, "help"))
            assert ack.latency < ACK_DEADLINE
    await run.settle()
    # Plain chatter started nothing; "/imagine help" is a prompt like any other.
    [job] = await run.jobs_of(member.id)
    assert job.request.prompt == "help"


async def test_no_form_opens_where_the_bot_cannot_post(
    run: SlackRun, slack: FakeSlack, member: SlackUser
) -> None:
    secret = slack.add_channel("secret", bot_member=False)
    photo = slack.add_file(member, "cat.png", solid((640, 480)), size=(640, 480))
    message = slack.user_message(member, secret, "look", files=[photo])
    await slack.acked(await slack.slash_command(member, secret, "/imagine", ""))
    await slack.acked(await slack.message_shortcut(member, secret, message["ts"]))
    responses = await run.drive(lambda: len(slack.world.responses) == 2 and slack.world.responses)
    assert all("/invite @wanbot" in r["text"] for r in responses)
    assert slack.calls_of("views.open") == []

"""Result buttons, /wanbot, quotas and restarts on Slack: the real Bolt app against the
fake Slack, the real Runtime and the mock provider, one FakeClock."""

# ruff: noqa: F811 (the harness's fixtures are imported, then named as arguments)

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.chat.wording import ADMINS_TOLD, delete_not_allowed
from bot.core.clock import FakeClock
from bot.core.models import (
    FailureCategory,
    GenerationRequest,
    Job,
    JobState,
    ProviderFailure,
    Space,
)
from tests.engine_doubles import PostThenHang
from tests.fakes.slack import TEAM_ID, FakeSlack, SlackChannel, SlackUser
from tests.image_corpus import solid
from tests.slack_harness import (  # noqa: F401 (fixtures)
    SlackRun,
    action_ids,
    general,
    member,
    results,
    run,
    running_slack,
    slack,
)

ACK_DEADLINE = 3.0


async def finished_job(
    run: SlackRun, slack: FakeSlack, user: SlackUser, channel: SlackChannel, text: str
) -> tuple[Job, dict[str, Any]]:
    """Run /imagine to the end: the job and its result card (the message with buttons)."""
    before = len(await run.jobs_of(user.id))
    await slack.acked(await slack.slash_command(user, channel, "/imagine", text))
    jobs = await run.drive_jobs(user.id, before + 1)
    job = await run.drive_done(jobs[0].id)
    [card] = [
        m for m in slack.bot_messages(channel.id) if f"wan_result_{job.id}" in str(m.get("blocks"))
    ]
    return job, card


def ephemerals_to(slack: FakeSlack, user: SlackUser) -> list[str]:
    return [
        str(e["text"]) + str(e.get("blocks") or "")
        for e in slack.world.ephemerals
        if e["to"] == user.id
    ]


async def test_reroll_starts_a_new_job_in_the_same_thread(
    run: SlackRun, slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    job, card = await finished_job(run, slack, member, general, "a lighthouse")
    assert action_ids(card)[:1] == ["wan_edit_1"]
    click = await slack.block_action(member, general, card["ts"], "wan_reroll", job.id)
    assert (await slack.acked(click)).latency < ACK_DEADLINE
    [new, old] = await run.drive_jobs(member.id, 2)
    assert old.id == job.id and new.parent_job_id == job.id
    await run.drive_done(new.id)
    root = job.delivery["slack_thread_ts"]
    assert (await run.job(new.id)).delivery["slack_thread_ts"] == root
    names = [f.name for f in slack.world.files_in(general.id, root)]
    assert any(n.startswith(f"wan_{new.id}_") for n in names)


async def test_info_is_private_and_delete_is_for_the_owner_or_an_admin(
    run: SlackRun, slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    job, card = await finished_job(run, slack, member, general, "a castle")
    bob = slack.add_user("bob")
    boss = slack.add_user("boss", admin=True)
    general.members.update({bob.id, boss.id})

    await slack.acked(await slack.block_action(bob, general, card["ts"], "wan_info", job.id))
    await run.drive(lambda: ephemerals_to(slack, bob))
    [info] = ephemerals_to(slack, bob)
    assert f"Job {job.id}" in info

    await slack.acked(await slack.block_action(bob, general, card["ts"], "wan_delete", job.id))
    await run.drive(lambda: len(ephemerals_to(slack, bob)) == 2)
    assert ephemerals_to(slack, bob)[1] == delete_not_allowed()
    assert (general.id, card["ts"]) in slack.world.messages  # still there

    await slack.acked(await slack.block_action(boss, general, card["ts"], "wan_delete", job.id))
    await run.drive(lambda: (general.id, card["ts"]) not in slack.world.messages)
    root = job.delivery["slack_thread_ts"]
    assert [f for f in slack.world.files_in(general.id, root) if f.user == slack.bot_user_id] == []
    assert (await run.job(job.id)).delivery.get("results_deleted") is True


async def test_edit_button_opens_a_prompt_and_edits_that_result(
    run: SlackRun, slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    job, card = await finished_job(run, slack, member, general, "a bridge -n 2")
    seq = slack.last_seq
    await slack.acked(await slack.block_action(member, general, card["ts"], "wan_edit_2", job.id))
    opened = await slack.wait_call("views.open", after=seq)
    view_id = opened.response["view"]["id"]  # type: ignore[index]
    values = {"prompt": {"value": {"type": "plain_text_input", "value": "at night"}}}
    await slack.acked(await slack.view_submission(member, view_id, values))
    [new, _] = await run.drive_jobs(member.id, 2)
    assert new.parent_job_id == job.id and new.request.prompt == "at night"
    assert len(new.request.images) == 1
    # The posted result was read back from Slack (the provider's links are not kept).
    second = next(f for f in results(slack) if f.name == f"wan_{job.id}_2.png")
    assert any(second.id in f.path for f in slack.fetches)


async def test_wanbot_usage_and_an_admins_quota(
    run: SlackRun, slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    boss = slack.add_user("boss", owner=True)
    general.members.add(boss.id)
    await slack.acked(await slack.slash_command(member, general, "/wanbot", "usage"))
    await run.drive(lambda: ephemerals_to(slack, member))
    assert "Your image quota" in ephemerals_to(slack, member)[0]

    # A member may not set quotas: refused, nothing changed.
    await slack.acked(
        await slack.slash_command(
            member, general, "/wanbot", f"quota set <@{member.id}|alice> 0 day"
        )
    )
    await run.drive(lambda: len(ephemerals_to(slack, member)) == 2)
    assert "admin" in ephemerals_to(slack, member)[1].lower()
    usage = await run.rt.quotas.usage(Space(platform="slack", id=TEAM_ID), member.id)
    assert usage.limit != 0

    # A workspace owner may (users.info says so).
    await slack.acked(
        await slack.slash_command(boss, general, "/wanbot", f"quota set <@{member.id}|alice> 0 day")
    )
    await run.drive(lambda: ephemerals_to(slack, boss))
    usage = await run.rt.quotas.usage(Space(platform="slack", id=TEAM_ID), member.id)
    assert usage.limit == 0
    # The same user id on Discord is someone else: spaces are (platform, id).
    other = await run.rt.quotas.usage(Space(platform="discord", id=TEAM_ID), member.id)
    assert other.limit != 0

    await slack.acked(await slack.slash_command(member, general, "/imagine", "a cat"))
    await run.drive(lambda: len(ephemerals_to(slack, member)) == 3)
    assert "limit" in ephemerals_to(slack, member)[2].lower()
    assert await run.jobs_of(member.id) == []

    # The report: numbers privately, and its chart by direct message (an ephemeral
    # answer cannot carry a file), to the admin who asked only.
    await slack.acked(await slack.slash_command(boss, general, "/wanbot", "quota report"))
    await run.drive(lambda: slack.world.files_in("D" + boss.id[1:]))
    assert "Image usage here" in ephemerals_to(slack, boss)[-1]
    [chart] = slack.world.files_in("D" + boss.id[1:])
    assert chart.name == "spend.png" and chart.data.startswith(b"\x89PNG")
    assert not [f for f in slack.world.files_in(general.id) if f.name == "spend.png"]


async def test_fifty_commands_at_once_are_all_acked_in_time(
    run: SlackRun, slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    envelopes = await asyncio.gather(
        *(slack.slash_command(member, general, "/imagine", f"cat {i}") for i in range(50))
    )
    acks = await asyncio.gather(*(slack.acked(e) for e in envelopes))
    assert len({a.envelope_id for a in acks}) == 50
    assert max(a.latency for a in acks) < ACK_DEADLINE
    await run.settle()


async def test_a_crash_after_uploading_does_not_post_twice(
    slack: FakeSlack, clock: FakeClock, tmp_path: Path, general: SlackChannel, member: SlackUser
) -> None:
    async with running_slack(tmp_path, clock, slack) as first:
        hang = PostThenHang(first.bot.delivery)  # the process dies before recording it
        await slack.acked(await slack.slash_command(member, general, "/imagine", "a tower -n 2"))
        await first.drive(lambda: hang.posted.is_set())
        [job] = await first.jobs_of(member.id)
        assert job.state is JobState.DELIVERING
        mock = first.mock
        hang.crash()
    uploads = len(slack.calls_of("files.completeUploadExternal"))
    async with running_slack(tmp_path, clock, slack, mock=mock) as second:
        done = await second.drive_done(job.id)
    assert done.delivered == 2 and done.state is JobState.DONE
    assert len(slack.calls_of("files.completeUploadExternal")) == uploads == 1
    assert len(results(slack)) == 2
    assert sorted(done.delivery["slack_file_ids"]) == sorted(f.id for f in results(slack))
    cards = [
        m for m in slack.bot_messages(general.id) if f"wan_result_{job.id}" in str(m.get("blocks"))
    ]
    assert len(cards) == 1


async def test_a_job_in_flight_at_a_restart_is_posted_once(
    slack: FakeSlack, clock: FakeClock, tmp_path: Path, general: SlackChannel, member: SlackUser
) -> None:
    async with running_slack(tmp_path, clock, slack, latency=120) as first:
        await slack.acked(await slack.slash_command(member, general, "/imagine", "a ship"))
        await first.drive(lambda: first.busy.count == 0 and first.mock.task_count == 1)
        [job] = await first.jobs_of(member.id)
        assert job.state is JobState.RUNNING
        mock = first.mock
    async with running_slack(tmp_path, clock, slack, mock=mock) as second:
        done = await second.drive_done(job.id)
    assert done.state is JobState.DONE and done.delivered == 1
    assert len(results(slack)) == 1
    root = done.delivery["slack_thread_ts"]
    assert [f.id for f in slack.world.files_in(general.id, root)] == done.delivery["slack_file_ids"]


async def test_reroll_of_an_image_job_reads_the_slack_files_again(
    run: SlackRun, slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    photo = slack.add_file(member, "cat.png", solid((640, 480)), size=(640, 480))
    mention, _ = await slack.mention(member, general, "make it snowy", files=[photo])
    await slack.acked(mention)
    [job] = await run.drive_jobs(member.id, 1)
    job = await run.drive_done(job.id)
    assert job.delivery["slack_input_files"] == [photo.id]
    [card] = [
        m for m in slack.bot_messages(general.id) if f"wan_result_{job.id}" in str(m.get("blocks"))
    ]
    reads = len([f for f in slack.fetches if photo.id in f.path])
    await slack.acked(await slack.block_action(member, general, card["ts"], "wan_reroll", job.id))
    [new, _] = await run.drive_jobs(member.id, 2)
    new = await run.drive_done(new.id)
    assert new.parent_job_id == job.id and len(new.request.images) == 1
    assert new.state is JobState.DONE and new.delivered == 1
    assert len([f for f in slack.fetches if photo.id in f.path]) == reads + 1


def lose_the_first_task() -> Callable[[GenerationRequest], ProviderFailure | None]:
    """A provider hook: the first task vanishes (never resent; Try again is offered)."""
    failed_once: list[str] = []

    def lose(request: GenerationRequest) -> ProviderFailure | None:
        if failed_once:
            return None
        failed_once.append(request.prompt)
        return ProviderFailure(code="task_not_found", category=FailureCategory.GONE)

    return lose


async def test_try_again_starts_one_new_job_on_the_requesters_word(
    slack: FakeSlack, clock: FakeClock, tmp_path: Path, general: SlackChannel, member: SlackUser
) -> None:
    async with running_slack(tmp_path, clock, slack, failure_hook=lose_the_first_task()) as run:
        await slack.acked(await slack.slash_command(member, general, "/imagine", "a kite"))
        [job] = await run.drive_jobs(member.id, 1)
        job = await run.drive_done(job.id)
        assert job.state is JobState.FAILED and job.delivered == 0
        status = slack.world.messages[(general.id, job.delivery["slack_status_ts"])]
        assert action_ids(status) == ["wan_retry"]
        bob = slack.add_user("bob")
        general.members.add(bob.id)
        await slack.acked(await slack.block_action(bob, general, status["ts"], "wan_retry", job.id))
        await run.drive(lambda: ephemerals_to(slack, bob))
        assert await run.jobs_of(bob.id) == [] and len(await run.jobs_of(member.id)) == 1
        await slack.acked(
            await slack.block_action(member, general, status["ts"], "wan_retry", job.id)
        )
        [new, _] = await run.drive_jobs(member.id, 2)
        new = await run.drive_done(new.id)
        assert new.state is JobState.DONE and new.parent_job_id == job.id
        assert action_ids(status) == []  # the button went with the click


async def test_try_again_on_an_image_job_fetches_the_users_file_again(
    slack: FakeSlack, clock: FakeClock, tmp_path: Path, general: SlackChannel, member: SlackUser
) -> None:
    # The provider got a hosted copy; a new try reads the user's own Slack file again
    # (the chat layer's one flow, through SlackSurface.input_sources), not the copy.
    async with running_slack(tmp_path, clock, slack, failure_hook=lose_the_first_task()) as run:
        photo = slack.add_file(member, "cat.png", solid((640, 480)), size=(640, 480))
        mention, _ = await slack.mention(member, general, "make it snowy", files=[photo])
        await slack.acked(mention)
        [job] = await run.drive_jobs(member.id, 1)
        job = await run.drive_done(job.id)
        assert job.state is JobState.FAILED
        reads = len([f for f in slack.fetches if photo.id in f.path])
        status = slack.world.messages[(general.id, job.delivery["slack_status_ts"])]
        await slack.acked(
            await slack.block_action(member, general, status["ts"], "wan_retry", job.id)
        )
        [new, _] = await run.drive_jobs(member.id, 2)
        new = await run.drive_done(new.id)
        assert new.state is JobState.DONE and new.parent_job_id == job.id
        assert len(new.request.images) == 1 and new.delivered == 1
        assert len([f for f in slack.fetches if photo.id in f.path]) == reads + 1


async def test_a_failed_card_post_is_retried_without_uploading_again(
    run: SlackRun, slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    await slack.acked(await slack.slash_command(member, general, "/imagine", "a comet -n 2"))
    [job] = await run.drive_jobs(member.id, 1)
    assert job.delivery.get("slack_status_ts")
    slack.fail_next("chat.postMessage", "internal_error")  # the card after the upload
    job = await run.drive_done(job.id)
    assert job.state is JobState.DONE and job.delivered == 2
    assert len(slack.calls_of("files.completeUploadExternal")) == 1
    assert len(results(slack)) == 2
    posts = slack.calls_of("chat.postMessage")
    assert [c.error for c in posts] == [None, "internal_error", None]  # status, card, card


async def test_a_crash_between_the_upload_and_the_buttons_posts_only_the_buttons(
    slack: FakeSlack, clock: FakeClock, tmp_path: Path, general: SlackChannel, member: SlackUser
) -> None:
    async with running_slack(tmp_path, clock, slack) as first:
        await slack.acked(await slack.slash_command(member, general, "/imagine", "a moon -n 2"))
        [job] = await first.drive_jobs(member.id, 1)
        slack.hang_next("chat.postMessage")  # the card after the upload never answers
        await first.drive(lambda: slack.hung)
        assert len(results(slack)) == 2
        mock = first.mock
    async with running_slack(tmp_path, clock, slack, mock=mock) as second:
        done = await second.drive_done(job.id)
    assert done.state is JobState.DONE and done.delivered == 2
    assert len(slack.calls_of("files.completeUploadExternal")) == 1  # not uploaded again
    cards = [
        m for m in slack.bot_messages(general.id) if f"wan_result_{job.id}" in str(m.get("blocks"))
    ]
    assert len(cards) == 1 and done.delivery["slack_result_ts"] == cards[0]["ts"]
    assert {"wan_edit_1", "wan_edit_2"} <= set(action_ids(cards[0]))


async def test_billing_trouble_is_told_in_the_workspaces_alerts_channel(
    slack: FakeSlack, clock: FakeClock, tmp_path: Path, general: SlackChannel, member: SlackUser
) -> None:
    def no_balance(request: GenerationRequest) -> ProviderFailure | None:
        return ProviderFailure(
            code="insufficient_quota", message="no balance", category=FailureCategory.CONFIG
        )

    boss = slack.add_user("boss", admin=True)
    general.members.add(boss.id)
    ops = slack.add_channel("ops")
    async with running_slack(tmp_path, clock, slack, failure_hook=no_balance) as run:
        # A member may not choose where alerts go; the workspace owner may.
        await slack.acked(
            await slack.slash_command(member, general, "/wanbot", f"config alerts <#{ops.id}|ops>")
        )
        await slack.acked(
            await slack.slash_command(boss, general, "/wanbot", f"config alerts <#{ops.id}|ops>")
        )
        await run.drive(lambda: ephemerals_to(slack, boss))
        assert f"<#{ops.id}>" in ephemerals_to(slack, boss)[0]
        assert "Only admins" in ephemerals_to(slack, member)[0]
        await slack.acked(await slack.slash_command(member, general, "/imagine", "a kite"))
        [job] = await run.drive_jobs(member.id, 1)
        job = await run.drive_done(job.id)
        assert job.state is JobState.FAILED and job.delivered == 0
        await run.drive(lambda: slack.bot_messages(ops.id))
        [alert] = slack.bot_messages(ops.id)
        assert "insufficient_quota" in alert["text"] and "billing" in alert["text"]
        status = slack.world.messages[(general.id, job.delivery["slack_status_ts"])]
        assert ADMINS_TOLD in str(status)  # said only because a person was told

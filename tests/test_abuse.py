"""Abuse: floods from one user, the per-user job limits, admin-only commands used by
members, and blocked users trying every way in. Nothing gets past the quota, and
every refusal is an answer, not a silent drop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from discord import AppCommandOptionType, app_commands

from bot.core.clock import FakeClock
from bot.core.models import Job, JobState
from tests.fakes.discord import FakeDiscord, FakeInteraction, FakeUser
from tests.fakes.providers import make_png
from tests.reliability.audit import (
    answers_by_token,
    check_money,
    private_answer,
    result_messages,
)
from tests.reliability.flows import everyone_told, finish_every_task, imagine, settled_job
from tests.reliability.world import World, open_world
from tests.store_backends import space

FLOOD = 500
ADMIN_TABLES = ("quota_limits", "grants", "blocks", "server_budgets", "guild_config")


async def flood(world: World, user: FakeUser, n: int) -> list[FakeInteraction]:
    """`n` /imagine from one user at once, each with its own prompt; returns once the
    bot has acknowledged them all (before fake time moves past the 3 s window)."""
    interactions = list(
        await asyncio.gather(
            *(world.fake.slash("imagine", user, {"prompt": f"flood {i}"}) for i in range(n))
        )
    )
    await world.fake.wait_until(lambda: all(i.callback for i in interactions), timeout=60)
    return interactions


@dataclass(frozen=True)
class Answered:
    refused: dict[str, str]  # interaction id: the private answer


async def answered(
    world: World, interactions: list[FakeInteraction], jobs_expected: int
) -> Answered | None:
    """Once every interaction has either started a job or got a private answer."""
    if any(i.callback is None for i in interactions):
        return None
    index = answers_by_token(world.fake)
    refused = {
        i.id: text
        for i in interactions
        if (text := private_answer(world.fake, i, index)) is not None
    }
    started = await world.rows("SELECT COUNT(*) FROM jobs")
    if started[0][0] + len(refused) < len(interactions):
        return None
    assert started[0][0] == jobs_expected, started
    return Answered(refused)


def public_bot_messages(fake: FakeDiscord) -> list[dict[str, Any]]:
    return [
        m
        for m in fake.messages_in(fake.general)
        if m["author"]["id"] == fake.bot.id and not m["flags"] & (1 << 6)
    ]


async def test_a_flood_from_one_user_gets_exactly_the_quota(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_world(
        tmp_path,
        clock,
        complete_after=None,
        default_user_limit=10,
        discord_options={"enforce_real_time_window": False},
    ) as world:
        mallory = world.fake.add_user("mallory")
        interactions = await flood(world, mallory, FLOOD)
        refused = (await world.drive(lambda: answered(world, interactions, 10))).refused
        assert len(refused) == FLOOD - 10
        acks = sorted(i.ack_real_seconds or 0.0 for i in interactions)
        print(
            f"flood of {FLOOD}: acknowledged in {acks[len(acks) // 2]:.2f} s (median), "
            f"{acks[-1]:.2f} s (max)"
        )
        for text in refused.values():
            assert "You have used 10 of 10 images today" in text, text
        # Refused requests leave no status message behind; admitted ones keep theirs.
        assert len(public_bot_messages(world.fake)) == 10
        usage = await world.rt.quotas.usage(space(world.fake.guild_id), mallory.id)
        assert (usage.used, usage.remaining, usage.in_flight) == (10, 0, 10)

        jobs = await world.drive(lambda: finish_every_task(world))
        assert len(jobs) == 10 and all(job.state is JobState.DONE for job in jobs)
        totals = await check_money(world.rt.db, world.fake, jobs)
        assert totals.charged == totals.delivered_on_discord == 10
        assert len(world.apixo.requests_for("submit")) == 10


async def test_the_per_user_job_limits_hold(tmp_path: Path, clock: FakeClock) -> None:
    """2 running + 3 waiting per user: a flood admits 5, the others are told why;
    each finished job lets exactly one more in."""
    async with open_world(
        tmp_path,
        clock,
        complete_after=None,
        max_running_jobs_per_user=2,
        max_queued_jobs_per_user=3,
    ) as world:
        eve = world.fake.add_user("eve")
        interactions = await flood(world, eve, 50)
        refused = (await world.drive(lambda: answered(world, interactions, 5))).refused
        assert len(refused) == 45
        for text in refused.values():
            assert "You already have" in text and "wait for one to finish" in text, text
        first = await world.apixo.next_task()
        world.apixo.complete(first.id)

        async def one_done() -> bool:
            rows = await world.rows("SELECT COUNT(*) FROM jobs WHERE state = 'done'")
            return rows[0][0] == 1

        await world.drive(one_done)
        more = await flood(world, eve, 3)
        refused = (await world.drive(lambda: answered(world, [*interactions, *more], 6))).refused
        assert len([i for i in more if i.id in refused]) == 2
        jobs = await world.drive(lambda: finish_every_task(world))
        await check_money(world.rt.db, world.fake, jobs)


async def test_a_user_never_has_more_than_max_running_jobs_at_the_provider(
    tmp_path: Path, clock: FakeClock
) -> None:
    """'A user may have max_running jobs at the provider and max_queued more waiting
    behind them' (bot/core/quota.py), even when the provider has free slots; the
    waiting ones start as the running ones finish."""
    async with open_world(
        tmp_path,
        clock,
        complete_after=None,
        max_running_jobs_per_user=2,
        max_queued_jobs_per_user=3,
        provider_concurrency=8,
    ) as world:
        eve = world.fake.add_user("eve")
        interactions = await flood(world, eve, 5)
        await world.drive(lambda: answered(world, interactions, 5))
        await world.settle()
        rows = await world.rows(
            "SELECT COUNT(*) FROM jobs WHERE state IN ('submitting', 'running', 'delivering')"
        )
        assert rows[0][0] <= 2, f"{rows[0][0]} of one user's jobs at the provider at once"
        assert len(world.apixo.tasks) == 2
        peak = 0

        async def finishing_one_at_a_time() -> list[Job] | None:
            nonlocal peak
            live = [t for t in world.apixo.tasks.values() if t.state == "pending"]
            peak = max(peak, len(live))
            if live:
                world.apixo.complete(live[0].id)
            return await everyone_told(world)

        jobs = await world.drive(finishing_one_at_a_time)
        assert len(jobs) == 5 and all(job.state is JobState.DONE for job in jobs)
        assert peak <= 2


# --- admin commands --------------------------------------------------------------------


def _value(world: World, param: app_commands.Parameter, target: FakeUser) -> Any:
    if param.choices:
        return param.choices[-1].value
    kind = param.type
    if kind is AppCommandOptionType.user:
        return target
    if kind is AppCommandOptionType.role:
        return world.fake.add_role("artists")
    if kind is AppCommandOptionType.channel:
        return world.fake.general
    if kind is AppCommandOptionType.boolean:
        return False
    if kind in (AppCommandOptionType.integer, AppCommandOptionType.number):
        return int(param.min_value or 0) + 3
    return "spam"


def admin_commands(world: World) -> list[tuple[str, app_commands.Command[Any, Any, Any]]]:
    found = []
    for group_name in ("quota", "config"):
        group = world.bot.tree.get_command(group_name)
        assert isinstance(group, app_commands.Group), group_name
        for command in group.walk_commands():
            assert isinstance(command, app_commands.Command)
            found.append((group_name, command))
    return found


async def admin_state(world: World) -> dict[str, list[tuple[Any, ...]]]:
    return {table: await world.rows(f"SELECT * FROM {table}") for table in ADMIN_TABLES}


async def test_members_cannot_use_admin_commands_even_when_discord_lets_them(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The server overrode the commands' default permissions (the fake dispatches
    every command to anyone): the member's payload permissions lack Manage Server,
    so every /quota and /config subcommand refuses and changes nothing."""
    async with open_world(tmp_path, clock) as world:
        member = world.fake.add_user("member")
        target = world.fake.add_user("victim")
        commands = admin_commands(world)
        names = {f"{group} {command.name}" for group, command in commands}
        assert {"quota set", "quota block", "quota grant", "config delivery"} <= names
        before = await admin_state(world)
        for group, command in commands:
            options = {p.name: _value(world, p, target) for p in command.parameters}
            interaction = await world.fake.slash(group, member, options, subcommand=command.name)
            await world.fake.wait_callback(interaction)
            await world.settle()
            text = private_answer(world.fake, interaction)
            assert text is not None and "Only server admins" in text, (command.name, text)
        assert await admin_state(world) == before
        config = await world.rt.quotas.guild_config(space(world.fake.guild_id))
        assert config.delivery_mode == "thread" and config.normalize_images

        # The same commands from an admin do act (so the refusals above were real).
        for group, command in commands:
            options = {p.name: _value(world, p, target) for p in command.parameters}
            interaction = await world.fake.slash(
                group, world.fake.owner, options, subcommand=command.name
            )
            await world.fake.wait_callback(interaction)
            await world.settle()
            text = private_answer(world.fake, interaction) or ""
            assert "Only server admins" not in text, (command.name, text)
        after = await admin_state(world)
        changed = {table for table in ADMIN_TABLES if after[table] != before[table]}
        # (blocks: the walk runs /quota block, then /quota unblock on the same member)
        assert changed >= {"quota_limits", "grants", "server_budgets", "guild_config"}, after


# --- blocked users -----------------------------------------------------------------------


async def _modal_submit(world: World, opened: FakeInteraction) -> FakeInteraction:
    submitted = await world.fake.fill_modal(opened, "make it night time")
    await world.fake.wait_callback(submitted)
    return submitted


async def test_a_blocked_user_can_do_nothing(tmp_path: Path, clock: FakeClock) -> None:
    async with open_world(tmp_path, clock) as world:
        fake = world.fake
        troll = fake.add_user("troll")
        before = await imagine(world, troll)
        job = await world.drive(lambda: settled_job(world, before))
        [result] = result_messages(fake, job.id)

        block = await fake.slash(
            "quota", fake.owner, {"user": troll, "reason": "spam"}, subcommand="block"
        )
        await fake.wait_callback(block)
        await world.drive(lambda: world.rows("SELECT * FROM blocks"))
        ledger_before = await world.rows("SELECT * FROM ledger ORDER BY id")
        photo = fake.upload(make_png(512, 512), "cat.png")
        posted = await fake.post_user_message(troll, "look", attachments=[photo])

        attempts: list[FakeInteraction] = [
            await imagine(world, troll),
            await imagine(world, troll, image1=photo),
        ]
        reroll = await fake.click(troll, result["id"], f"wanbot:reroll:{job.id}")
        await fake.wait_callback(reroll)
        attempts.append(reroll)
        edit = await fake.click(troll, result["id"], f"wanbot:edit:{job.id}:0")
        await fake.wait_callback(edit)
        attempts.append(await _modal_submit(world, edit))
        menu = await fake.message_command("Edit image", troll, posted["id"])
        await fake.wait_callback(menu)
        attempts.append(await _modal_submit(world, menu))
        await world.settle()
        for attempt in attempts:
            text = private_answer(fake, attempt)
            assert text is not None and "You are blocked" in text, (attempt.payload["data"], text)

        reply = await fake.post_user_message(
            troll, "make it blue", reply_to=posted["id"], mention_bot=True
        )

        def replied() -> list[dict[str, Any]] | None:
            found = [
                m
                for m in fake.messages.values()
                if (m.get("message_reference") or {}).get("message_id") == reply["id"]
            ]
            return found or None

        [answer] = await world.drive(replied)
        assert "You are blocked" in answer["content"]
        await world.settle()
        assert [j.id for j in await world.jobs()] == [job.id]
        assert await world.rows("SELECT * FROM ledger ORDER BY id") == ledger_before
        assert world.apixo.requests_for("submit").__len__() == 1

"""/quota and /config (admins only, checked in code), /usage and /help."""

from __future__ import annotations

import pytest

from bot.core.models import Period
from tests.fakes.discord import FakeDiscord, FakeInteraction, FakeUser
from tests.fakes.discord.harness import Running
from tests.store_backends import space


@pytest.fixture
def admin(fake: FakeDiscord) -> FakeUser:
    return fake.add_user("mod", admin=True)


async def answered(run: Running, interaction: FakeInteraction) -> str:
    await run.drive(lambda: interaction.answer(ephemeral=True))
    return interaction.text()


async def test_a_member_without_manage_server_is_refused_in_code(
    run: Running, fake: FakeDiscord, alice: FakeUser
) -> None:
    # Discord would hide /quota by default, but a server can override that: the bot checks.
    attempt = await fake.slash("quota", alice, {"user": alice, "limit": 999}, subcommand="set")
    text = await answered(run, attempt)
    assert attempt.callback_type == 4 and "Manage Server" in text
    config = await fake.slash("config", alice, {"mode": "inline"}, subcommand="delivery")
    assert "Manage Server" in await answered(run, config)
    usage = await run.rt.quotas.usage(space(fake.guild_id), alice.id)
    assert usage.limit == 100  # unchanged
    assert (await run.rt.chat.configs.get(space(fake.guild_id))).delivery_mode == "thread"


async def test_admins_set_grant_block_and_report(
    run: Running, fake: FakeDiscord, alice: FakeUser, admin: FakeUser
) -> None:
    quotas = run.rt.quotas
    text = await answered(
        run,
        await fake.slash(
            "quota", admin, {"user": alice, "limit": 3, "period": "week"}, subcommand="set"
        ),
    )
    assert "3 images per week" in text
    usage = await quotas.usage(space(fake.guild_id), alice.id)
    assert usage.limit == 3 and usage.period is Period.WEEK
    await answered(
        run, await fake.slash("quota", admin, {"user": alice, "images": 2}, subcommand="grant")
    )
    assert (await quotas.usage(space(fake.guild_id), alice.id)).limit == 5
    await answered(run, await fake.slash("quota", admin, {"user": alice}, subcommand="block"))
    refused = await fake.slash("imagine", alice, {"prompt": "a cat"})
    assert "blocked" in (await answered(run, refused)).lower()
    await answered(run, await fake.slash("quota", admin, {"user": alice}, subcommand="unblock"))
    await fake.slash("imagine", alice, {"prompt": "a cat"})
    await run.wait_results()
    await run.finish()
    report = await fake.slash("quota", admin, subcommand="report")
    text = await answered(run, report)
    assert "**1** images" in text and f"<@{alice.id}>: 1" in text
    budget = await fake.slash("quota", admin, {"images": 500}, subcommand="budget")
    assert "500 images a month" in await answered(run, budget)
    assert (await quotas.usage(space(fake.guild_id), alice.id)).server_budget == 500


async def test_role_and_default_limits(run: Running, fake: FakeDiscord, admin: FakeUser) -> None:
    artists = fake.add_role("artists")
    member = fake.add_user("painter", role_ids=[artists.id])
    await answered(
        run, await fake.slash("quota", admin, {"limit": 7, "period": "day"}, subcommand="default")
    )
    await answered(
        run, await fake.slash("quota", admin, {"role": artists, "limit": 40}, subcommand="role")
    )
    usage = await run.rt.quotas.usage(space(fake.guild_id), member.id, [artists.id])
    assert usage.limit == 40
    assert (await run.rt.quotas.usage(space(fake.guild_id), admin.id)).limit == 7
    await answered(run, await fake.slash("quota", admin, {"role": artists}, subcommand="role"))
    assert (await run.rt.quotas.usage(space(fake.guild_id), member.id, [artists.id])).limit == 7


async def test_a_role_limit_for_everyone_is_refused_with_a_pointer_to_default(
    run: Running, fake: FakeDiscord, admin: FakeUser
) -> None:
    # Members' role ids never include @everyone: such a limit would be stored and ignored.
    attempt = await fake.slash(
        "quota", admin, {"role": fake.everyone, "limit": 3}, subcommand="role"
    )
    text = await answered(run, attempt)
    assert "/quota default" in text and "@everyone" in text
    assert await run.rt.db.fetchall("SELECT * FROM quota_limits") == []


async def test_config_changes_are_saved_and_used(
    run: Running, fake: FakeDiscord, admin: FakeUser
) -> None:
    art = await fake.create_channel("art")
    await answered(
        run, await fake.slash("config", admin, {"mode": "inline"}, subcommand="delivery")
    )
    await answered(
        run,
        await fake.slash("config", admin, {"action": "add", "channel": art}, subcommand="channels"),
    )
    await answered(
        run, await fake.slash("config", admin, {"enabled": False}, subcommand="normalization")
    )
    stored = await run.rt.quotas.guild_config(space(fake.guild_id))
    assert stored.delivery_mode == "inline" and stored.allowed_channel_ids == [art.id]
    assert stored.normalize_images is False
    shown = await answered(run, await fake.slash("config", admin, subcommand="show"))
    assert "inline" in shown and f"<#{art.id}>" in shown


async def test_usage_shows_my_quota_and_when_it_resets(
    run: Running, fake: FakeDiscord, alice: FakeUser
) -> None:
    await fake.slash("imagine", alice, {"prompt": "a cat", "count": 3})
    await run.wait_results()
    await run.finish()
    text = await answered(run, await fake.slash("usage", alice))
    assert "Used: 3" in text and "Remaining: 97" in text and "Resets: <t:" in text


async def test_help_explains_the_commands(run: Running, fake: FakeDiscord, alice: FakeUser) -> None:
    shown = await fake.slash("help", alice)
    await fake.wait_callback(shown)
    text = shown.text()
    assert shown.callback_type == 4 and "/imagine" in text and "Edit image" in text
    assert "Reply to a message with an image" in text

"""QuotaAdmin on both backends: usage reports, settings, server reports, guild config."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.core.clock import FakeClock
from bot.core.errors import ValidationFailed
from bot.core.models import GuildConfig, JobState, Period
from tests.store_backends import Backend, space
from tests.test_job_store import admin_for, make_job, store_for


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("period", "resets_at"),
    [
        (Period.DAY, ts(2023, 11, 15)),
        (Period.WEEK, ts(2023, 11, 20)),
        (Period.MONTH, ts(2023, 12, 1)),
    ],
)
async def test_usage_report_and_resets_at(
    backend: Backend, clock: FakeClock, period: Period, resets_at: float
) -> None:
    store = store_for(backend, clock)
    admin = admin_for(backend, clock)
    await admin.set_server_default(space("g1"), 10, period)
    done = await store.admit(make_job(clock, count=4))
    await store.admit(make_job(clock, count=2))  # still in flight
    await store.finish(done.id, JobState.DONE, delivered=3)

    report = await admin.usage(space("g1"), "u1")
    assert report.period is period
    assert report.resets_at == resets_at
    assert (report.used, report.in_flight, report.limit, report.remaining) == (5, 2, 10, 5)
    assert not report.blocked and not report.exempt
    assert (report.server_budget, report.server_used) == (None, 5)


async def test_usage_of_a_user_who_never_asked(backend: Backend, clock: FakeClock) -> None:
    admin = admin_for(backend, clock, default_limit=25)
    report = await admin.usage(space("g9"), "nobody")
    assert (report.used, report.in_flight, report.limit, report.remaining) == (0, 0, 25, 25)
    assert report.period is Period.DAY


async def test_settings_are_validated(backend: Backend, clock: FakeClock) -> None:
    admin = admin_for(backend, clock)
    with pytest.raises(ValidationFailed):
        await admin.set_user_limit(space("g1"), "u1", -1)
    with pytest.raises(ValidationFailed):
        await admin.set_server_budget(space("g1"), -5)
    with pytest.raises(ValidationFailed):
        await admin.grant(space("g1"), "u1", 0, granted_by="mod")
    row = await backend.fetchone(
        "SELECT (SELECT COUNT(*) FROM quota_limits) + (SELECT COUNT(*) FROM server_budgets)"
        " + (SELECT COUNT(*) FROM grants)"
    )
    assert row is not None and row[0] == 0


async def test_limits_replace_and_keep_their_period(backend: Backend, clock: FakeClock) -> None:
    admin = admin_for(backend, clock)
    await admin.set_server_default(space("g1"), 50, Period.MONTH)
    await admin.set_user_limit(space("g1"), "u1", 3, Period.DAY)
    await admin.set_user_limit(space("g1"), "u1", 7)  # replaces; no period: the server's
    report = await admin.usage(space("g1"), "u1")
    # The override applies even below the server default, in the server's period.
    assert (report.limit, report.period) == (7, Period.MONTH)
    await admin.set_user_limit(space("g1"), "u1", 70)
    assert (await admin.usage(space("g1"), "u1")).limit == 70
    await admin.set_role_limit(space("g1"), "r", 5, Period.DAY)  # 5/day ~ 150/month: more generous
    report = await admin.usage(space("g1"), "u1", ["r"])
    assert (report.limit, report.period) == (5, Period.DAY)


async def test_server_report_counts_charged_images_and_cost(
    backend: Backend, clock: FakeClock
) -> None:
    store = store_for(backend, clock)
    admin = admin_for(backend, clock)  # 0.03 USD per image
    await admin.set_server_budget(space("g1"), 100)
    a = await store.admit(make_job(clock, user="a", count=4))
    b = await store.admit(make_job(clock, user="b", count=2))
    failed = await store.admit(make_job(clock, user="c", count=3))
    await store.admit(make_job(clock, user="d", count=1))  # in flight: not in the report
    await store.admit(make_job(clock, user="a", guild="g2", count=4))  # another server
    await store.finish(a.id, JobState.DONE, delivered=4)
    await store.finish(b.id, JobState.DONE, delivered=1)
    await store.finish(failed.id, JobState.FAILED, delivered=0)

    report = await admin.server_report(space("g1"))
    assert report.period_start == ts(2023, 11, 1)
    assert (report.images, report.budget) == (5, 100)
    assert report.cost_usd == pytest.approx(0.15)
    assert [(u.user_id, u.images) for u in report.users] == [("a", 4), ("b", 1)]
    assert report.users[0].cost_usd == pytest.approx(0.12)

    await clock.advance(17 * 86_400)  # into December: a new report
    december = await admin.server_report(space("g1"))
    assert (december.images, december.users) == (0, [])


async def test_guild_config_round_trip(backend: Backend, clock: FakeClock) -> None:
    admin = admin_for(backend, clock)
    assert await admin.guild_config(space("g1")) == GuildConfig(guild_id="g1")
    config = GuildConfig(
        guild_id="g1",
        delivery_mode="inline",
        normalize_images=False,
        allowed_channel_ids=["5", "6"],
        admin_exempt=True,
    )
    await admin.set_guild_config(config)
    assert await admin.guild_config(space("g1")) == config
    await admin.set_guild_config(config.model_copy(update={"admin_exempt": False}))
    assert (await admin.guild_config(space("g1"))).admin_exempt is False
    assert await admin.guild_config(space("g2")) == GuildConfig(guild_id="g2")

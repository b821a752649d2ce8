"""Issue 13, rule 6: the ledger stores the unit price with each charge, and spend
reports sum the stored prices, so a price change never rewrites the past."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from bot.chat.cards import info_card
from bot.core.clock import FakeClock
from bot.core.models import GenerationRequest, Job, JobState, Requester
from bot.core.quota import QuotaDefaults
from bot.discord.embeds import STYLE
from bot.runtime import Runtime
from bot.settings import Settings
from storage.sqlite.db import Database
from storage.sqlite.jobs import SqliteJobStore
from storage.sqlite.quotas import SqliteQuotaAdmin
from tests.store_backends import Backend, space

ROOMY = QuotaDefaults(default_limit=1000, max_running=1000, max_queued=1000)
_ids = itertools.count(1)


def make_job(clock: FakeClock, *, count: int = 1, user: str = "u1") -> Job:
    now = clock.now()
    return Job(
        id=f"price-{next(_ids)}",
        requester=Requester(platform="discord", user_id=user, guild_id="g1"),
        provider="mock",
        request=GenerationRequest(prompt="a lighthouse", count=count),
        created_at=now,
        updated_at=now,
    )


def store_for(db: Database, clock: FakeClock) -> SqliteJobStore:
    return SqliteJobStore(db, clock, ROOMY)


def admin_for(db: Database, clock: FakeClock) -> SqliteQuotaAdmin:
    return SqliteQuotaAdmin(db, clock, ROOMY, price_per_image_usd=0.03)


def settings(db_path: Path, price: float) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_path=db_path,
        wan_provider="mock",
        price_per_image_usd=price,
        default_user_limit=100,
    )


async def charge_one(rt: Runtime, clock: FakeClock) -> str:
    job = await rt.jobs.admit(make_job(clock, count=1))
    await rt.jobs.finish(job.id, JobState.DONE, delivered=1)
    return job.id


async def test_a_price_change_never_rewrites_the_past(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "wanbot.sqlite3"
    async with Runtime(settings(path, 0.03), clock=clock) as rt:
        first = await charge_one(rt, clock)
        before = await rt.quotas.server_report(space("g1"))
        first_row = await rt.db.fetchall("SELECT * FROM ledger WHERE job_id = ?", (first,))
    assert before.cost_usd == pytest.approx(0.03)
    # The operator changes PRICE_PER_IMAGE_USD and restarts the bot.
    async with Runtime(settings(path, 0.05), clock=clock) as rt:
        second = await charge_one(rt, clock)
        report = await rt.quotas.server_report(space("g1"))
        rows = await rt.db.fetchall(
            "SELECT job_id, unit_price_usd FROM ledger WHERE kind = 'charge' ORDER BY id"
        )
        first_again = await rt.db.fetchall("SELECT * FROM ledger WHERE job_id = ?", (first,))
    assert report.images == 2
    assert report.cost_usd == pytest.approx(0.08)  # not 2 x 0.05 = 0.10
    assert [(r[0], r[1]) for r in rows] == [(first, 0.03), (second, 0.05)]
    assert [tuple(r) for r in first_again] == [tuple(r) for r in first_row]  # unchanged
    [user] = report.users
    assert user.cost_usd == pytest.approx(0.08) and user.images == 2


async def test_charges_without_a_stored_price_use_the_configured_one(
    db: Database, clock: FakeClock
) -> None:
    # Charges settled before migration 0003 (or by a store given no price) have no
    # stored price: they are costed at the configured price, next to the priced ones.
    old = store_for(db, clock)
    job = await old.admit(make_job(clock, count=2, user="u1"))
    await old.finish(job.id, JobState.DONE, delivered=2)
    priced = store_for(db, clock)
    priced.price_per_image_usd = 0.10
    job = await priced.admit(make_job(clock, count=1, user="u2"))
    await priced.finish(job.id, JobState.DONE, delivered=1)
    report = await admin_for(db, clock).server_report(space("g1"))  # configured: 0.03
    assert report.images == 3
    assert report.cost_usd == pytest.approx(2 * 0.03 + 0.10)
    assert {u.user_id: u.cost_usd for u in report.users} == {
        "u1": pytest.approx(0.06),
        "u2": pytest.approx(0.10),
    }


async def test_refunds_and_failed_jobs_cost_nothing(db: Database, clock: FakeClock) -> None:
    store = store_for(db, clock)
    store.price_per_image_usd = 0.03
    job = await store.admit(make_job(clock, count=4))
    await store.finish(job.id, JobState.DONE, delivered=1)  # 3 refunded
    failed = await store.admit(make_job(clock, count=2))
    await store.finish(failed.id, JobState.FAILED, delivered=0)
    report = await admin_for(db, clock).server_report(space("g1"))
    assert (report.images, report.cost_usd) == (1, pytest.approx(0.03))


async def test_info_and_show_cost_a_job_at_its_stored_price(
    backend: Backend, clock: FakeClock
) -> None:
    # The Info button and /show read the job back: it carries the price it was admitted
    # at, so a later PRICE_PER_IMAGE_USD does not re-price it (both backends).
    store = backend.jobs(clock, ROOMY)
    store.price_per_image_usd = 0.03  # type: ignore[attr-defined]
    job = await store.admit(make_job(clock, count=2))
    assert job.unit_price_usd == 0.03
    await store.finish(job.id, JobState.DONE, delivered=2)
    await backend.reopen()
    stored = await backend.jobs(clock, ROOMY).get(job.id)
    assert stored is not None and stored.unit_price_usd == 0.03
    [cost] = [f.value for f in info_card(stored, 0.05, STYLE).fields if f.name == "Cost"]
    assert cost == "2 images charged · $0.060"
    # A job from before migration 0003 has no stored price: the configured one, as the
    # spend report does.
    unpriced = stored.model_copy(update={"unit_price_usd": None})
    [cost] = [f.value for f in info_card(unpriced, 0.05, STYLE).fields if f.name == "Cost"]
    assert cost == "2 images charged · $0.100"


async def test_report_and_chart_days_sum_stored_prices_on_both_backends(
    backend: Backend, clock: FakeClock
) -> None:
    store = backend.jobs(clock, ROOMY)
    store.price_per_image_usd = 0.03  # type: ignore[attr-defined]
    job = await store.admit(make_job(clock, count=2))
    await store.finish(job.id, JobState.DONE, delivered=2)
    store.price_per_image_usd = 0.05  # type: ignore[attr-defined]  # the price changes
    job = await store.admit(make_job(clock, count=1, user="u2"))
    await store.finish(job.id, JobState.DONE, delivered=1)
    report = await backend.quotas(clock, ROOMY, 0.07).server_report(space("g1"))  # today: 0.07
    assert report.cost_usd == pytest.approx(2 * 0.03 + 0.05)
    assert {u.user_id: u.cost_usd for u in report.users} == {
        "u1": pytest.approx(0.06),
        "u2": pytest.approx(0.05),
    }
    [day] = report.days  # the spend chart's bars
    assert (day.images, day.cost_usd) == (3, pytest.approx(0.11))

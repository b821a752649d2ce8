"""The JobStore contract on both backends (a real SQLite file and a real PostgreSQL
database, see tests/store_backends.py): admission, settlement, compare-and-set."""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import replace

import pytest

from bot.chat.style import PlainStyle
from bot.chat.wording import quota_refusal
from bot.core.clock import FakeClock
from bot.core.errors import NotFound, QuotaDenied, QuotaReason
from bot.core.models import (
    ErrorKind,
    GenerationRequest,
    GuildConfig,
    ImageRef,
    Job,
    JobState,
    Period,
    Requester,
)
from bot.core.ports import JobStore, QuotaAdmin
from bot.core.quota import QuotaDefaults
from tests.store_backends import Backend, space

DAY = 86_400.0
ROOMY = QuotaDefaults(default_limit=1000, max_running=1000, max_queued=1000)
_ids = itertools.count(1)


def make_job(
    clock: FakeClock,
    *,
    user: str = "u1",
    guild: str | None = "g1",
    count: int = 1,
    roles: tuple[str, ...] = (),
    is_admin: bool = False,
    platform: str = "discord",
    job_id: str | None = None,
) -> Job:
    now = clock.now()
    return Job(
        id=job_id or f"job-{next(_ids)}",
        requester=Requester(
            platform=platform,
            user_id=user,
            guild_id=guild,
            role_ids=list(roles),
            is_admin=is_admin,
        ),
        provider="mock",
        request=GenerationRequest(prompt="a lighthouse", count=count),
        created_at=now,
        updated_at=now,
    )


def store_for(backend: Backend, clock: FakeClock, **defaults: object) -> JobStore:
    return backend.jobs(clock, replace(ROOMY, **defaults))


def admin_for(backend: Backend, clock: FakeClock, **defaults: object) -> QuotaAdmin:
    return backend.quotas(clock, replace(ROOMY, **defaults), price=0.03)


async def ledger(backend: Backend, job_id: str | None = None) -> list[tuple[str, int]]:
    where, params = ("WHERE job_id = ?", (job_id,)) if job_id else ("", ())
    rows = await backend.fetchall(f"SELECT kind, images FROM ledger {where} ORDER BY id", params)
    return [(row[0], row[1]) for row in rows]


async def count(backend: Backend, table: str) -> int:
    row = await backend.fetchone(f"SELECT COUNT(*) FROM {table}")
    assert row is not None
    return int(row[0])


async def denial(store: JobStore, job: Job) -> QuotaDenied:
    with pytest.raises(QuotaDenied) as info:
        await store.admit(job)
    return info.value


# --- admission -----------------------------------------------------------------------


async def test_admit_persists_the_job_and_reserves(backend: Backend, clock: FakeClock) -> None:
    store = store_for(backend, clock)
    job = make_job(clock, count=3).model_copy(
        update={
            "state": JobState.RUNNING,  # ignored: an admitted job is always QUEUED
            "request": GenerationRequest(
                prompt="edit",
                negative_prompt="blur",
                aspect_ratio="16:9",
                count=3,
                images=[ImageRef(url="https://cdn.example/a.png", width=800, height=600)],
                seed=7,
            ),
            "delivery": {"interaction": "tok", "n": [1, 2]},
            "parent_job_id": "job-0",
            "deadline_at": clock.now() + 900,
        }
    )
    admitted = await store.admit(job)
    assert (admitted.state, admitted.reserved, admitted.delivered) == (JobState.QUEUED, 3, 0)
    assert await store.get(job.id) == admitted  # every field survives the round trip
    assert await ledger(backend) == [("reserve", 3)]
    assert await store.get("nope") is None


async def test_500_concurrent_admits_accept_exactly_the_quota(
    backend: Backend, clock: FakeClock
) -> None:
    store = store_for(backend, clock, default_limit=10)
    jobs = [make_job(clock, user="hammer") for _ in range(500)]
    results = await asyncio.gather(*(store.admit(job) for job in jobs), return_exceptions=True)
    accepted = [r for r in results if isinstance(r, Job)]
    denied = [r for r in results if isinstance(r, QuotaDenied)]
    assert len(accepted) == 10
    assert len(denied) == 490
    assert {d.reason for d in denied} == {QuotaReason.USER_LIMIT}
    assert await count(backend, "jobs") == 10
    assert await ledger(backend) == [("reserve", 1)] * 10


async def test_400_concurrent_requests_against_a_limit_of_50_grant_50(
    backend: Backend, clock: FakeClock
) -> None:
    # One user against their limit (the per-user lock), then 400 users against one
    # server's monthly budget (the per-scope lock).
    store = store_for(backend, clock, default_limit=50)
    results = await asyncio.gather(
        *(store.admit(make_job(clock, user="one")) for _ in range(400)), return_exceptions=True
    )
    assert sum(isinstance(r, Job) for r in results) == 50
    assert {r.reason for r in results if isinstance(r, QuotaDenied)} == {QuotaReason.USER_LIMIT}
    await admin_for(backend, clock).set_server_budget(space("g2"), 50)
    results = await asyncio.gather(
        *(store.admit(make_job(clock, user=f"m{i}", guild="g2")) for i in range(400)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Job) for r in results) == 50
    assert {r.reason for r in results if isinstance(r, QuotaDenied)} == {QuotaReason.SERVER_BUDGET}
    assert await ledger(backend) == [("reserve", 1)] * 100


async def test_denied_admit_writes_nothing(backend: Backend, clock: FakeClock) -> None:
    store = store_for(backend, clock, default_limit=2)
    await store.admit(make_job(clock, count=2))
    before = (
        await count(backend, "jobs"),
        await ledger(backend),
        await count(backend, "usage_daily"),
    )
    denied = await denial(store, make_job(clock))
    assert denied.reason is QuotaReason.USER_LIMIT
    assert (
        await count(backend, "jobs"),
        await ledger(backend),
        await count(backend, "usage_daily"),
    ) == before


async def test_duplicate_job_id_is_refused(backend: Backend, clock: FakeClock) -> None:
    store = store_for(backend, clock)
    job = make_job(clock)
    await store.admit(job)
    with pytest.raises(ValueError, match="already exists"):
        await store.admit(job)
    assert await ledger(backend) == [("reserve", 1)]


# --- settlement ----------------------------------------------------------------------


async def test_finish_charges_delivered_and_refunds_the_rest(
    backend: Backend, clock: FakeClock
) -> None:
    store = store_for(backend, clock)
    admin = admin_for(backend, clock)
    job = await store.admit(make_job(clock, count=4))
    clock_before = clock.now()
    done = await store.finish(job.id, JobState.DONE, delivered=3, result_urls=["a", "b", "c"])
    assert (done.state, done.delivered, done.result_urls) == (JobState.DONE, 3, ["a", "b", "c"])
    assert done.finished_at == clock_before
    assert await ledger(backend, job.id) == [("reserve", 4), ("charge", 3), ("refund", 1)]
    assert (await admin.usage(space("g1"), "u1")).used == 3


async def test_repeated_finish_changes_nothing(backend: Backend, clock: FakeClock) -> None:
    store = store_for(backend, clock)
    job = await store.admit(make_job(clock, count=2))
    first = await store.finish(job.id, JobState.FAILED, delivered=0, error_kind=ErrorKind.TIMEOUT)
    entries = await ledger(backend)
    await clock.advance(60)
    again = await store.finish(job.id, JobState.DONE, delivered=2, error_message="late")
    assert again == first  # returned unchanged: still FAILED, nothing charged
    assert await ledger(backend) == entries == [("reserve", 2), ("charge", 0), ("refund", 2)]
    # A compare-and-set from any active state cannot touch it either.
    assert await store.transition(job.id, [JobState.DELIVERING], JobState.DONE) is None
    with pytest.raises(NotFound):
        await store.finish("missing", JobState.DONE, delivered=1)
    with pytest.raises(ValueError, match="final state"):
        await store.finish(job.id, JobState.RUNNING, delivered=0)


async def test_concurrent_finishes_settle_once(backend: Backend, clock: FakeClock) -> None:
    store = store_for(backend, clock)
    job = await store.admit(make_job(clock, count=3))
    results = await asyncio.gather(
        *(store.finish(job.id, JobState.DONE, delivered=k % 4) for k in range(20))
    )
    assert len({r.delivered for r in results}) == 1  # every caller sees the one outcome
    charged = results[0].delivered
    refund = [("refund", 3 - charged)] if charged < 3 else []  # none when zero (0006)
    assert await ledger(backend, job.id) == [("reserve", 3), ("charge", charged), *refund]


async def test_charge_never_exceeds_the_reservation(backend: Backend, clock: FakeClock) -> None:
    store = store_for(backend, clock)
    job = await store.admit(make_job(clock, count=2))
    done = await store.finish(job.id, JobState.DONE, delivered=5)
    assert done.delivered == 2
    # Nothing refunded: no refund row (migration 0006); the charge marks the settle.
    assert await ledger(backend, job.id) == [("reserve", 2), ("charge", 2)]


async def test_a_second_settle_changes_nothing_without_a_refund_row(
    backend: Backend, clock: FakeClock
) -> None:
    store = store_for(backend, clock)
    job = await store.admit(make_job(clock, count=2))
    await store.finish(job.id, JobState.DONE, delivered=2)
    usage = await backend.fetchall("SELECT used, charged FROM usage_daily")
    # Forced out of its final state behind the store's back, then settled again as a
    # failure: the charge exists, so neither a second charge nor a refund is written.
    await backend.fetchall("UPDATE jobs SET state = 'running' WHERE id = ?", (job.id,))
    await clock.advance(1)
    await store.finish(job.id, JobState.FAILED, delivered=0)
    assert await ledger(backend, job.id) == [("reserve", 2), ("charge", 2)]
    assert await backend.fetchall("SELECT used, charged FROM usage_daily") == usage


async def test_transition_to_a_final_state_settles(backend: Backend, clock: FakeClock) -> None:
    store = store_for(backend, clock)
    job = await store.admit(make_job(clock, count=4))
    await store.transition(job.id, [JobState.QUEUED], JobState.DELIVERING)
    done = await store.transition(job.id, [JobState.DELIVERING], JobState.DONE, delivered=2)
    assert done is not None and done.delivered == 2
    assert await ledger(backend, job.id) == [("reserve", 4), ("charge", 2), ("refund", 2)]
    cancelled = await store.admit(make_job(clock, count=1))
    await store.transition(cancelled.id, [JobState.QUEUED], JobState.CANCELLED)
    assert await ledger(backend, cancelled.id) == [("reserve", 1), ("charge", 0), ("refund", 1)]


async def test_ledger_is_append_only(backend: Backend, clock: FakeClock) -> None:
    store = store_for(backend, clock)
    await store.admit(make_job(clock))
    with pytest.raises(Exception, match="append-only"):
        await backend.fetchall("UPDATE ledger SET images = 0")
    with pytest.raises(Exception, match="append-only"):
        await backend.fetchall("DELETE FROM ledger")
    assert await ledger(backend) == [("reserve", 1)]


# --- compare-and-set and updates -----------------------------------------------------


async def test_transition_is_compare_and_set(backend: Backend, clock: FakeClock) -> None:
    store = store_for(backend, clock)
    job = await store.admit(make_job(clock))
    await clock.advance(5)
    wrong = await store.transition(job.id, [JobState.RUNNING], JobState.DELIVERING)
    assert wrong is None
    unchanged = await store.get(job.id)
    assert unchanged is not None and unchanged.state is JobState.QUEUED
    moved = await store.transition(
        job.id, [JobState.QUEUED, JobState.SUBMITTING], JobState.RUNNING, task_id="t-1", progress=5
    )
    assert moved is not None
    assert (moved.state, moved.task_id, moved.progress) == (JobState.RUNNING, "t-1", 5)
    assert moved.updated_at == clock.now()
    # Two racers: exactly one wins.
    racers = await asyncio.gather(
        *(store.transition(job.id, [JobState.RUNNING], JobState.DELIVERING) for _ in range(10))
    )
    assert sum(r is not None for r in racers) == 1
    assert await store.transition(job.id, [], JobState.DONE) is None
    await store.finish(job.id, JobState.DONE, delivered=1)
    with pytest.raises(ValueError, match="final"):
        await store.transition(job.id, [JobState.DONE], JobState.QUEUED)


async def test_update_sets_fields_but_not_state_or_money(
    backend: Backend, clock: FakeClock
) -> None:
    store = store_for(backend, clock)
    job = await store.admit(make_job(clock, count=2))
    updated = await store.update(
        job.id, thread_id="th", status_message_id="m1", delivery={"a": 1}, progress=40
    )
    assert (updated.thread_id, updated.status_message_id, updated.delivery) == (
        "th",
        "m1",
        {"a": 1},
    )
    assert updated.state is JobState.QUEUED and updated.progress == 40
    for bad in ({"state": JobState.DONE}, {"reserved": 9}, {"delivered": 2}, {"bogus": 1}):
        with pytest.raises(ValueError):
            await store.update(job.id, **bad)
    with pytest.raises(ValueError):
        await store.update(job.id, error_kind="not-a-kind")
    with pytest.raises(NotFound):
        await store.update("missing", progress=1)
    assert await store.get(job.id) == updated


async def test_find_by_task_active_jobs_and_user_jobs(backend: Backend, clock: FakeClock) -> None:
    store = store_for(backend, clock)
    first = await store.admit(make_job(clock, user="a"))
    await clock.advance(1)
    second = await store.admit(make_job(clock, user="b"))
    await clock.advance(1)
    third = await store.admit(make_job(clock, user="a"))
    await store.transition(second.id, [JobState.QUEUED], JobState.RUNNING, task_id="T2")
    await store.finish(first.id, JobState.DONE, delivered=1)

    found = await store.find_by_task("mock", "T2")
    assert found is not None and found.id == second.id
    assert await store.find_by_task("other", "T2") is None
    assert [j.id for j in await store.active_jobs()] == [second.id, third.id]  # oldest first
    history = await store.user_jobs("discord", "a")
    assert [j.id for j in history] == [third.id, first.id]  # newest first
    assert [j.id for j in await store.user_jobs("discord", "a", limit=1)] == [third.id]
    assert await store.user_jobs("slack", "a") == []


# --- quota rules through the store ----------------------------------------------------


async def test_periods_roll_over(backend: Backend, clock: FakeClock) -> None:
    store = store_for(backend, clock, default_limit=2)
    late = await store.admit(make_job(clock, count=2))  # 22:13 UTC
    assert (await denial(store, make_job(clock))).reason is QuotaReason.USER_LIMIT
    await clock.advance(2 * 3600)  # past midnight UTC
    fresh = await store.admit(make_job(clock, count=2))
    # Yesterday's job settles today: its refund goes back to yesterday, not today.
    await store.finish(late.id, JobState.FAILED, delivered=0)
    assert (await denial(store, make_job(clock))).reason is QuotaReason.USER_LIMIT
    await store.finish(fresh.id, JobState.FAILED, delivered=0)
    await store.admit(make_job(clock, count=2))


async def test_limits_survive_a_restart(backend: Backend, clock: FakeClock) -> None:
    store = store_for(backend, clock, default_limit=3)
    await store.admit(make_job(clock, count=2))
    await backend.reopen()
    store = store_for(backend, clock, default_limit=3)
    assert (await denial(store, make_job(clock, count=2))).remaining == 1
    await store.admit(make_job(clock, count=1))


async def test_overrides_most_generous_applies(backend: Backend, clock: FakeClock) -> None:
    store = store_for(backend, clock, default_limit=0)
    admin = admin_for(backend, clock)
    await admin.set_server_default(space("g1"), 2, Period.DAY)
    await admin.set_role_limit(space("g1"), "artist", 4)
    await admin.set_user_limit(space("g1"), "u1", 1)

    plain = make_job(clock, user="u2", count=3)
    refused = quota_refusal(await denial(store, plain), PlainStyle(), clock.now())
    assert refused.startswith("This needs 3 images but you have 2")
    # u1's own override (1) is lower than the role's (4): the most generous applies.
    await store.admit(make_job(clock, user="u1", roles=("artist", "other"), count=4))
    assert (await admin.usage(space("g1"), "u1", ["artist"])).remaining == 0
    # Without the role, u1's override applies even though the server default is higher.
    assert (await admin.usage(space("g1"), "u1")).limit == 1
    await admin.clear_user_limit(space("g1"), "u1")
    await admin.clear_role_limit(space("g1"), "artist")
    assert (await admin.usage(space("g1"), "u1", ["artist"])).limit == 2


async def test_grants_add_to_the_current_period(backend: Backend, clock: FakeClock) -> None:
    store = store_for(backend, clock, default_limit=1)
    admin = admin_for(backend, clock, default_limit=1)
    await store.admit(make_job(clock))
    assert (await denial(store, make_job(clock))).reason is QuotaReason.USER_LIMIT
    await admin.grant(space("g1"), "u1", 2, granted_by="mod")
    await store.admit(make_job(clock, count=2))
    assert (await denial(store, make_job(clock))).reason is QuotaReason.USER_LIMIT
    await clock.advance(DAY)  # the grant ended with its period
    report = await admin.usage(space("g1"), "u1")
    assert (report.limit, report.bonus, report.used) == (1, 0, 0)


async def test_admin_exemption(backend: Backend, clock: FakeClock) -> None:
    store = store_for(backend, clock, default_limit=0)
    admin = admin_for(backend, clock)
    assert (await denial(store, make_job(clock, is_admin=True))).reason is QuotaReason.USER_LIMIT
    await admin.set_guild_config(GuildConfig(guild_id="g1", admin_exempt=True))
    await store.admit(make_job(clock, is_admin=True, count=4))
    assert (await denial(store, make_job(clock, user="u2"))).reason is QuotaReason.USER_LIMIT
    report = await admin.usage(space("g1"), "u1", is_admin=True)
    assert report.exempt and report.limit is None and report.used == 4


async def test_server_budget_across_users(backend: Backend, clock: FakeClock) -> None:
    store = store_for(backend, clock)
    admin = admin_for(backend, clock)
    await admin.set_server_budget(space("g1"), 5)
    first = await store.admit(make_job(clock, user="a", count=3))
    await store.admit(make_job(clock, user="b", count=2))
    denied = await denial(store, make_job(clock, user="c"))
    assert denied.reason is QuotaReason.SERVER_BUDGET
    said = quota_refusal(denied, PlainStyle(), clock.now())
    assert said.startswith("This server's monthly image budget of 5 images is used up")
    await store.admit(make_job(clock, user="c", guild="g2"))  # another server is unaffected
    await store.finish(first.id, JobState.DONE, delivered=2)  # one refunded image frees room
    await store.admit(make_job(clock, user="c"))
    await admin.set_server_budget(space("g1"), None)
    await store.admit(make_job(clock, user="c", count=4))


async def test_blocked_users(backend: Backend, clock: FakeClock) -> None:
    store = store_for(backend, clock)
    admin = admin_for(backend, clock)
    await admin.block(space("g1"), "u1", reason="spam")
    denied = await denial(store, make_job(clock))
    assert denied.reason is QuotaReason.BLOCKED
    await store.admit(make_job(clock, guild="g2"))  # blocks are per server
    assert (await admin.usage(space("g1"), "u1")).blocked
    await admin.unblock(space("g1"), "u1")
    await store.admit(make_job(clock))


async def test_running_and_queued_limits(backend: Backend, clock: FakeClock) -> None:
    store = store_for(backend, clock, max_running=1, max_queued=1)
    first = await store.admit(make_job(clock))
    await store.admit(make_job(clock))
    denied = await denial(store, make_job(clock, guild="g2"))  # counted across servers
    assert denied.reason is QuotaReason.QUEUED_LIMIT
    await store.admit(make_job(clock, platform="console"))  # another platform, another user
    await store.finish(first.id, JobState.DONE, delivered=1)
    await store.admit(make_job(clock))

    strict = store_for(backend, clock, max_running=1, max_queued=0)
    running = await strict.admit(make_job(clock, user="solo"))
    await strict.transition(running.id, [JobState.QUEUED], JobState.RUNNING)
    denied = await denial(strict, make_job(clock, user="solo"))
    assert denied.reason is QuotaReason.RUNNING_LIMIT
    await strict.transition(running.id, [JobState.RUNNING], JobState.FAILED)
    await strict.admit(make_job(clock, user="solo"))


async def test_direct_use_has_its_own_scope(backend: Backend, clock: FakeClock) -> None:
    store = store_for(backend, clock, default_limit=5)
    admin = admin_for(backend, clock)
    await admin.set_user_limit(space("direct", "console"), "local", 1)
    job = await store.admit(make_job(clock, user="local", guild=None, platform="console"))
    row = await backend.fetchone("SELECT guild_id FROM ledger WHERE job_id = ?", (job.id,))
    assert row is not None and row[0] == "direct"
    denied = await denial(store, make_job(clock, user="local", guild=None, platform="console"))
    assert denied.reason is QuotaReason.USER_LIMIT


async def test_result_urls_are_kept_beside_the_row_until_the_job_ends(
    backend: Backend, clock: FakeClock
) -> None:
    store = store_for(backend, clock)
    urls = ["https://file.apixo.ai/r/1.png?sig=" + "a" * 270, "https://file.apixo.ai/r/2.png"]
    ids = []
    for _ in range(2):
        job = await store.admit(make_job(clock, count=2))
        await store.transition(job.id, [JobState.QUEUED], JobState.RUNNING, task_id="t")
        delivering = await store.transition(
            job.id, [JobState.RUNNING], JobState.DELIVERING, result_urls=urls
        )
        assert delivering is not None and delivering.result_urls == urls
        ids.append(job.id)
    first, second = ids
    assert [j.result_urls for j in await store.active_jobs()] == [urls, urls]
    assert (await store.update(first, progress=90)).result_urls == urls
    assert [r[0] for r in await backend.fetchall("SELECT result_urls FROM jobs")] == ["[]"] * 2
    done = await store.transition(
        first, [JobState.DELIVERING], JobState.DONE, delivered=2, result_urls=[]
    )
    assert done is not None and done.result_urls == []
    failed = await store.finish(second, JobState.FAILED, delivered=0)
    assert failed.result_urls == []  # the schema drops them at any end
    assert await backend.fetchall("SELECT * FROM job_results") == []


# --- what a row keeps (migration 0008: database bytes per job) ------------------------


async def test_a_final_job_keeps_no_callback_token(backend: Backend, clock: FakeClock) -> None:
    store = store_for(backend, clock)
    ends = []
    for _ in range(3):
        job = await store.admit(make_job(clock, count=2).model_copy(update={"callback_token": "t"}))
        running = await store.transition(job.id, [JobState.QUEUED], JobState.RUNNING, task_id="x")
        assert running is not None and running.callback_token == "t"  # kept while active
        assert (await store.update(job.id, progress=50)).callback_token == "t"
        ends.append(job.id)
    by_finish, by_transition, cancelled = ends
    done = await store.finish(by_finish, JobState.DONE, delivered=2)
    moved = await store.transition(by_transition, [JobState.RUNNING], JobState.FAILED)
    gone = await store.transition(
        cancelled, [JobState.RUNNING], JobState.CANCELLED, callback_token="ignored"
    )
    assert moved is not None and gone is not None
    for job in (done, moved, gone):
        assert job.callback_token is None
        stored = await store.get(job.id)
        assert stored is not None and stored.callback_token is None
    rows = await backend.fetchall("SELECT callback_token FROM jobs")
    assert [r[0] for r in rows] == [None] * 3
    # Settled exactly as before: clearing the token is part of the same update.
    assert await ledger(backend, by_finish) == [("reserve", 2), ("charge", 2)]
    assert await ledger(backend, by_transition) == [("reserve", 2), ("charge", 0), ("refund", 2)]


async def test_a_row_leaves_out_only_what_is_never_read_back(
    backend: Backend, clock: FakeClock
) -> None:
    store = store_for(backend, clock)
    job = make_job(clock, count=3, roles=("r1", "r2"), is_admin=True)
    named = job.requester.model_copy(update={"channel_id": "c1", "display_name": "Ann"})
    job = job.model_copy(update={"requester": named})
    admitted = await store.admit(job)
    stored = await store.get(job.id)
    assert stored is not None
    # Role ids and the display name are only ever read from a live requester.
    assert stored.requester == admitted.requester.model_copy(
        update={"role_ids": [], "display_name": None}
    )
    assert stored.model_copy(update={"requester": admitted.requester}) == admitted
    assert stored.request.count == 3 == stored.reserved
    row = await backend.fetchone("SELECT requester, request FROM jobs WHERE id = ?", (job.id,))
    assert json.loads(row[0]) == {"channel_id": "c1", "is_admin": True}
    assert "count" not in json.loads(row[1])  # it is the reservation
    # A request set later keeps its own count, even the default one.
    one = GenerationRequest(prompt="again", count=1)
    assert (await store.update(job.id, request=one)).request == one
    again = await store.get(job.id)
    assert again is not None and again.request == one
    row = await backend.fetchone("SELECT request FROM jobs WHERE id = ?", (job.id,))
    assert json.loads(row[0])["count"] == 1


async def test_rows_written_before_0008_read_the_same(backend: Backend, clock: FakeClock) -> None:
    store = store_for(backend, clock)
    four = await store.admit(make_job(clock, count=4))
    one = await store.admit(make_job(clock, count=1))
    # As 0006/0007 wrote them: role ids and name kept, the count written unless 1.
    old = '{"role_ids":["r1"],"display_name":"Ann"}'
    await backend.fetchall(
        "UPDATE jobs SET requester = ?, request = ? WHERE id = ?",
        (old, '{"prompt":"a lighthouse","count":4}', four.id),
    )
    await backend.fetchall(
        "UPDATE jobs SET requester = ?, request = ? WHERE id = ?",
        (old, '{"prompt":"a lighthouse"}', one.id),
    )
    for admitted, count in ((four, 4), (one, 1)):
        stored = await store.get(admitted.id)
        assert stored is not None
        assert stored.request == admitted.request and stored.request.count == count
        assert (stored.requester.role_ids, stored.requester.display_name) == (["r1"], "Ann")
        assert (stored.requester.user_id, stored.requester.guild_id) == ("u1", "g1")

"""The platform in the data (issue 14): the same user or server id on two platforms is
two quota spaces, on both backends; migration 0007 keeps an existing install's data
(Discord's, and the console's 'direct' scope) and moves callback tokens to their column."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bot.core.clock import FakeClock
from bot.core.errors import QuotaDenied, QuotaReason
from bot.core.models import GuildConfig, Job, JobState, Period, Requester, Space
from storage.postgres.db import _SCHEMA_TABLE_SQL, SCHEMA_TABLE, PgDatabase, load_pg_migrations
from storage.sqlite.db import Database, _split_sql, load_migrations
from tests.pg import PgCluster, fresh_name
from tests.store_backends import Backend, space
from tests.test_job_store import admin_for, denial, make_job, store_for

DISCORD, SLACK = space("g1"), space("g1", "slack")
QUOTA_TABLES = (
    "ledger",
    "usage_daily",
    "guild_daily",
    "quota_limits",
    "grants",
    "blocks",
    "server_budgets",
    "guild_config",
)


def test_a_requester_names_its_space() -> None:
    assert Requester(platform="slack", user_id="U1", guild_id="T1").space == Space(
        platform="slack", id="T1"
    )
    # The console has no server: its own 'direct' space, not Discord's.
    console = Requester(platform="console", user_id="local")
    assert console.space == Space(platform="console", id="direct")
    assert console.space != Requester(platform="discord", user_id="local").space


async def test_the_same_ids_on_two_platforms_share_nothing(
    backend: Backend, clock: FakeClock
) -> None:
    store = store_for(backend, clock, default_limit=1)
    admin = admin_for(backend, clock, default_limit=1)
    await admin.set_user_limit(DISCORD, "u1", 2)
    await admin.grant(SLACK, "u1", 3, granted_by="mod")
    await admin.set_server_budget(SLACK, 100)
    await admin.block(DISCORD, "u2", reason="spam")

    on_discord = await store.admit(make_job(clock, user="u1", count=2))
    assert (await denial(store, make_job(clock, user="u1"))).reason is QuotaReason.USER_LIMIT
    # Slack's u1 has the default (1) plus the grant (3), whatever Discord's u1 used.
    on_slack = await store.admit(make_job(clock, user="u1", count=4, platform="slack"))
    blocked = await denial(store, make_job(clock, user="u2"))
    assert blocked.reason is QuotaReason.BLOCKED
    other = await store.admit(make_job(clock, user="u2", platform="slack"))

    discord_usage = await admin.usage(DISCORD, "u1")
    slack_usage = await admin.usage(SLACK, "u1")
    assert (discord_usage.used, discord_usage.limit, discord_usage.bonus) == (2, 2, 0)
    assert (discord_usage.server_budget, discord_usage.server_used) == (None, 2)
    assert (slack_usage.used, slack_usage.limit, slack_usage.bonus) == (4, 4, 3)
    assert (slack_usage.server_budget, slack_usage.server_used) == (100, 5)
    assert (await admin.usage(DISCORD, "u2")).blocked
    assert not (await admin.usage(SLACK, "u2")).blocked

    for job in (on_discord, on_slack, other):
        await store.finish(job.id, JobState.DONE, delivered=job.reserved - 1)
    rows = await backend.fetchall(
        "SELECT platform, guild_id, user_id, kind, images FROM ledger ORDER BY id"
    )
    assert [tuple(r) for r in rows] == [
        ("discord", "g1", "u1", "reserve", 2),
        ("slack", "g1", "u1", "reserve", 4),
        ("slack", "g1", "u2", "reserve", 1),
        ("discord", "g1", "u1", "charge", 1),
        ("discord", "g1", "u1", "refund", 1),
        ("slack", "g1", "u1", "charge", 3),
        ("slack", "g1", "u1", "refund", 1),
        ("slack", "g1", "u2", "charge", 0),
        ("slack", "g1", "u2", "refund", 1),
    ]
    daily = await backend.fetchall(
        "SELECT platform, user_id, used, charged FROM usage_daily ORDER BY platform, user_id"
    )
    assert [tuple(r) for r in daily] == [
        ("discord", "u1", 1, 1),
        ("slack", "u1", 3, 3),
        ("slack", "u2", 0, 0),
    ]
    discord_report, slack_report = (
        await admin.server_report(DISCORD),
        await admin.server_report(SLACK),
    )
    assert [(u.user_id, u.images) for u in discord_report.users] == [("u1", 1)]
    assert (discord_report.images, discord_report.budget) == (1, None)
    assert [(u.user_id, u.images) for u in slack_report.users] == [("u1", 3)]
    assert (slack_report.images, slack_report.budget) == (3, 100)

    # Clearing one platform's settings leaves the other's.
    await admin.clear_user_limit(SLACK, "u1")
    await admin.unblock(SLACK, "u2")
    await admin.set_server_budget(DISCORD, None)
    assert (await admin.usage(DISCORD, "u1")).limit == 2
    assert (await admin.usage(DISCORD, "u2")).blocked
    assert (await admin.usage(SLACK, "u1")).server_budget == 100


async def test_limits_and_defaults_of_one_platform_stay_there(
    backend: Backend, clock: FakeClock
) -> None:
    store = store_for(backend, clock, default_limit=0)
    admin = admin_for(backend, clock, default_limit=0)
    await admin.set_server_default(SLACK, 3, Period.WEEK)
    await admin.set_role_limit(DISCORD, "artist", 4)
    assert (await admin.usage(SLACK, "u1")).limit == 3
    assert (await admin.usage(DISCORD, "u1")).limit == 0
    assert (await admin.usage(DISCORD, "u1", ["artist"])).limit == 4
    assert (await admin.usage(SLACK, "u1", ["artist"])).limit == 3
    await store.admit(make_job(clock, roles=("artist",), count=4))
    denied = await denial(store, make_job(clock, roles=("artist",), platform="slack", count=4))
    assert denied.reason is QuotaReason.USER_LIMIT
    await admin.clear_role_limit(SLACK, "artist")  # not Discord's
    assert (await admin.usage(DISCORD, "u1", ["artist"])).limit == 4


async def test_a_server_config_is_seen_by_its_platform_only(
    backend: Backend, clock: FakeClock
) -> None:
    store = store_for(backend, clock, default_limit=0)
    admin = admin_for(backend, clock)
    slack = GuildConfig(guild_id="g1", platform="slack", delivery_mode="inline", admin_exempt=True)
    await admin.set_guild_config(slack)
    assert await admin.guild_config(SLACK) == slack
    assert await admin.guild_config(DISCORD) == GuildConfig(guild_id="g1")
    discord = GuildConfig(guild_id="g1", allowed_channel_ids=["7"])
    await admin.set_guild_config(discord)
    assert await admin.guild_config(DISCORD) == discord
    assert await admin.guild_config(SLACK) == slack  # not overwritten
    # admin_exempt is read at admission from the requester's platform's config.
    await store.admit(make_job(clock, is_admin=True, platform="slack", count=4))
    denied = await denial(store, make_job(clock, is_admin=True))
    assert denied.reason is QuotaReason.USER_LIMIT


async def test_concurrent_admits_are_exact_per_platform(backend: Backend, clock: FakeClock) -> None:
    # One user id on two platforms, each against its own limit of 10, side by side.
    store = store_for(backend, clock, default_limit=10)
    jobs = [make_job(clock, user="hammer", platform=p) for p in ("discord", "slack") * 150]
    results = await asyncio.gather(*(store.admit(job) for job in jobs), return_exceptions=True)
    accepted = [r for r in results if isinstance(r, Job)]
    assert all(isinstance(r, Job | QuotaDenied) for r in results), results
    assert sorted(job.requester.platform for job in accepted) == ["discord"] * 10 + ["slack"] * 10
    rows = await backend.fetchall(
        "SELECT platform, SUM(used) FROM usage_daily GROUP BY platform ORDER BY platform"
    )
    assert [(r[0], int(r[1])) for r in rows] == [("discord", 10), ("slack", 10)]


async def test_a_callback_token_has_its_own_column(backend: Backend, clock: FakeClock) -> None:
    store = store_for(backend, clock)
    job = make_job(clock).model_copy(
        update={"callback_token": "s3cret", "delivery": {"message_id": "5"}}
    )
    admitted = await store.admit(job)
    assert await store.get(job.id) == admitted and admitted.callback_token == "s3cret"
    row = await backend.fetchone("SELECT callback_token, delivery FROM jobs")
    assert row[0] == "s3cret" and "s3cret" not in row[1]
    updated = await store.update(job.id, callback_token="other")
    assert (await store.get(job.id)) == updated and updated.callback_token == "other"


# --- migration 0007 on an install with data ------------------------------------------

_SEED = [
    # A Discord job still queued (its token in the delivery JSON, as before 0007), one
    # Discord job done and one console job done ('direct': the console's scope).
    "INSERT INTO jobs (id, platform, user_id, scope_id, requester, provider, request, state, "
    "reserved, created_at, updated_at, admitted_at, delivery) VALUES "
    "('d1', 'discord', 'u1', 'g1', '{}', 'mock', '{\"prompt\":\"a\",\"count\":3}', 'queued', "
    '3, {t}, {t}, {t}, \'{"callback_token":"tok-1","message_id":"5"}\'), '
    "('d2', 'discord', 'u1', 'g1', '{}', 'mock', '{\"prompt\":\"b\",\"count\":2}', 'queued', "
    "2, {t}, {t}, {t}, '{}'), "
    "('c1', 'console', 'local', 'direct', '{}', 'mock', '{\"prompt\":\"c\"}', 'queued', "
    "1, {t}, {t}, {t}, '{}')",
    "UPDATE jobs SET state = 'done', delivered = reserved WHERE id IN ('d2', 'c1')",
    "INSERT INTO quota_limits (guild_id, scope, subject_id, images_limit, period, updated_at) "
    "VALUES ('g1', 'user', 'u1', 10, 'day', {t}), ('direct', 'server', '', 7, 'day', {t})",
    "INSERT INTO grants (guild_id, user_id, images, granted_by, granted_at) "
    "VALUES ('g1', 'u1', 2, 'mod', {t}), ('direct', 'local', 1, 'local', {t})",
    "INSERT INTO blocks (guild_id, user_id, reason, blocked_at) VALUES "
    "('g1', 'u9', 'spam', {t}), ('direct', 'friend', NULL, {t})",
    "INSERT INTO server_budgets (guild_id, monthly_images, updated_at) VALUES "
    "('g1', 100, {t}), ('direct', 50, {t})",
    "INSERT INTO guild_config (guild_id, config, updated_at) VALUES "
    '(\'g1\', \'{"guild_id":"g1","admin_exempt":true}\', {t}), '
    '(\'direct\', \'{"guild_id":"direct","normalize_images":false}\', {t})',
]


async def _sqlite_at_0006(path: Path, now: float) -> None:
    def build() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            for _, _, sql in load_migrations()[:6]:
                for statement in _split_sql(sql):
                    conn.execute(statement)
            conn.execute("PRAGMA user_version=6")
            for statement in _SEED:
                conn.execute(statement.replace("{t}", repr(now)))
        finally:
            conn.close()

    await asyncio.to_thread(build)


async def _postgres_at_0006(url: str, now: float) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(_SCHEMA_TABLE_SQL)
        for version, name, sql in load_pg_migrations()[:6]:
            await conn.execute(sql)
            await conn.execute(
                f"INSERT INTO {SCHEMA_TABLE} (version, name) VALUES ($1, $2)", version, name
            )
        for statement in _SEED:
            await conn.execute(statement.replace("{t}", repr(now)))
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def old_install(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Backend]:
    """A database at schema 0006 holding data, then opened (which migrates it)."""
    cluster: PgCluster | None = None
    if request.param == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        name = fresh_name("old")
        location = await cluster.create_database(name, template="template0")
        await _postgres_at_0006(location, clock.now())
        db: Database | PgDatabase = PgDatabase(location)
    else:
        location = str(tmp_path / "old.sqlite3")
        await _sqlite_at_0006(Path(location), clock.now())
        db = Database(Path(location))
    item = Backend(request.param, location, db)
    try:
        await item.db.open()
        yield item
    finally:
        await item.db.close()
        if cluster is not None:
            await cluster.drop_database(name)


async def test_migration_0007_keeps_an_install_as_it_was(
    old_install: Backend, clock: FakeClock
) -> None:
    backend = old_install
    for table in QUOTA_TABLES:
        rows = await backend.fetchall(f"SELECT guild_id, platform FROM {table}")
        assert rows, table
        # Discord's rows stay Discord's; 'direct' was only ever the console's.
        assert {(r[0], r[1]) for r in rows} <= {("g1", "discord"), ("direct", "console")}, table
        assert {r[0] for r in rows} == {"g1", "direct"}, table

    admin = admin_for(backend, clock, default_limit=0)
    usage = await admin.usage(DISCORD, "u1")
    assert (usage.used, usage.in_flight, usage.limit, usage.bonus) == (5, 3, 12, 2)
    assert (usage.server_budget, usage.server_used) == (100, 5)
    assert (await admin.usage(DISCORD, "u9")).blocked
    # An existing console install still sees its usage and settings.
    console = space("direct", "console")
    usage = await admin.usage(console, "local")
    assert (usage.used, usage.limit, usage.bonus, usage.server_budget) == (1, 8, 1, 50)
    assert (await admin.usage(console, "friend")).blocked
    assert (await admin.guild_config(console)).normalize_images is False
    assert (await admin.guild_config(DISCORD)).admin_exempt is True
    assert [(u.user_id, u.images) for u in (await admin.server_report(console)).users] == [
        ("local", 1)
    ]
    assert [(u.user_id, u.images) for u in (await admin.server_report(DISCORD)).users] == [
        ("u1", 2)
    ]
    # Nothing leaks to another platform with the same ids.
    usage = await admin.usage(SLACK, "u1")
    assert (usage.used, usage.limit, usage.server_budget) == (0, 0, None)
    assert await admin.guild_config(SLACK) == GuildConfig(guild_id="g1", platform="slack")

    # The token moved to its column; the delivery JSON keeps the rest.
    store = store_for(backend, clock)
    job = await store.get("d1")
    assert job is not None
    assert (job.callback_token, job.delivery) == ("tok-1", {"message_id": "5"})
    row = await backend.fetchone("SELECT delivery FROM jobs WHERE id = ?", ("d1",))
    assert json.loads(row[0]) == {"message_id": "5"}
    done = await store.get("d2")
    assert done is not None and done.callback_token is None

    # A job admitted before the migration settles into the same totals afterwards.
    await store.finish("d1", JobState.DONE, delivered=1)
    charge = await backend.fetchone(
        "SELECT platform, images FROM ledger WHERE job_id = ? AND kind = 'charge'", ("d1",)
    )
    assert tuple(charge) == ("discord", 1)
    assert (await admin.usage(DISCORD, "u1")).used == 3
    rows = await backend.fetchall(
        "SELECT COUNT(*) FROM usage_daily WHERE platform = 'discord' AND user_id = 'u1'"
    )
    assert rows[0][0] == 1
    if isinstance(backend.db, Database):
        # What `wanbot doctor` runs: SQLite 3.40 misreads a WITHOUT ROWID table whose
        # key columns follow other columns, so the rebuilt tables put `platform` first.
        assert [tuple(r) for r in await backend.fetchall("PRAGMA quick_check")] == [("ok",)]

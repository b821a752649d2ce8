"""`wanbot db copy --to postgresql://...`: an SQLite install moved row for row, verified."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.core.clock import FakeClock
from bot.core.models import GuildConfig, JobState, Period
from bot.core.quota import QuotaDefaults
from storage.postgres.db import PgDatabase
from storage.postgres.events import PostgresSeenEvents
from storage.postgres.jobs import PostgresJobStore
from storage.postgres.quotas import PostgresQuotaAdmin
from storage.sqlite.db import Database
from storage.sqlite.events import SqliteSeenEvents
from storage.sqlite.jobs import SqliteJobStore
from storage.sqlite.quotas import SqliteQuotaAdmin
from tests.store_backends import space
from tests.test_job_store import make_job

DEFAULTS = QuotaDefaults(default_limit=100, max_running=100, max_queued=100)
pytestmark = pytest.mark.slow  # starts the real `wanbot` command


async def fill(db: Database, clock: FakeClock) -> None:
    """Some of everything: jobs in every kind of state, the ledger, settings."""
    store = SqliteJobStore(db, clock, DEFAULTS, price_per_image_usd=0.04)
    admin = SqliteQuotaAdmin(db, clock, DEFAULTS, 0.03)
    done = await store.admit(make_job(clock, user="a", count=4))
    await store.finish(done.id, JobState.DONE, delivered=3, result_urls=["u1", "u2", "u3"])
    failed = await store.admit(make_job(clock, user="b", count=2))
    await store.finish(failed.id, JobState.FAILED, delivered=0, error_message="nope")
    running = make_job(clock, user="a", count=1).model_copy(update={"callback_token": "tok"})
    running = await store.admit(running)
    await store.transition(running.id, [JobState.QUEUED], JobState.RUNNING, task_id="T1")
    await store.admit(make_job(clock, user="c", guild=None, platform="console"))
    await admin.set_server_default(space("g1"), 40, Period.WEEK)
    await admin.set_user_limit(space("g1"), "a", 50)
    await admin.set_role_limit(space("g1"), "artists", 60, Period.DAY)
    await admin.grant(space("g1"), "b", 5, granted_by="mod")
    await admin.block(space("g1"), "spammer", reason="spam")
    await admin.set_server_budget(space("g1"), 500)
    await admin.set_guild_config(GuildConfig(guild_id="g1", admin_exempt=True))
    # The same ids on Slack: their own rows, told apart by the platform columns.
    slack = await store.admit(make_job(clock, user="a", platform="slack", count=1))
    await store.finish(slack.id, JobState.DONE, delivered=1)
    await admin.set_user_limit(space("g1", "slack"), "a", 9)
    await admin.set_guild_config(GuildConfig(guild_id="g1", platform="slack", admin_exempt=False))
    # A Slack post already handled (copied), and state of processes long gone (not copied).
    assert await SqliteSeenEvents(db, clock).first_time("slack", "C1:1700000000.000100")
    await db.fetchall(
        "INSERT INTO job_leases (job_id, owner, until, token) VALUES (?, 'gone', 1.0, 3)",
        (running.id,),
    )
    await db.fetchall(
        "INSERT INTO workers (worker_id, host, pid, started_at, seen_at) "
        "VALUES ('gone', 'old-host', 42, 1.0, 2.0)"
    )
    await db.fetchall("INSERT INTO gateway_identify (bucket, next_at) VALUES (0, 5.0)")


async def wanbot(
    tmp_path: Path, *args: str, database_path: Path, database_url: str = ""
) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DISCORD_"))}
    env["DATABASE_PATH"] = str(database_path)
    env["DATABASE_URL"] = database_url
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def sqlite_rows(db: Database, table: str) -> list[tuple[Any, ...]]:
    return sorted((tuple(r) for r in await db.fetchall(f"SELECT * FROM {table}")), key=repr)


async def pg_rows(db: PgDatabase, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    rows = await db.fetch(f"SELECT {', '.join(columns)} FROM {table}")
    return sorted((tuple(r) for r in rows), key=repr)


async def test_copy_moves_every_table_and_verifies(
    tmp_path: Path, pg_empty_url: str, clock: FakeClock
) -> None:
    path = tmp_path / "data #1?" / "wanbot.sqlite3"  # URI characters: quoted
    async with Database(path) as source:
        await fill(source, clock)
        tables = [
            r[0]
            for r in await source.fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        expected = {t: await sqlite_rows(source, t) for t in tables}
        columns = {
            t: [r["name"] for r in await source.fetchall(f"PRAGMA table_info({t})")] for t in tables
        }
        usage = await SqliteQuotaAdmin(source, clock, DEFAULTS, 0.03).usage(space("g1"), "a")
        report = await SqliteQuotaAdmin(source, clock, DEFAULTS, 0.03).server_report(space("g1"))
        slack_usage = await SqliteQuotaAdmin(source, clock, DEFAULTS, 0.03).usage(
            space("g1", "slack"), "a"
        )
        assert (slack_usage.used, slack_usage.limit) == (1, 9)

    code, out, err = await wanbot(tmp_path, "db", "copy", "--to", pg_empty_url, database_path=path)
    assert code == 0, err
    assert "every count and the ledger's sums match" in out
    assert any(line.split()[:3] == ["ledger", "10", "10"] for line in out.splitlines()), out

    assert not any(line.split()[:1] == ["workers"] for line in out.splitlines()), out
    async with PgDatabase(pg_empty_url) as target:
        for table in tables:
            if table in ("job_leases", "workers", "gateway_identify"):
                assert expected[table] and await pg_rows(target, table, columns[table]) == []
                continue
            assert await pg_rows(target, table, columns[table]) == expected[table], table
        # The copied post is known there: a retry of it after the move is not handled again.
        assert expected["seen_events"]
        events = PostgresSeenEvents(target, clock)
        assert await events.first_time("slack", "C1:1700000000.000100") is False
        admin = PostgresQuotaAdmin(target, clock, DEFAULTS, 0.03)
        assert await admin.usage(space("g1"), "a") == usage
        assert await admin.server_report(space("g1")) == report
        assert await admin.usage(space("g1", "slack"), "a") == slack_usage
        assert (await admin.guild_config(space("g1", "slack"))).admin_exempt is False
        # The copied install goes on: identities continue after the copied ids, the
        # unfinished jobs are there to resume, the money rules still fire.
        store = PostgresJobStore(target, clock, DEFAULTS)
        active = await store.active_jobs()
        assert [(j.task_id, j.callback_token) for j in active] == [("T1", "tok"), (None, None)]
        job = await store.admit(make_job(clock, user="a", count=2))
        ids = [r[0] for r in await target.fetch("SELECT id FROM ledger WHERE job_id = $1", job.id)]
        assert ids == [11]
        await admin.grant(space("g1"), "a", 1, granted_by="mod")
        assert await target.fetchval("SELECT MAX(id) FROM grants") == 2

    # A second copy into the now used database is refused, and changes nothing.
    code, out, err = await wanbot(tmp_path, "db", "copy", "--to", pg_empty_url, database_path=path)
    assert code == 1
    assert "not empty" in err
    async with PgDatabase(pg_empty_url) as target:
        assert await target.fetchval("SELECT COUNT(*) FROM ledger") == 11


async def test_copy_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.sqlite3"
    code, _, err = await wanbot(
        tmp_path, "db", "copy", "--to", "postgresql://x@/y?host=/nowhere", database_path=missing
    )
    assert (code, "no SQLite database at" in err) == (1, True)
    code, _, err = await wanbot(tmp_path, "db", "copy", "--to", "mysql://x", database_path=missing)
    assert (code, "postgresql://" in err) == (2, True)


async def test_migrate_reports_what_it_did_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "fresh.sqlite3"
    code, out, _ = await wanbot(tmp_path, "db", "migrate", database_path=path)
    assert code == 0
    assert f"SQLite {path}: applied 0001_initial.sql" in out
    code, out, _ = await wanbot(tmp_path, "db", "migrate", database_path=path)
    assert (code, "nothing applied" in out) == (0, True)


async def test_an_unreachable_server_is_one_line_without_the_password(tmp_path: Path) -> None:
    code, out, err = await wanbot(
        tmp_path,
        "db",
        "migrate",
        database_path=tmp_path / "x.sqlite3",
        database_url="postgresql://bot:hunter2-secret@/wanbot?host=/nonexistent-dir",
    )
    assert code == 1
    assert err.startswith("wanbot: cannot connect to postgresql://bot:***@/wanbot")
    assert "Traceback" not in err and "hunter2" not in out + err

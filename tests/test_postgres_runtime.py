"""DATABASE_URL at work: the factory picks PostgreSQL, the whole runtime runs a job on
it, one bot per database holds, doctor reads it, and the password never shows."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from bot.cli import secret_values
from bot.core.clock import FakeClock, SystemClock
from bot.core.errors import QuotaDenied, QuotaReason
from bot.core.models import Job, JobState
from bot.core.quota import QuotaDefaults
from bot.logging_setup import RedactingFilter
from bot.ops.doctor.pg import check_postgres
from bot.runtime import Runtime
from bot.settings import SettingsError, load_settings
from storage.errors import DatabaseInUse
from storage.factory import build_store
from storage.postgres import ops as pg_ops
from storage.postgres.db import PgDatabase
from storage.postgres.jobs import PostgresJobStore
from storage.postgres.ops import PgProcessLock
from tests.engine_doubles import RecordingPort, eventually, request, requester
from tests.store_backends import space
from tests.test_job_store import make_job

PASSWORD_URL = "postgresql://bot:hunter2-secret@db.example:5432/wanbot"


def test_the_factory_picks_the_backend(tmp_path: Path, clock: FakeClock) -> None:
    def store(**settings: object) -> tuple[str, str]:
        built = build_store(
            load_settings(env_file=None, **settings),
            clock=clock,
            defaults=QuotaDefaults(),
            price_per_image_usd=0.03,
        )
        return built.backend, built.where

    sqlite = tmp_path / "w.sqlite3"
    assert store(database_path=sqlite) == ("sqlite", str(sqlite))
    assert store(database_path=sqlite, database_url=PASSWORD_URL) == (
        "postgresql",
        "postgresql://bot:***@db.example:5432/wanbot",
    )
    assert store(database_url=" ") == ("sqlite", "data/wanbot.sqlite3")  # blank: unset
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=None, database_url="mysql://bot:hunter2-secret@db/x")
    assert info.value.lines[0].startswith("DATABASE_URL: must start with postgresql://")
    assert "hunter2" not in str(info.value)


def test_the_password_is_redacted_from_logs() -> None:
    settings = load_settings(env_file=None, database_url=PASSWORD_URL)
    assert "hunter2-secret" in secret_values(settings)
    assert "hunter2" not in repr(settings)
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "cannot connect to %s", (PASSWORD_URL,), None
    )
    RedactingFilter(secret_values(settings)).filter(record)
    assert "hunter2" not in record.getMessage()


async def test_a_job_runs_end_to_end_on_postgresql(
    pg_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    settings = load_settings(
        env_file=None,
        wan_provider="mock",
        mock_latency_seconds=3.0,
        database_path=tmp_path / "unused.sqlite3",
        database_url=pg_url,
        progress_update_seconds=1.0,
    )
    rt = Runtime(settings, clock=clock)
    port = RecordingPort()
    rt.engine.register_delivery("test", port)
    await rt.start()
    try:
        assert isinstance(rt.jobs, PostgresJobStore) and rt.store.backend == "postgresql"
        # Any number of bots share one PostgreSQL database; `wanbot db copy`'s exclusive
        # lock is refused while they run, naming a bot process.
        second = Runtime(settings, clock=clock)
        await second.open()
        exclusive = PgProcessLock(pg_url, "the database")
        with pytest.raises(DatabaseInUse) as info:
            await exclusive.acquire()
        assert info.value.pid == os.getpid()
        await second.close()
        check = await check_postgres(pg_url)
        assert check.status == "OK" and f"in use by wanbot (PID {os.getpid()})" in check.detail

        job = await rt.engine.submit(requester(), request(count=2))
        while not port.delivered(job.id):
            assert clock.monotonic() < 60, "not delivered after 60 fake seconds"
            await eventually(lambda: rt.engine.in_flight == 0, timeout=10, what="idle")
            await clock.advance(0.5)
        [(_, images, _)] = port.delivered(job.id)
        assert len(images) == 2
        assert (await rt.quotas.usage(space("g1", "test"), "u1")).used == 2
        assert (await rt.store.jobs_by_state()).get("done") == 1
        await rt.store.ping()
    finally:
        await rt.close()
    assert not (tmp_path / "unused.sqlite3").exists()  # SQLite was never touched
    async with PgDatabase(pg_url) as db:  # the lock went with the bot's session
        rows = await db.fetch("SELECT kind, images FROM ledger ORDER BY id")
        assert [tuple(r) for r in rows] == [("reserve", 2), ("charge", 2)]  # no zero refund
    again = Runtime(settings, clock=clock)
    await again.open()
    await again.close()


async def test_doctor_reports_what_it_finds(pg_empty_url: str) -> None:
    fresh = await check_postgres(pg_empty_url)
    assert fresh.status == "OK" and "schema version 0 (the next start upgrades it" in fresh.detail
    gone = await check_postgres(
        "postgresql://bot:hunter2-secret@/nowhere?host=/nonexistent-socket-dir"
    )
    assert gone.status == "FAIL" and "hunter2" not in gone.detail + (gone.fix or "")
    assert "postgresql://bot:***@" in gone.detail


async def test_retention_prunes_old_finished_jobs_and_keeps_the_ledger(
    pg_url: str, clock: FakeClock
) -> None:
    async with PgDatabase(pg_url) as db:
        store = PostgresJobStore(db, clock, QuotaDefaults(default_limit=100))
        old = [await store.admit(make_job(clock)) for _ in range(3)]
        for job in old[:2]:
            await store.finish(job.id, JobState.DONE, delivered=1)
        await clock.advance(31 * 86_400)
        recent = await store.admit(make_job(clock))
        await store.finish(recent.id, JobState.DONE, delivered=1)
        assert await pg_ops.prune_jobs(db, now=clock.now(), retention_days=30) == 2
        left = {r[0] for r in await db.fetch("SELECT id FROM jobs")}
        assert left == {old[2].id, recent.id}  # unfinished and recent jobs stay
        # reserve + charge per finished job (nothing refunded: no refund row, 0006)
        assert await db.fetchval("SELECT COUNT(*) FROM ledger") == 2 + 2 + 1 + 2
        assert await pg_ops.prune_jobs(db, now=clock.now(), retention_days=0) == 0


async def test_admission_is_exact_across_separate_pools(pg_url: str, clock: FakeClock) -> None:
    # Two stores with their own pools stand for two processes on one database: the
    # advisory locks live in the server, so the limit holds across them too.
    first, second = PgDatabase(pg_url), PgDatabase(pg_url)
    await first.open()
    await second.open()
    try:
        defaults = QuotaDefaults(default_limit=50, max_running=1000, max_queued=1000)
        stores = [PostgresJobStore(db, clock, defaults) for db in (first, second)]
        results = await asyncio.gather(
            *(stores[i % 2].admit(make_job(clock, user="both")) for i in range(400)),
            return_exceptions=True,
        )
        assert sum(isinstance(r, Job) for r in results) == 50
        assert all(isinstance(r, (Job, QuotaDenied)) for r in results)
        assert await first.fetchval("SELECT SUM(images) FROM ledger") == 50
    finally:
        await first.close()
        await second.close()


async def test_every_pooled_session_ends_a_transaction_left_idle(pg_url: str) -> None:
    """Every transaction, not only those that remember to ask (the engine's sharing
    test shows why: test_sharing.py, a holder paused inside a transaction)."""
    db = PgDatabase(pg_url, pool_size=1)
    await db.open()
    try:
        for _ in range(2):
            async with db.transaction() as conn:
                assert await conn.fetchval("SHOW idle_in_transaction_session_timeout") == "5s"
                # Even a session changed so: the pool's reset on release puts it back.
                await conn.execute("SET idle_in_transaction_session_timeout = 0")
        assert await db.fetchval("SHOW idle_in_transaction_session_timeout") == "5s"
    finally:
        await db.close()


async def test_a_clock_far_from_the_servers_is_reported(
    pg_url: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with PgDatabase(pg_url) as db:
        assert abs(await pg_ops.warn_on_clock_skew(db, SystemClock())) < 2.0
        assert "clock" not in caplog.text
        skew = await pg_ops.warn_on_clock_skew(db, clock)  # the fake clock is in 2023
    assert skew > 86_400
    assert "this host's clock is" in caplog.text and "behind the database server's" in caplog.text


async def test_a_budget_set_under_a_shared_admit_makes_it_start_again(
    pg_url: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The admit saw no budget and took the server's lock shared; a budget appears
    # before its facts are read (written here without the lock, as no code path does):
    # it must start again holding the lock exclusively, and then obey the budget.
    from storage.postgres import jobs as pg_jobs

    reads = []
    real = pg_jobs.read_facts

    async def facts_with_a_budget_appearing(conn: Any, **kwargs: Any) -> Any:
        if not reads:
            await db.execute(
                "INSERT INTO server_budgets (guild_id, monthly_images, updated_at) "
                "VALUES ('g1', 0, 0)"
            )
        reads.append(kwargs["space"].id)
        return await real(conn, **kwargs)

    monkeypatch.setattr(pg_jobs, "read_facts", facts_with_a_budget_appearing)
    async with PgDatabase(pg_url) as db:
        store = PostgresJobStore(db, clock, QuotaDefaults())
        with pytest.raises(QuotaDenied) as info:
            await store.admit(make_job(clock))
        assert info.value.reason is QuotaReason.SERVER_BUDGET
        assert reads == ["g1", "g1"]  # read twice: shared, then exclusive
        assert await db.fetchval("SELECT COUNT(*) FROM jobs") == 0

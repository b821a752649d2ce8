"""Data upkeep: online backup (restored and read), retention prune (the ledger and
usage totals survive), the daily prune of a running bot, and migration 0004."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
from pathlib import Path

import pytest

from bot.cli import main
from bot.core.clock import FakeClock
from bot.core.models import GenerationRequest, Job, JobState, Requester
from bot.core.quota import QuotaDefaults
from bot.ops.wiring import prune_daily
from bot.runtime import Runtime
from bot.settings import load_settings
from storage.postgres.dump import pg_dump_command
from storage.retention import DAY
from storage.sqlite.backup import BackupError, backup_sqlite
from storage.sqlite.db import Database, _split_sql, load_migrations
from storage.sqlite.jobs import SqliteJobStore
from storage.sqlite.lock import ProcessLock
from storage.sqlite.prune import prune_jobs
from tests.engine_doubles import eventually, eventually_async

ROOMY = QuotaDefaults(default_limit=1000, max_running=1000, max_queued=1000)
_ids = itertools.count(1)


def _job(clock: FakeClock, count: int = 1, guild: str = "g1") -> Job:
    now = clock.now()
    return Job(
        id=f"job-{next(_ids)}",
        requester=Requester(platform="discord", user_id="u1", guild_id=guild),
        provider="mock",
        request=GenerationRequest(prompt="a lighthouse", count=count),
        created_at=now,
        updated_at=now,
    )


async def _finished(store: SqliteJobStore, clock: FakeClock, state: JobState, n: int = 2) -> str:
    job = await store.admit(_job(clock, count=n))
    delivered = n if state is JobState.DONE else 0
    await store.finish(job.id, state, delivered=delivered)
    return job.id


async def _money(db: Database) -> tuple[list[tuple[object, ...]], ...]:
    tables = ("ledger", "usage_daily", "guild_daily")
    found = []
    for table in tables:
        rows = await db.fetchall(f"SELECT * FROM {table} ORDER BY 1, 2, 3")
        found.append([tuple(row) for row in rows])
    return tuple(found)


async def test_prune_deletes_old_finished_jobs_and_keeps_the_ledger(
    db: Database, clock: FakeClock
) -> None:
    store = SqliteJobStore(db, clock, ROOMY)
    old_done = await _finished(store, clock, JobState.DONE)
    old_failed = await _finished(store, clock, JobState.FAILED)
    old_running = (await store.admit(_job(clock))).id  # old but not finished: kept
    await clock.advance(80 * DAY)
    recent = await _finished(store, clock, JobState.DONE)
    await clock.advance(11 * DAY)  # the first three are 91 days old, `recent` 11
    before = await _money(db)
    # reserve + charge per finished job, a refund only for the failed one (none when
    # zero, migration 0006), a reserve for the running one
    assert len(before[0]) == 3 * 2 + 1 + 1

    assert await prune_jobs(db, now=clock.now(), retention_days=90) == 2
    assert await store.get(old_done) is None and await store.get(old_failed) is None
    assert await store.get(old_running) is not None and await store.get(recent) is not None
    assert await _money(db) == before  # ledger rows and usage totals unchanged
    assert await prune_jobs(db, now=clock.now(), retention_days=90) == 0
    assert await prune_jobs(db, now=clock.now() + 365 * DAY, retention_days=0) == 0
    # The ledger is still append-only.
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        await db.fetchall("DELETE FROM ledger")


async def test_migration_0004_copies_existing_money(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    migrations = load_migrations()
    conn = sqlite3.connect(path, isolation_level=None)
    for _, _, sql in migrations[:3]:
        for statement in _split_sql(sql):
            conn.execute(statement)
    conn.execute("PRAGMA user_version=3")
    assert conn.execute("PRAGMA foreign_key_list(ledger)").fetchall() != []
    conn.execute(
        "INSERT INTO jobs (id, platform, user_id, scope_id, requester, provider, request, "
        "state, reserved, created_at, updated_at, admitted_at) "
        "VALUES ('j1', 'discord', 'u1', 'g1', '{}', 'mock', '{}', 'queued', 4, 10, 10, 10)"
    )
    conn.execute("UPDATE jobs SET state = 'done', delivered = 3 WHERE id = 'j1'")
    ledger = conn.execute("SELECT * FROM ledger ORDER BY id").fetchall()
    usage = conn.execute("SELECT * FROM usage_daily").fetchall()
    assert len(ledger) == 3 and usage == [("g1", "u1", 0, 3, 3)]
    conn.close()
    db = Database(path)
    await db.open()
    try:
        # Migration 0007 then labels them Discord's (`platform`: the ledger's last
        # column, usage_daily's first).
        rows = [tuple(r) for r in await db.fetchall("SELECT * FROM ledger ORDER BY id")]
        assert rows == [(*row, "discord") for row in ledger]
        usage_rows = [tuple(r) for r in await db.fetchall("SELECT * FROM usage_daily")]
        assert usage_rows == [("discord", *row) for row in usage]
        assert await db.fetchall("PRAGMA foreign_key_list(ledger)") == []
        assert await db.user_version() == len(migrations)
        await db.fetchall("DELETE FROM jobs WHERE id = 'j1'")  # no foreign key stops it
        assert len(await db.fetchall("SELECT * FROM ledger")) == 3
    finally:
        await db.close()


async def test_online_backup_restores_and_reads(db: Database, clock: FakeClock, tmp_path: Path):
    store = SqliteJobStore(db, clock, ROOMY)
    done = await _finished(store, clock, JobState.DONE, n=3)
    copy = tmp_path / "backups" / "copy.sqlite3"
    copy.parent.mkdir()
    # While the database is open and in WAL mode (the bot running), off the loop.
    result = await asyncio.to_thread(backup_sqlite, db.path, copy)
    assert (result.path, result.jobs, result.ledger_rows) == (copy, 1, 2)  # no zero refund
    assert not list(copy.parent.glob(".*partial*"))
    # The copy stands alone (no -wal beside it) and opens as a wanbot database.
    restored = Database(copy)
    await restored.open()
    try:
        assert await restored.migrate() == []
        job = await SqliteJobStore(restored, clock, ROOMY).get(done)
        assert job is not None and job.state is JobState.DONE and job.delivered == 3
        assert await _money(restored) == await _money(db)
    finally:
        await restored.close()
    with pytest.raises(BackupError, match="already exists"):
        backup_sqlite(db.path, copy)
    with pytest.raises(BackupError, match="no database"):
        backup_sqlite(tmp_path / "missing.sqlite3", tmp_path / "x.sqlite3")
    assert not (tmp_path / "x.sqlite3").exists()


def test_pg_dump_command_leaves_the_password_out() -> None:
    command = pg_dump_command("postgresql://wan:s3cret@db:5432/wanbot", "/backups/w.dump")
    assert (
        command == "pg_dump --format=custom --file=/backups/w.dump postgresql://wan@db:5432/wanbot"
    )
    assert "s3cret" not in command


def _env(tmp_path: Path, **extra: str) -> Path:
    lines = [f"DATABASE_PATH={tmp_path / 'bot.sqlite3'}", "LOG_LEVEL=WARNING"]
    lines += [f"{k}={v}" for k, v in extra.items()]
    env = tmp_path / "test.env"
    env.write_text("\n".join(lines) + "\n")
    return env


def test_backup_and_prune_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = _env(tmp_path, JOB_RETENTION_DAYS="30")
    assert main(["--env-file", str(env), "db", "prune"]) == 1  # no database yet
    assert not (tmp_path / "bot.sqlite3").exists()  # and none created

    async def seed() -> None:
        clock = FakeClock(start=1_000_000.0)  # long ago
        db = Database(tmp_path / "bot.sqlite3")
        await db.open()
        store = SqliteJobStore(db, clock, ROOMY)
        await _finished(store, clock, JobState.DONE)
        await db.close()

    asyncio.run(seed())
    capsys.readouterr()
    assert main(["--env-file", str(env), "backup", str(tmp_path / "b.sqlite3")]) == 0
    assert "1 jobs, 2 ledger rows" in capsys.readouterr().out  # reserve, charge
    assert main(["--env-file", str(env), "db", "prune"]) == 0
    assert "pruned 1 finished job(s) older than 30 days; ledger kept" in capsys.readouterr().out
    conn = sqlite3.connect(tmp_path / "bot.sqlite3")
    assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone() == (0,)
    assert conn.execute("SELECT COUNT(*) FROM ledger").fetchone() == (2,)
    conn.close()
    assert main(["--env-file", str(env), "db", "prune", "--vacuum"]) == 0
    assert "compacted the database" in capsys.readouterr().out

    # A running bot holds the database: the command refuses and names the holder.
    lock = ProcessLock(tmp_path / "bot.sqlite3")
    lock.acquire()
    try:
        assert main(["--env-file", str(env), "db", "prune"]) == 1
        assert "in use by" in capsys.readouterr().err
    finally:
        lock.release()


async def test_a_running_bot_prunes_at_start_and_keeps_a_daily_task(
    tmp_path: Path, clock: FakeClock
) -> None:
    settings = load_settings(
        env_file=None, wan_provider="mock", database_path=tmp_path / "bot.sqlite3"
    )
    seed = Database(settings.database_path)
    await seed.open()
    first = await _finished(SqliteJobStore(seed, clock, ROOMY), clock, JobState.DONE)
    await seed.close()
    await clock.advance(91 * DAY)

    rt = Runtime(settings, clock=clock)
    await rt.start()
    try:
        await eventually_async(lambda: _gone(rt.jobs, first), what="the prune at start")
        daily = [t for t in asyncio.all_tasks() if t.get_name() == "daily-prune"]
        assert len(daily) == 1 and not daily[0].done()
    finally:
        await rt.close()
    assert daily[0].done()  # cancelled with the runtime


async def _gone(store: SqliteJobStore, job_id: str) -> bool:
    return await store.get(job_id) is None


async def test_the_daily_prune_runs_once_a_day(db: Database, clock: FakeClock) -> None:
    store = SqliteJobStore(db, clock, ROOMY)
    job = await _finished(store, clock, JobState.DONE)

    class Pruner:  # the one method prune_daily uses of storage.factory.Store
        async def prune_jobs(self, *, now: float, retention_days: int) -> int:
            return await prune_jobs(db, now=now, retention_days=retention_days)

    task = asyncio.create_task(prune_daily(Pruner(), clock, retention_days=2))  # type: ignore[arg-type]
    try:
        # Asleep (one sleeper on this clock) means the day's prune has finished.
        await eventually(lambda: clock.sleepers == 1, what="the first prune")
        for _ in range(2):
            await clock.advance(DAY)
            await eventually(lambda: clock.sleepers == 1, what="the next day's prune")
            assert not await _gone(store, job)  # one day old, then two: not older
        await clock.advance(DAY)
        await eventually(lambda: clock.sleepers == 1, what="the fourth prune")
        assert await _gone(store, job)  # three days old
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_result_urls_live_beside_the_row_and_go_when_the_job_ends(
    db: Database, clock: FakeClock
) -> None:
    store = SqliteJobStore(db, clock, ROOMY)
    urls = ["https://file.apixo.ai/r/1.png?sig=" + "a" * 270, "https://file.apixo.ai/r/2.png"]
    ids = []
    for _ in range(2):
        job = await store.admit(_job(clock, count=2))
        await store.transition(job.id, [JobState.QUEUED], JobState.SUBMITTING)
        await store.transition(job.id, [JobState.SUBMITTING], JobState.RUNNING, task_id="t")
        delivering = await store.transition(
            job.id, [JobState.RUNNING], JobState.DELIVERING, result_urls=urls
        )
        assert delivering is not None and delivering.result_urls == urls
        ids.append(job.id)
    first, second = ids
    # Every read path sees them: get, active_jobs (restart), update (the resume deadline).
    assert (await store.get(first)).result_urls == urls  # type: ignore[union-attr]
    assert [j.result_urls for j in await store.active_jobs()] == [urls, urls]
    assert (await store.update(first, deadline_at=clock.now() + 300)).result_urls == urls
    # ... but the job row itself never holds them.
    rows = await db.fetchall("SELECT result_urls FROM jobs")
    assert [row[0] for row in rows] == ["[]", "[]"]

    # Delivered: the engine records DONE with the URLs dropped.
    done = await store.transition(
        first, [JobState.DELIVERING], JobState.DONE, delivered=2, result_urls=[]
    )
    assert done is not None and done.result_urls == []
    # Any other end drops them too (schema trigger), and so does a prune.
    await store.finish(second, JobState.FAILED, delivered=0)
    assert (await store.get(second)).result_urls == []  # type: ignore[union-attr]
    assert await db.fetchall("SELECT * FROM job_results") == []


def test_backup_with_postgresql_prints_pg_dump(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = _env(tmp_path, DATABASE_URL="postgresql://wan:s3cret@db.example:5432/wanbot")
    assert main(["--env-file", str(env), "backup", "/backups/w.dump"]) == 0
    out = capsys.readouterr().out
    assert "pg_dump --format=custom --file=/backups/w.dump" in out
    assert "postgresql://wan@db.example:5432/wanbot" in out and "s3cret" not in out
    assert not (tmp_path / "bot.sqlite3").exists()  # nothing opened or created


def test_pg_dump_command_drops_a_query_password_and_keeps_a_socket_url() -> None:
    # Found in review: `?password=` went into the printed command, and a Unix-socket
    # URL (empty host) came out as "postgresql:/wanbot", which pg_dump cannot read.
    command = pg_dump_command(
        "postgresql:///wanbot?host=/run/postgresql&password=hunter2&sslmode=disable", "w.dump"
    )
    assert "hunter2" not in command and "password" not in command
    assert command.endswith(" 'postgresql:///wanbot?host=/run/postgresql&sslmode=disable'")


async def test_backup_of_a_database_in_a_folder_named_with_uri_characters(
    tmp_path: Path, clock: FakeClock
) -> None:
    # Found in review: the read-only `file:` URI was not quoted, so a `#` or `?` in the
    # path cut it short and the backup opened another (missing) file.
    folder = tmp_path / "bots #1?x"
    folder.mkdir()
    live = Database(folder / "wanbot.sqlite3")
    await live.open()
    try:
        await _finished(SqliteJobStore(live, clock, ROOMY), clock, JobState.DONE)
        result = await asyncio.to_thread(backup_sqlite, live.path, tmp_path / "copy.sqlite3")
    finally:
        await live.close()
    assert result.jobs == 1 and result.ledger_rows >= 1


def test_db_migrate_reports_on_the_right_file_in_a_folder_named_with_uri_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Found in review: `wanbot db migrate` read the schema version through the same
    # unquoted `file:` URI, so a second run created an empty file named after the path
    # cut at `#` and said every migration had just been applied.
    folder = tmp_path / "bots#1"
    folder.mkdir()
    env = tmp_path / "test.env"
    env.write_text(f"DATABASE_PATH={folder / 'wanbot.sqlite3'}\nLOG_LEVEL=WARNING\n")
    assert main(["--env-file", str(env), "db", "migrate"]) == 0
    capsys.readouterr()
    assert main(["--env-file", str(env), "db", "migrate"]) == 0
    assert "nothing applied" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bots#1", "test.env"]

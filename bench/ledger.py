"""Quota ledger throughput: JobStore.admit (check quota, insert, reserve) plus
JobStore.finish (final state, charge and refund) per second, 100 users at once on
one SQLite file, through the real store, schema and triggers; then the same on a
local PostgreSQL server (started for the run, durable settings) beside it."""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import Figure, Section, md_table, percentile, target_at_least
from bot.core.clock import SystemClock
from bot.core.models import GenerationRequest, Job, JobState, Requester
from bot.core.ports import JobStore
from bot.core.quota import QuotaDefaults
from storage.postgres.db import PgDatabase
from storage.postgres.jobs import PostgresJobStore
from storage.sqlite.db import Database
from storage.sqlite.jobs import SqliteJobStore

USERS = 100
WARMUP_SECONDS = 1.0
MEASURE_SECONDS = 6.0
TARGET_PER_SECOND = 2000


async def _user(
    store: JobStore,
    index: int,
    stop: asyncio.Event,
    counting: asyncio.Event,
    admits: list[float],
    finishes: list[float],
    done: list[int],
) -> None:
    rng = random.Random(index)
    requester = Requester(
        platform="discord",
        user_id=str(10_000 + index),
        guild_id=str(1 + index % 5),  # five servers
        channel_id="42",
        role_ids=["7", "8"],
        display_name=f"user{index}",
    )
    clock = SystemClock()
    serial = 0
    while not stop.is_set():
        serial += 1
        now = clock.now()
        request = GenerationRequest(
            prompt=f"a lighthouse at dusk #{serial}", count=rng.randint(1, 4)
        )
        job = Job(
            id=f"u{index}-{serial}",
            requester=requester,
            provider="apixo",
            request=request,
            created_at=now,
            updated_at=now,
            deadline_at=now + 900,
        )
        started = time.perf_counter()
        await store.admit(job)
        admitted = time.perf_counter()
        failed = rng.random() < 0.1  # a failed job is refunded in full
        await store.finish(
            job.id,
            JobState.FAILED if failed else JobState.DONE,
            delivered=0 if failed else request.count,
        )
        finished = time.perf_counter()
        if counting.is_set():
            admits.append(admitted - started)
            finishes.append(finished - admitted)
            done.append(1)


async def measure(path: Path) -> dict[str, float]:
    db = Database(path)
    await db.open()
    # Generous limits: this measures the ledger's speed, not its refusals.
    store = SqliteJobStore(db, SystemClock(), QuotaDefaults(default_limit=10**9))
    result = await _drive(store)
    row = await db.fetchone(_TOTALS)
    await db.close()
    return _checked(result, row)


async def measure_postgres(url: str) -> dict[str, float]:
    db = PgDatabase(url)
    await db.open()
    store = PostgresJobStore(db, SystemClock(), QuotaDefaults(default_limit=10**9))
    result = await _drive(store)
    row = await db.fetchrow(_TOTALS)
    await db.close()
    return _checked(result, row)


_TOTALS = (
    "SELECT COUNT(*) AS jobs, "
    "(SELECT COUNT(*) FROM ledger) AS entries, "
    "(SELECT COALESCE(SUM(used), 0) FROM usage_daily) AS used, "
    "(SELECT COALESCE(SUM(delivered), 0) FROM jobs) AS delivered FROM jobs"
)


async def _drive(store: JobStore) -> dict[str, float]:
    stop, counting = asyncio.Event(), asyncio.Event()
    admits: list[float] = []
    finishes: list[float] = []
    done: list[int] = []
    users = [
        asyncio.create_task(_user(store, i, stop, counting, admits, finishes, done))
        for i in range(USERS)
    ]
    await asyncio.sleep(WARMUP_SECONDS)
    counting.set()
    started = time.perf_counter()
    await asyncio.sleep(MEASURE_SECONDS)
    counting.clear()
    elapsed = time.perf_counter() - started
    stop.set()
    await asyncio.gather(*users)
    return {
        "pairs": len(done),
        "seconds": elapsed,
        "rate": len(done) / elapsed,
        "admit_p50": percentile(admits, 50) or 0.0,
        "admit_p99": percentile(admits, 99) or 0.0,
        "finish_p50": percentile(finishes, 50) or 0.0,
        "finish_p99": percentile(finishes, 99) or 0.0,
    }


def _checked(result: dict[str, float], row: Any) -> dict[str, float]:
    assert row is not None
    if int(row["used"]) != int(row["delivered"]):
        raise RuntimeError(f"ledger mismatch: used {row['used']} != delivered {row['delivered']}")
    return {**result, "jobs": int(row["jobs"]), "entries": int(row["entries"])}


def _postgres() -> tuple[dict[str, float] | None, str]:
    """The PostgreSQL run, or None and why not."""
    from tests.pg import PgUnavailable, start_cluster, stop_cluster

    try:
        cluster = start_cluster(durable=True)
    except PgUnavailable as exc:
        return None, str(exc)
    try:

        async def run_pg() -> dict[str, float]:
            conn = await asyncpg.connect(cluster.url("postgres"))
            version = conn.get_server_version()
            await conn.execute("CREATE DATABASE ledger")
            await conn.close()
            result = await measure_postgres(cluster.url("ledger"))
            return {**result, "major": version.major}

        return asyncio.run(run_pg()), ""
    finally:
        stop_cluster(cluster)


def run() -> Section:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="wanbot-bench-") as tmp:
        result = asyncio.run(measure(Path(tmp) / "ledger.sqlite3"))
    pg, why_not = _postgres()  # the same run, the same machine, one after the other
    load = max(load_before, os.getloadavg()[0])
    rate = result["rate"]
    target, ok = target_at_least(rate, TARGET_PER_SECOND, "/s")
    missed = (
        f"Measured while other work loaded the machine (1-minute load average {load:.1f} "
        f"on {os.cpu_count()} cores): the store shares the CPU with it. Run it on a quiet "
        "machine (load below 1) for the store's own figure."
    )
    figures = [
        Figure(
            "reserve + settle (admit + finish) per second",
            rate,
            "/s",
            target,
            ok,
            0,
            missed=missed,
        ),
        Figure("admit latency p99", result["admit_p99"] * 1000, "ms"),
        Figure("finish latency p99", result["finish_p99"] * 1000, "ms"),
        Figure(
            "PostgreSQL: reserve + settle (admit + finish) per second",
            pg["rate"] if pg else None,
            "/s",
            digits=0,
        ),
    ]
    if pg:
        figures.append(Figure("PostgreSQL: admit latency p99", pg["admit_p99"] * 1000, "ms"))

    def column(r: dict[str, float] | None) -> list[str]:
        if r is None:
            return ["n/a"] * 6
        return [
            f"{r['pairs']:,.0f}",
            f"{r['seconds']:.1f} s (after {WARMUP_SECONDS:.0f} s warm-up)",
            f"**{r['rate']:,.0f}**",
            _ms(r["admit_p50"], r["admit_p99"]),
            _ms(r["finish_p50"], r["finish_p99"]),
            f"{r['jobs']:,.0f} / {r['entries']:,.0f}",
        ]

    labels = [
        "admit + finish pairs measured",
        "measured for",
        "pairs per second",
        "admit latency p50 / p99",
        "finish latency p50 / p99",
        "jobs / ledger rows at the end",
    ]
    pg_name = f"PostgreSQL {pg['major']:.0f}" if pg else "PostgreSQL"
    table = md_table(
        ["figure", "SQLite", pg_name],
        [["concurrent users", USERS, USERS if pg else "n/a"]]
        + [[label, a, b] for label, a, b in zip(labels, column(result), column(pg), strict=True)],
    )
    missing = f"\n\nPostgreSQL did not run: {why_not}." if pg is None else ""
    body = f"""{table}{missing}

Machine load during the run (1-minute load average, highest seen): {load:.1f} on
{os.cpu_count()} cores.

Method: {USERS} coroutines, one per user (spread over five servers, two roles each),
each loop `JobStore.admit(job)` (quota facts read and checked, job inserted, images
reserved by trigger) then `JobStore.finish(...)` (final state; the trigger writes the
charge and refund rows and the daily totals); 1-4 images per job, one job in ten fails
and is refunded in full. The quota limit is set high so every admit succeeds. After each
run the bench checks that the ledger's usage equals the images delivered.

SQLite (`SqliteJobStore`): both calls are `Database.atomic()` units, one hop to SQLite's
thread each, and units that arrive together share one `BEGIN IMMEDIATE ... COMMIT` (each
in its own savepoint), which is where the throughput comes from. One file in WAL mode
with `synchronous=FULL` (as `storage.sqlite.db.Database` opens it) on the machine's local disk.

PostgreSQL (`PostgresJobStore`): a server started for the run on the same disk, over a
unix socket, with its default durable settings (fsync, synchronous_commit on), and the
store's pool of 10 connections. admit() is one transaction of six round trips (BEGIN,
the user's advisory lock, the server's (shared: these servers have no budget), the quota
facts, the insert, COMMIT), the locks taken before the facts are read so that admission
stays exact under concurrency; finish() is one compare-and-set UPDATE whose
trigger settles. Every commit waits for its WAL flush (PostgreSQL groups the flushes of
concurrent commits); the server's processes share the machine's cores with the bench."""
    return Section("ledger", "Quota ledger throughput", figures, body)


def _ms(p50: float, p99: float) -> str:
    return f"{p50 * 1000:.2f} / {p99 * 1000:.2f} ms"

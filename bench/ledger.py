"""Quota ledger throughput: JobStore.admit (check quota, insert, reserve) plus
JobStore.finish (final state, charge and refund) per second, 100 users at once on
one SQLite file, through the real store, schema and triggers."""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path

from bench.common import Figure, Section, md_table, percentile, target_at_least
from bot.core.clock import SystemClock
from bot.core.models import GenerationRequest, Job, JobState, Requester
from bot.core.quota import QuotaDefaults
from storage.db import Database
from storage.jobs import SqliteJobStore

USERS = 100
WARMUP_SECONDS = 1.0
MEASURE_SECONDS = 6.0
TARGET_PER_SECOND = 2000


async def _user(
    store: SqliteJobStore,
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
    row = await db.fetchone(
        "SELECT COUNT(*) AS jobs, "
        "(SELECT COUNT(*) FROM ledger) AS entries, "
        "(SELECT COALESCE(SUM(used), 0) FROM usage_daily) AS used, "
        "(SELECT COALESCE(SUM(delivered), 0) FROM jobs) AS delivered FROM jobs"
    )
    await db.close()
    assert row is not None
    if int(row["used"]) != int(row["delivered"]):
        raise RuntimeError(f"ledger mismatch: used {row['used']} != delivered {row['delivered']}")
    return {
        "pairs": len(done),
        "seconds": elapsed,
        "rate": len(done) / elapsed,
        "admit_p50": percentile(admits, 50) or 0.0,
        "admit_p99": percentile(admits, 99) or 0.0,
        "finish_p50": percentile(finishes, 50) or 0.0,
        "finish_p99": percentile(finishes, 99) or 0.0,
        "jobs": int(row["jobs"]),
        "entries": int(row["entries"]),
    }


def run() -> Section:
    with tempfile.TemporaryDirectory(prefix="wanbot-bench-") as tmp:
        result = asyncio.run(measure(Path(tmp) / "ledger.sqlite3"))
    rate = result["rate"]
    target, ok = target_at_least(rate, TARGET_PER_SECOND, "/s")
    figures = [
        Figure("reserve + settle (admit + finish) per second", rate, "/s", target, ok, 0),
        Figure("admit latency p99", result["admit_p99"] * 1000, "ms"),
        Figure("finish latency p99", result["finish_p99"] * 1000, "ms"),
    ]
    table = md_table(
        ["figure", "value"],
        [
            ["concurrent users", USERS],
            ["admit + finish pairs measured", f"{result['pairs']:,}"],
            ["measured for", f"{result['seconds']:.1f} s (after {WARMUP_SECONDS:.0f} s warm-up)"],
            ["pairs per second", f"**{rate:,.0f}**"],
            ["admit latency p50 / p99", _ms(result["admit_p50"], result["admit_p99"])],
            ["finish latency p50 / p99", _ms(result["finish_p50"], result["finish_p99"])],
            ["jobs / ledger rows at the end", f"{result['jobs']:,} / {result['entries']:,}"],
        ],
    )
    body = f"""{table}

Method: {USERS} coroutines, one per user (spread over five servers, two roles each),
each loop `SqliteJobStore.admit(job)` (quota facts read and checked, job inserted,
images reserved by trigger) then `SqliteJobStore.finish(...)` (final state; the trigger
writes the charge and refund rows and the daily totals); 1-4 images per job, one job
in ten fails and is refunded in full. Both are `Database.atomic()` units: one hop to
SQLite's thread each, and units that arrive together share one `BEGIN IMMEDIATE ...
COMMIT` (each in its own savepoint), which is where the throughput comes from. One
SQLite file in WAL mode with `synchronous=NORMAL` (as `storage.db.Database` opens it)
on the machine's local disk. The quota limit is set high so every admit succeeds.
After the run the bench checks that the ledger's usage equals the images delivered."""
    return Section("ledger", "Quota ledger throughput", figures, body)


def _ms(p50: float, p99: float) -> str:
    return f"{p50 * 1000:.2f} / {p99 * 1000:.2f} ms"

"""Database bytes per job: 10,000 jobs through the store's real state changes.

    python -m bench.storage [--jobs N] [--no-write]

Every job goes the way the engine takes it (admit -> submitting -> running with a
task id -> delivering with its result URLs -> done) with a Discord-sized requester,
request and delivery record, count=4 and 300-character result URLs. Measured three
times in one run, on fresh SQLite files after a WAL checkpoint: as the bot stores jobs
now (URLs beside the row while delivering, dropped at DONE: migration 0004; compact
JSON, no zero refund row, partial indexes: migration 0006; the callback token set at
submit as the engine does and cleared when the job ends, no role ids, display name or
count in the row, a smaller history index: migration 0008), the same with the Discord
front end's full delivery record (its DiscordRef and input notes), and in the layout
before 0004 (URLs written into the job row and kept).
Prints the figures and writes its own section of bench/RESULTS.md (replacing only
that section).
Standalone: `python -m bench` does not run it, and its full rewrite of RESULTS.md
drops this section until this script runs again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sqlite3
import string
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bot.chat.meta import ChatMeta
from bot.core.clock import FakeClock
from bot.core.models import GenerationRequest, Job, JobState, Requester
from bot.core.quota import QuotaDefaults
from bot.discord.surface import DiscordRef
from storage.sqlite.db import Database
from storage.sqlite.jobs import SqliteJobStore

RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"
HEADING = "## Storage: database bytes per job"
TARGET_BYTES = 1024
URL_CHARS = 300
IMAGES = 4
IN_FLIGHT = 8  # PROVIDER_CONCURRENCY's default: jobs finishing together
MONTH = 30 * 86400.0
ROOMY = QuotaDefaults(default_limit=10**9, max_running=10**9, max_queued=10**9)
# Measured before migration 0006 with this workload (bench run of 2026-11-30 20:58 UTC,
# URLs dropped layout): quoted as such in the section, never as this run's figure.
BEFORE_0006 = {"file": 1654, "vacuumed": 1613}
# The same, after migration 0007 and before 0008 (run of 2026-11-30 22:35 UTC).
BEFORE_0008 = {"file": 1156, "vacuumed": 1092}


def _snowflake(rng: random.Random) -> str:
    return str(rng.randrange(10**17, 10**19))


def _url(rng: random.Random, task: str, index: int) -> str:
    head = f"https://file.apixo.ai/results/{task}/{index}.png?Expires=1767225600&Signature="
    tail = "".join(rng.choices(string.ascii_letters + string.digits, k=URL_CHARS - len(head)))
    return head + tail


class People:
    """Who asks: 500 users in 20 servers (5 channels each), as a busy month sees them.
    Repeat users matter: usage totals are one row per user per day, not per job."""

    def __init__(self, rng: random.Random) -> None:
        self.guilds = [_snowflake(rng) for _ in range(20)]
        self.channels = {g: [_snowflake(rng) for _ in range(5)] for g in self.guilds}
        self.users = [
            (_snowflake(rng), rng.choice(self.guilds), [_snowflake(rng) for _ in range(2)])
            for _ in range(500)
        ]

    def requester(self, rng: random.Random) -> Requester:
        user, guild, roles = rng.choice(self.users)
        return Requester(
            platform="discord",
            user_id=user,
            guild_id=guild,
            channel_id=rng.choice(self.channels[guild]),
            role_ids=roles,
            display_name="someone",
        )


def _job(rng: random.Random, people: People, n: int, now: float, full: bool) -> Job:
    words = rng.choices(["a", "misty", "harbour", "at", "dawn", "with", "boats", "gulls"], k=30)
    requester = people.requester(rng)
    status_message_id = str(_snowflake(rng))
    delivery: dict[str, object] = {"status_message_id": status_message_id}
    if full:
        # What the Discord front end stores (bot/discord/surface.py DiscordRef, without
        # what the requester already says) and the chat layer's input notes.
        ref = DiscordRef(
            channel_id=str(requester.channel_id),
            guild_id=requester.guild_id,
            status_message_id=status_message_id,
            status_channel_id=requester.channel_id,
        )
        delivery = {**ref.stored(requester), **ChatMeta(notes=[]).stored()}
    return Job(
        id=f"j{n:09d}",
        requester=requester,
        provider="apixo",
        request=GenerationRequest(prompt=" ".join(words), count=IMAGES, aspect_ratio="16:9"),
        delivery=delivery,
        created_at=now,
        updated_at=now,
    )


async def _one(
    db: Database,
    store: SqliteJobStore,
    rng: random.Random,
    people: People,
    n: int,
    now: float,
    keep: bool,
    full: bool,
) -> None:
    job = await store.admit(_job(rng, people, n, now, full))
    task = f"task-{n:09d}-{rng.randrange(10**12)}"
    # As the engine submits (bot/core/engine/dispatch.py): the callback token is set
    # with the move to SUBMITTING (its own column since 0007; cleared when final, 0008).
    token = "".join(rng.choices(string.ascii_letters + string.digits + "-_", k=24))
    await store.transition(job.id, [JobState.QUEUED], JobState.SUBMITTING, callback_token=token)
    await store.transition(
        job.id, [JobState.SUBMITTING], JobState.RUNNING, task_id=task, submitted_at=now
    )
    urls = [_url(rng, task, i) for i in range(IMAGES)]
    await store.transition(
        job.id, [JobState.RUNNING], JobState.DELIVERING, result_urls=urls, progress=100
    )
    if keep:
        # The layout before migration 0004: the URLs in the job row, kept after DONE.
        await db.fetchall(
            "UPDATE jobs SET result_urls = ? WHERE id = ?", (json.dumps(urls), job.id)
        )
    delivery = {**job.delivery, "thread_id": _snowflake(rng)}
    delivery["result_message_ids"] = [_snowflake(rng)]
    done: dict[str, object] = {"delivered": IMAGES, "delivery": delivery, "progress": 100}
    if not keep:
        done["result_urls"] = []  # as the engine records a delivery
    await store.transition(job.id, [JobState.DELIVERING], JobState.DONE, finished_at=now, **done)


def _sizes(path: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        sizes = {"file": path.stat().st_size, "live": (pages - free) * page}
        try:
            rows = conn.execute("SELECT name, SUM(pgsize), SUM(unused) FROM dbstat GROUP BY name")
            for name, size, unused in rows:
                sizes[f"table:{name}"] = int(size)
                sizes[f"unused:{name}"] = int(unused)
            payload, cells = conn.execute(
                "SELECT SUM(payload), SUM(ncell) FROM dbstat "
                "WHERE name = 'jobs' AND pagetype = 'leaf'"
            ).fetchone()
            sizes["page"] = int(page)
            sizes["row_payload"] = int(payload or 0) // max(1, int(cells or 0))
        except sqlite3.OperationalError:
            pass  # this SQLite has no dbstat: totals only
        compact = path.with_name(path.stem + "-vacuumed.sqlite3")
        conn.execute("VACUUM INTO ?", (str(compact),))
    sizes["vacuumed"] = compact.stat().st_size
    return sizes


async def _measure(folder: Path, jobs: int, keep: bool, full: bool = False) -> dict[str, int]:
    path = folder / ("kept" if keep else "full" if full else "dropped").join(("", ".sqlite3"))
    clock = FakeClock()
    rng = random.Random(7)
    people = People(rng)
    step = MONTH / jobs  # the jobs of a month, arriving evenly
    db = Database(path)
    await db.open()
    store = SqliteJobStore(db, clock, ROOMY)
    try:
        for first in range(0, jobs, IN_FLIGHT):
            batch = range(first, min(jobs, first + IN_FLIGHT))
            now = clock.now()
            await asyncio.gather(*(_one(db, store, rng, people, n, now, keep, full) for n in batch))
            await clock.advance(step * len(batch))
    finally:
        await db.close()
    return _sizes(path)


def _section(
    jobs: int,
    dropped: dict[str, int],
    full: dict[str, int],
    kept: dict[str, int],
    seconds: float,
) -> str:
    per = {name: dropped[name] / jobs for name in ("file", "live", "vacuumed")}
    verdict = "met" if per["file"] <= TARGET_BYTES else "**MISSED**"
    after = "met" if per["vacuumed"] <= TARGET_BYTES else "**MISSED**"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        HEADING,
        "",
        f"_Ran {when} in {seconds:.0f} s (`python -m bench.storage --jobs {jobs}`)._",
        "",
        "| figure | value | target |  |",
        "|---|---|---|---|",
        f"| file bytes per job, as stored now | {per['file']:,.0f} B "
        f"| <= {TARGET_BYTES:,} B | {verdict} |",
        f"| the same after `VACUUM` | {per['vacuumed']:,.0f} B | <= {TARGET_BYTES:,} B | {after} |",
        f"| live bytes per job (file minus free pages) | {per['live']:,.0f} B | | |",
        f"| file bytes per job with the Discord front end's full delivery record "
        f"| {full['file'] / jobs:,.0f} B | | |",
        f"| the same after `VACUUM` | {full['vacuumed'] / jobs:,.0f} B | | |",
        f"| file bytes per job, URLs in the job row and kept (layout before 0004) "
        f"| {kept['file'] / jobs:,.0f} B | | |",
        f"| the same after `VACUUM` | {kept['vacuumed'] / jobs:,.0f} B | | |",
        f"| database file, as stored now | {dropped['file'] / 1e6:,.2f} MB | | |",
        "",
        f"Before migration 0006 (an earlier run of this bench, same workload, not this run): "
        f"{BEFORE_0006['file']:,} B per job, {BEFORE_0006['vacuumed']:,} B after `VACUUM`. "
        "0006 and the store: JSON written compactly without default-valued fields, the "
        "requester's platform, user and server left to the row's columns; no ledger row "
        "for a refund of nothing; the indexes used only for active jobs (jobs_user_state, "
        "jobs_task) hold active jobs only; ledger times and jobs.admitted_at in whole "
        "seconds (4 bytes in SQLite, not 8).",
        "",
        f"Before migration 0008 (an earlier run, same workload, not this run): "
        f"{BEFORE_0008['file']:,} B per job, {BEFORE_0008['vacuumed']:,} B after `VACUUM`. "
        "0008 and the store: a job's callback token is cleared when the job ends (a "
        "callback is accepted only for an active job); the requester's role ids and "
        "display name, which nothing reads back from a stored job, are no longer written, "
        "nor the request's count when it equals the reservation; a user's history index "
        "without the platform.",
        "",
    ]
    tables = sorted((k for k in dropped if k.startswith("table:")), key=lambda k: -dropped[k])
    if tables:
        lines += [
            "| table or index (as stored now) | bytes per job | of which unused |",
            "|---|---|---|",
        ]
        for key in tables:
            name = key.removeprefix("table:")
            if dropped[key] / jobs < 1:
                continue
            unused = dropped.get(f"unused:{name}", 0) / jobs
            lines.append(f"| {name} | {dropped[key] / jobs:,.0f} | {unused:,.0f} |")
        lines.append("")
    if per["file"] > TARGET_BYTES:
        lines += [_why_missed(dropped, jobs), ""]
    lines.append(
        f"Method: {jobs:,} jobs of one month (500 users in 20 servers), {IN_FLIGHT} at a "
        "time, each taken through the store's real state changes (admit, submitting, "
        f"running, delivering with {IMAGES} result URLs of {URL_CHARS} characters, done); "
        "Discord-sized ids, a 30-word prompt; every change a real transaction "
        "(synchronous=FULL, WAL). Sizes after a WAL checkpoint (TRUNCATE), on fresh "
        "files, the three layouts in one run: 'as stored now' with a short delivery "
        "record (the status message; the callback token in its own column, set with the "
        "move to submitting as the engine does and cleared at the end; a requester with "
        "two role ids and a name, which the store does not keep), 'full delivery "
        "record' with what the Discord front end stores (its DiscordRef without the "
        "requester's channel and server, the chat layer's input notes), and 'before "
        "0004' writing the URLs into the job row. 'after VACUUM' is a `VACUUM INTO` copy "
        "of the same file; 'live' leaves out pages on SQLite's free list. The ledger "
        "rows (reserve and charge per job; a refund only when images are refunded, none "
        "here: every job delivers its 4) and their indexes are included: they are kept "
        "for ever; pruning finished jobs after JOB_RETENTION_DAYS leaves only them."
    )
    return "\n".join(lines) + "\n"


def _why_missed(sizes: dict[str, int], jobs: int) -> str:
    def per(*names: str) -> float:
        return sum(sizes.get(f"table:{name}", 0) for name in names) / jobs

    row = per("jobs")
    unused = sizes.get("unused:jobs", 0) / jobs
    payload, page = sizes.get("row_payload", 0), sizes.get("page", 4096)
    indexes = per("jobs_state", "jobs_task", "jobs_user_created", "jobs_user_state")
    indexes += per("sqlite_autoindex_jobs_1")
    ledger = per("ledger", "ledger_charges", "sqlite_autoindex_ledger_1")
    totals = per("usage_daily", "guild_daily")
    return (
        "Why the target is missed: what is left is the job's own data. Per job: the "
        f"job row {row:,.0f} B ({unused:,.0f} B of it unused page space: rows of "
        f"{payload:,} B on average, about {page // (payload + 6)} to a {page:,} B page, that "
        "grow after insert), "
        "its indexes "
        f"{indexes:,.0f} B (primary key, jobs by state and start time, a user's history), "
        f"the ledger {ledger:,.0f} B (two rows, their UNIQUE (job_id, kind) index and "
        f"the spend report's index; kept for ever) and the daily usage totals "
        f"{totals:,.0f} B. The row's JSON is the requester (its channel), the "
        "request (a 30-word prompt) and the delivery record (message ids). Reaching "
        "1 kB would take dropping data the bot reads back: "
        "sub-second times (~20 B), or the index of a user's history "
        f"({per('jobs_user_created'):,.0f} B); none is "
        "done here. Pruning after JOB_RETENTION_DAYS bounds the total: a pruned job "
        "leaves only its ledger rows."
    )


def write_section(text: str, path: Path = RESULTS_MD) -> None:
    """Replace this benchmark's section of RESULTS.md (or append it); others untouched."""
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    start = current.find(HEADING + "\n")
    if start == -1:
        joined = current.rstrip("\n") + ("\n\n" if current else "") + text
    else:
        end = current.find("\n## ", start + len(HEADING))
        rest = current[end + 1 :] if end != -1 else ""
        joined = current[:start] + text + ("\n" + rest if rest else "")
    path.write_text(joined, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.storage")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        dropped = asyncio.run(_measure(Path(folder), args.jobs, keep=False))
        full = asyncio.run(_measure(Path(folder), args.jobs, keep=False, full=True))
        kept = asyncio.run(_measure(Path(folder), args.jobs, keep=True))
    text = _section(args.jobs, dropped, full, kept, time.perf_counter() - started)
    print(text)
    if not args.no_write:
        write_section(text)
        print(f"wrote its section of {RESULTS_MD}")


if __name__ == "__main__":
    main()

"""Scale: 2,000 concurrent jobs in one bot process, end to end in real time. CPU
seconds per job, peak RSS and event-loop lag of the bot process, with the fake
Discord and the fake provider in another process."""

from __future__ import annotations

import asyncio
import gc
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    Figure,
    GcPauses,
    LoopLag,
    ScaledClock,
    Section,
    cpu_split,
    current_rss_mb,
    fmt,
    md_table,
    peak_rss_mb,
    percentile,
    target_below,
)
from bench.harness import bot_settings, running_bot, wait_for, world

JOBS = 2000
RATE = 200.0  # /imagine per second: all 2,000 arrive within 10 s, before any finishes
USERS = 2000  # one job each, so no per-user limit holds a job back
PROVIDER = "apixo"  # no progress hints: the scheduler makes the most status calls
TARGET_CPU_MS = 10.0
TARGET_RSS_MB = 300.0
TARGET_LAG_MS = 50.0


@dataclass
class Result:
    cpu: float = 0.0  # seconds, from the first interaction to the last upload
    cpu_system: float = 0.0  # the part spent in the kernel
    wall: float = 0.0
    rss_start: float = 0.0
    rss_peak: float = 0.0
    peak_in_flight: int = 0
    lag: list[float] = field(default_factory=list)
    acks: list[float] = field(default_factory=list)
    delivered: int = 0
    failed: int = 0
    status_calls: int = 0
    lags: list[float] = field(default_factory=list)  # provider finish to upload, seconds
    rest: dict[str, int] = field(default_factory=dict)
    world_lag_p99_ms: float = 0.0
    gc_worst: float = 0.0
    gc_full: int = 0
    gc_total: float = 0.0  # seconds in collections of every generation
    gc_count: int = 0
    gc_by_generation: list[tuple[int, float]] = field(default_factory=list)  # (count, s)
    objects_ready: int = 0  # objects the garbage collector tracks, bot ready
    objects_after: int = 0  # the same once every job has finished


async def _peak(engine: Any, result: Result, stop: asyncio.Event) -> None:
    while not stop.is_set():
        result.peak_in_flight = max(result.peak_in_flight, engine.active_count)
        await asyncio.sleep(0.1)


async def measure() -> Result:
    result = Result()
    clock = ScaledClock(1.0)
    async with world(PROVIDER, USERS, clock) as w:
        with tempfile.TemporaryDirectory(prefix="wanbot-bench-") as tmp:
            settings = bot_settings(
                w,
                PROVIDER,
                Path(tmp) / "bot.sqlite3",
                provider_concurrency=JOBS,
                provider_status_rps=500.0,
            )
            async with running_bot(settings, clock) as bot:
                result.rss_start = current_rss_mb()
                result.objects_ready = len(gc.get_objects())
                lag = LoopLag(0.01)
                stop = asyncio.Event()
                sampler = asyncio.create_task(_peak(bot.rt.engine, result, stop))
                with GcPauses() as pauses:
                    lag.start()
                    (user0, system0), wall0 = cpu_split(), time.monotonic()
                    await w.dispatch(JOBS, rate=RATE, kind="normal")

                    async def all_posted() -> bool:
                        return int((await w.state())["posted"]) >= JOBS

                    await wait_for(all_posted, timeout=240, every=0.5, what="every result")
                    user1, system1 = cpu_split()
                    result.cpu = user1 - user0 + system1 - system0
                    result.cpu_system = system1 - system0
                    result.wall = time.monotonic() - wall0
                    await lag.stop()
                stop.set()
                await sampler
                result.lag = lag.samples
                result.gc_worst = pauses.worst()
                result.gc_full = pauses.count(2)
                result.gc_total = pauses.total()
                result.gc_count = len(pauses.pauses)
                result.gc_by_generation = [
                    (pauses.count(g), sum(s for gen, s in pauses.pauses if gen == g))
                    for g in range(3)
                ]
                stats = bot.rt.engine.stats
                result.delivered, result.failed = stats.delivered, stats.failed
                result.status_calls = stats.status_calls
                state = await w.state()
                result.world_lag_p99_ms = float(state["loop_lag_p99_ms"])
                result.acks = [row[2] for row in await w.get("/acks") if row[2] is not None]
                result.rest = await w.get("/discord")
                for task in await w.get("/tasks"):
                    if task["posted"] is not None:
                        result.lags.append(task["posted"] - task["finished"])
                result.objects_after = len(gc.get_objects())
    result.rss_peak = peak_rss_mb()
    return result


def _cpu_missed(result: Result) -> str:
    """Why the CPU target is missed, from what this run counted."""
    status = result.status_calls / JOBS
    discord = sum(result.rest.values()) / JOBS
    gc_ms = 1000 * result.gc_total / JOBS
    return (
        f"Counted in this run, a job is {status:.1f} status calls, {discord:.1f} Discord "
        f"REST calls and one result download (about {status + discord + 1:.0f} HTTP "
        "requests through aiohttp, each with discord.py's or the provider adapter's work "
        "around it), a gateway event and a few SQLite units; the garbage collector took "
        f"{gc_ms:.2f} ms of it. Sampled with py-spy while this benchmark was worked on "
        "(2026-12-01, not this run): the event loop about four fifths of the bot's CPU "
        "and SQLite's thread one fifth (six write units a job, grouped into shared "
        "commits); on the loop, status polls about a fifth (some 0.3 ms a call, most of "
        "it aiohttp's request path), the /imagine handler (defer, admission, status "
        "card) and the result post (thread, upload, done card) about a sixth each, the "
        "gateway event about 5 %; no one part of the bot's own code above 1 % in self "
        "time. Done since the issue was filed: the first status card already says "
        "'generating' when the job has a provider slot (one Discord edit fewer a job), "
        "and the garbage collector's young generation is 20,000 objects after "
        "`gc.freeze()` (GC time 0.25-0.40 to about 0.06 ms a job, longest loop stall "
        "107-125 to 36 ms, in A/B runs on this machine). Tried and within the run-to-run "
        "spread (about +-1 ms): orjson for discord.py, uvloop. What is left is mostly "
        "those HTTP requests, through aiohttp and discord.py. The machine moves the figure "
        "more than any of that: the code of commit 40930a5, which recorded 10.23 ms here "
        "on 2026-11-30 21:29, measured 15.7 and 15.9 ms on 2026-12-01 04:30, and this "
        "code 16.3 and 16.5 ms in the same half hour, runs interleaved (not this run): "
        "the target asks about a third less CPU than the code that nearly met it now "
        "takes on this machine."
    )


MEMORY_MISSED = (
    "This benchmark does not break the growth down (see the objects the garbage "
    "collector tracks before and after, in the table); per-job state kept after the job, "
    "such as discord.py's caches of messages and threads, is where to look first."
)


def _burst_note(acks_ms: list[float]) -> str:
    p99 = percentile(acks_ms, 99) or 0.0
    if p99 < 100:
        return ""
    return (
        f"Note: {RATE:g} /imagine per second is a burst no single process answers at "
        f"once: each costs a few ms of CPU before and after its defer, so the 2,000 "
        f"arriving in {JOBS / RATE:.0f} s queue on the one core and the slowest wait "
        f"{p99:.0f} ms (p99), still well inside Discord's 3 s. At the steady 1,000 in "
        "flight of the acknowledgement section (about 28 new jobs per second) the p99 "
        "stays in the tens of ms."
    )


def _rest_rows(rest: dict[str, int]) -> list[list[str]]:
    rows = []
    for route, count in sorted(rest.items(), key=lambda item: -item[1]):
        if count >= JOBS // 10:
            rows.append([f"`{route}`", f"{count:,}", f"{count / JOBS:.2f}"])
    return rows


def run() -> Section:
    result = asyncio.run(measure())
    cpu_ms = 1000 * result.cpu / JOBS
    lag_p99 = 1000 * (percentile(result.lag, 99) or 0.0)
    figures = []
    target, ok = target_below(cpu_ms, TARGET_CPU_MS, "ms")
    figures.append(Figure("CPU per job", cpu_ms, "ms", target, ok, missed=_cpu_missed(result)))
    target, ok = target_below(result.rss_peak, TARGET_RSS_MB, "MB")
    figures.append(
        Figure("peak RSS (ru_maxrss)", result.rss_peak, "MB", target, ok, 0, MEMORY_MISSED)
    )
    target, ok = target_below(lag_p99, TARGET_LAG_MS, "ms")
    missed = (
        f"The longest garbage collection took {result.gc_worst * 1000:.0f} ms "
        f"({result.gc_full} full collections); see the acknowledgement section."
    )
    figures.append(Figure("event-loop lag p99", lag_p99, "ms", target, ok, 1, missed))
    figures.append(Figure("peak jobs in flight", result.peak_in_flight, "", digits=0))
    acks_ms = [a * 1000 for a in result.acks]
    table = md_table(
        ["figure", "value"],
        [
            ["jobs (one image each)", f"{JOBS:,} from {USERS:,} users at {RATE:g}/s"],
            ["delivered / failed", f"{result.delivered:,} / {result.failed:,}"],
            ["peak jobs in flight at once", f"{result.peak_in_flight:,}"],
            ["wall time, first /imagine to last upload", f"{result.wall:.1f} s"],
            [
                "process CPU in that time: user + system (system)",
                f"{result.cpu:.1f} s ({result.cpu_system:.1f} s)",
            ],
            ["**CPU per job**", f"**{cpu_ms:.2f} ms**"],
            [
                "RSS when ready / peak (ru_maxrss)",
                f"{result.rss_start:.0f} / **{result.rss_peak:.0f} MB**",
            ],
            [
                "event-loop lag p50 / p99 / max (10 ms ticker)",
                f"{fmt(1000 * (percentile(result.lag, 50) or 0), 1)} / **{lag_p99:.1f}** / "
                f"{fmt(1000 * max(result.lag, default=0), 1)} ms",
            ],
            [
                "longest GC pause / full collections",
                f"{result.gc_worst * 1000:.0f} ms / {result.gc_full}",
            ],
            [
                "time in the garbage collector: all collections (count)",
                f"{result.gc_total:.2f} s ({result.gc_count:,}), "
                f"{1000 * result.gc_total / JOBS:.2f} ms per job",
            ],
            [
                "the same by generation 0 / 1 / 2: collections, seconds",
                " / ".join(f"{n:,}, {s:.2f} s" for n, s in result.gc_by_generation),
            ],
            [
                "objects tracked by the GC: ready / after the 2,000 jobs",
                f"{result.objects_ready:,} / {result.objects_after:,}",
            ],
            [
                "ack p50 / p99 of these 2,000 /imagine",
                f"{fmt(percentile(acks_ms, 50), 1)} / {fmt(percentile(acks_ms, 99), 1)} ms",
            ],
            [
                "provider finish to upload p50 / p95",
                f"{fmt(percentile(result.lags, 50), 2)} / {fmt(percentile(result.lags, 95), 2)} s",
            ],
            ["status calls per job", fmt(result.status_calls / JOBS, 2)],
            ["fake Discord loop lag p99 (other process)", f"{result.world_lag_p99_ms:.1f} ms"],
        ],
    )
    rest = md_table(["Discord REST call", "count", "per job"], _rest_rows(result.rest))
    body = f"""{table}

Discord REST calls the bot made (routes used at least once per ten jobs):

{rest}

Method: the bot in this process exactly as `wanbot run` builds it (see the
acknowledgement section), with `PROVIDER_CONCURRENCY={JOBS}` and
`PROVIDER_STATUS_RPS=500` so all {JOBS:,} jobs are at the provider at once (the
defaults, 8 and 5/s, would queue them in the bot, which is cheaper). The world process
sends {JOBS:,} /imagine interactions at {RATE:g}/s from {USERS:,} users; each task takes
20-60 s at the APIXO-like fake (no progress hints, so the scheduler makes the most
status calls of the two kinds of provider) and returns one tiny PNG, so image bytes
cost next to nothing. Every job goes the full way: defer, status message, SQLite
admit, submit, status polls, progress edits, result download, thread, upload with
buttons, status edit, settle. CPU is `getrusage(RUSAGE_SELF)` user + system of the bot
process (its SQLite thread included) from the first interaction to the last upload,
divided by the jobs; nothing else runs in it but a 10 ms ticker measuring how late the
loop wakes it and a 100 ms sampler of the engine's job count. Peak RSS is
`ru_maxrss` of the process (it ran only this benchmark). Logging is on at INFO (to a
file), as in production. Other work on the machine (a shared one) adds to the CPU
figure: compare runs on a quiet machine.

{_burst_note(acks_ms)}"""
    return Section("scale", f"Scale: {JOBS:,} concurrent jobs in one process", figures, body)

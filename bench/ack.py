"""Acknowledgement latency: INTERACTION_CREATE sent by the fake Discord to the bot's
first response (the defer callback) arriving back, with 0, 100 and 1,000 jobs in
flight. Real time throughout (no compression): the load behind the probes (status
polls, progress edits, deliveries) runs at its real rate."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    Figure,
    GcPauses,
    LoopLag,
    ScaledClock,
    Section,
    fmt,
    md_table,
    mean,
    percentile,
    target_below,
)
from bench.harness import BotUnderTest, World, bot_settings, running_bot, wait_for, world

LEVELS = (0, 100, 1000)
PROBES = 300  # per level
PROBE_RATE = 15.0  # per second
FILL_RATE = 200.0  # interactions per second while filling up to a level
USERS = 2000
TARGET_MS = 100.0


@dataclass
class Window:
    level: int
    acks: list[float] = field(default_factory=list)  # seconds
    missing: int = 0  # probes without a first response
    in_flight: list[int] = field(default_factory=list)
    bot_lag: list[float] = field(default_factory=list)
    world_lag_p99_ms: float = 0.0
    deferred: int = 0
    gc_worst: float = 0.0  # longest garbage collection during the probes, seconds
    gc_full: int = 0  # generation-2 collections during the probes


async def _sample(bot: BotUnderTest, into: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        into.append(bot.rt.engine.active_count)
        await asyncio.sleep(0.25)


async def _idle(w: World) -> bool:
    return not any((await w.state())["dispatching"].values())


async def _top_up(w: World, bot: BotUnderTest, level: int, stop: asyncio.Event) -> None:
    """Keep about `level` jobs in flight: replace finished ones with new 20-60 s jobs,
    spread over the next second (arrivals, not bursts)."""
    while not stop.is_set():
        coming = int((await w.state())["dispatching"].get("top-up", 0))
        deficit = level - bot.rt.engine.active_count - coming
        if deficit > 0:
            await w.dispatch(deficit, rate=float(deficit), kind="normal", label="top-up")
        await asyncio.sleep(1.0)


async def _window(
    w: World, bot: BotUnderTest, level: int, lag: LoopLag, gc_pauses: GcPauses
) -> Window:
    result = Window(level)
    stop = asyncio.Event()
    helpers: list[asyncio.Task[None]] = []
    if level:
        missing = level - bot.rt.engine.active_count
        if missing > 0:
            # Jobs already part-way through (time left 1-60 s), so finishes and
            # deliveries go on during the probes, as in a steady state.
            await w.dispatch(missing, rate=FILL_RATE, kind="fill", label="fill")
            await wait_for(
                lambda: _idle(w), timeout=missing / FILL_RATE + 30, what="the fill to be sent"
            )
        helpers.append(asyncio.create_task(_top_up(w, bot, level, stop)))
        await wait_for(
            lambda: bot.rt.engine.active_count >= 0.97 * level,
            timeout=60,
            what=f"{level} jobs in flight",
        )
    helpers.append(asyncio.create_task(_sample(bot, result.in_flight, stop)))
    await w.post("/reset_lag")
    lag.reset()
    first_gc = len(gc_pauses.pauses)
    label = f"probe-{level}"
    await w.dispatch(PROBES, rate=PROBE_RATE, kind="probe", label=label)

    async def probes_answered() -> bool:
        sent, answered = (await w.state())["labels"].get(label, [0, 0])
        return bool(sent >= PROBES and answered >= sent)

    with contextlib.suppress(RuntimeError):  # unanswered probes are reported below
        await wait_for(probes_answered, timeout=PROBES / PROBE_RATE + 30, every=0.5)
    stop.set()
    await asyncio.gather(*helpers)
    result.bot_lag = list(lag.samples)
    during = gc_pauses.pauses[first_gc:]
    result.gc_worst = max((seconds for _, seconds in during), default=0.0)
    result.gc_full = sum(1 for generation, _ in during if generation == 2)
    result.world_lag_p99_ms = float((await w.state())["loop_lag_p99_ms"])
    rows: list[list[Any]] = await w.get(f"/acks?label={label}")
    for _, _, seconds, callback in rows:
        if seconds is None:
            result.missing += 1
        else:
            result.acks.append(seconds)
            result.deferred += int(callback == 5)
    return result


async def measure() -> list[Window]:
    clock = ScaledClock(1.0)
    async with world("apixo", USERS, clock) as w:
        with tempfile.TemporaryDirectory(prefix="wanbot-bench-") as tmp:
            settings = bot_settings(
                w,
                "apixo",
                Path(tmp) / "bot.sqlite3",
                provider_concurrency=2000,
                provider_status_rps=500.0,
            )
            async with running_bot(settings, clock) as bot:
                lag = LoopLag(0.01)
                lag.start()
                try:
                    with GcPauses() as pauses:
                        return [await _window(w, bot, level, lag, pauses) for level in LEVELS]
                finally:
                    await lag.stop()


def _missed(win: Window) -> str:
    unanswered = f"{win.missing} probe(s) got no answer. " if win.missing else ""
    return unanswered + (
        f"During the probes the bot's loop lag p99 was "
        f"{1000 * (percentile(win.bot_lag, 99) or 0):.0f} ms and its longest garbage "
        f"collection {1000 * win.gc_worst:.0f} ms ({win.gc_full} full collections); the "
        f"fake Discord's own loop lag p99 was {win.world_lag_p99_ms:.0f} ms (it stamps "
        "both ends, so its delays count too). A full collection scans every live object, "
        "and every probe arriving meanwhile waits. What would help: fewer long-lived "
        "objects per job (the bot already calls `gc.freeze()` once ready, so the imported "
        "libraries' objects are not scanned again)."
    )


def run() -> Section:
    windows = asyncio.run(measure())
    figures: list[Figure] = []
    rows = []
    for win in windows:
        ms = [a * 1000 for a in win.acks]
        p50, p99 = percentile(ms, 50), percentile(ms, 99)
        if win.level == max(LEVELS):
            target, ok = target_below(p99, TARGET_MS, "ms")
            if win.missing:
                ok = False
        else:
            target, ok = None, None
        figures.append(Figure(f"ack p50, {win.level:,} jobs in flight", p50, "ms"))
        figures.append(
            Figure(
                f"ack p99, {win.level:,} jobs in flight",
                p99,
                "ms",
                target,
                ok,
                missed=_missed(win),
            )
        )
        rows.append(
            [
                f"{win.level:,}",
                f"{fmt(mean(win.in_flight), 0)} ({min(win.in_flight, default=0)}-"
                f"{max(win.in_flight, default=0)})",
                f"{len(win.acks)}/{len(win.acks) + win.missing}",
                fmt(p50, 1, "ms"),
                fmt(percentile(ms, 95), 1, "ms"),
                f"**{fmt(p99, 1, 'ms')}**",
                fmt(max(ms, default=None), 1, "ms"),
                fmt(1000 * (percentile(win.bot_lag, 99) or 0), 1, "ms"),
                fmt(win.world_lag_p99_ms, 1, "ms"),
                f"{fmt(win.gc_worst * 1000, 0, 'ms')} ({win.gc_full})",
            ]
        )
    table = md_table(
        [
            "jobs in flight (target)",
            "in flight measured: mean (min-max)",
            "probes answered",
            "ack p50",
            "ack p95",
            "ack p99",
            "ack max",
            "bot loop lag p99",
            "fake Discord loop lag p99",
            "longest GC pause (full GCs)",
        ],
        rows,
    )
    body = f"""{table}

Method: the bot runs in this process exactly as `wanbot run` builds it (Runtime from
Settings, SQLite, the APIXO provider over HTTP, WanBot with all cogs, discord.py
2.7 over a real websocket); the fake Discord and the fake APIXO run in a second
process (bench/world.py), as the real ones would be elsewhere. For each level the
world first sends /imagine interactions until the engine holds that many jobs
(tasks already part-way through: 1-60 s left), then keeps the level up by sending a
new 20-60 s job for each one that finishes, so status polls, progress edits, result
downloads and uploads go on throughout. It then sends {PROBES} probe /imagine
interactions at {PROBE_RATE:g}/s. The latency is measured by the fake Discord, in
its own process: from just before it writes INTERACTION_CREATE to the websocket to
the moment the bot's `POST /interactions/{{id}}/{{token}}/callback` (type 5,
deferred) has been read. So it includes the gateway hop, discord.py's parsing and
dispatch, the command's instant checks, and the HTTP request back; only network
distance is missing.
The probes' submits are refused by the fake provider (HTTP 400), so each probe's job
ends at once and the level stays what it says; their acknowledgement is the same as
any /imagine's, since the bot defers before it does anything slow.
Settings: `PROVIDER_CONCURRENCY=2000`, `PROVIDER_STATUS_RPS=500` (so every job is
at the provider, not waiting in the bot's queue: the harder case for the loop), one
image per job, {USERS:,} users. "Loop lag" is how late a 10 ms ticker woke in each
process during the probes; a busy fake shows in its own column. The last column is
the longest pause of Python's garbage collector in the bot process during the probes
and how many full (generation 2) collections ran: a full collection stops the loop
for a time that grows with the number of live objects, and the acknowledgements
arriving meanwhile wait for it."""
    return Section("ack", "Acknowledgement latency under load", figures, body)

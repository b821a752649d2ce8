"""What every benchmark shares: figures, percentiles, a compressed clock, process
measurements (CPU, peak RSS, event-loop lag) and a description of the machine."""

from __future__ import annotations

import asyncio
import gc
import math
import os
import platform
import resource
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

# --- results ------------------------------------------------------------------------


@dataclass
class Figure:
    """One reported number, with its target when the issue sets one."""

    label: str
    value: float | None
    unit: str = ""
    target: str | None = None  # e.g. "< 100 ms"
    ok: bool | None = None  # None: no target
    digits: int = 2
    missed: str = ""  # why, and what would fix it: shown when the target is missed

    def shown(self) -> str:
        if self.value is None:
            return "n/a"
        if self.unit == "%":
            return f"{self.value:.{self.digits}f} %"
        text = f"{self.value:,.{self.digits}f}"
        return f"{text} {self.unit}".strip()

    def verdict(self) -> str:
        return "" if self.ok is None else ("met" if self.ok else "**MISSED**")


@dataclass
class Section:
    """What one benchmark reports: headline figures plus free markdown (method, tables)."""

    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    body: str = ""  # markdown: tables and the method
    seconds: float = 0.0  # wall time the benchmark took
    when: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Section:
        figures = [Figure(**f) for f in data.pop("figures", [])]
        return cls(figures=figures, **data)


def target_below(value: float | None, limit: float, unit: str) -> tuple[str, bool | None]:
    if value is None:
        return f"< {limit:g} {unit}", False
    return f"< {limit:g} {unit}", value < limit


def target_at_most(value: float | None, limit: float, unit: str) -> tuple[str, bool | None]:
    if value is None:
        return f"<= {limit:g} {unit}", False
    return f"<= {limit:g} {unit}", value <= limit


def target_at_least(value: float | None, limit: float, unit: str) -> tuple[str, bool | None]:
    if value is None:
        return f">= {limit:g} {unit}", False
    return f">= {limit:g} {unit}", value >= limit


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# --- statistics ------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def fmt(value: float | None, digits: int = 2, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{(' ' + unit) if unit else ''}"


# --- time ------------------------------------------------------------------------------


class ScaledClock:
    """A `bot.core.clock.Clock` that runs `scale` times faster than real time.

    Its zero is a `time.monotonic()` reading, which is system-wide on Linux, so a
    bot process and a fake-provider process built with the same epoch and scale
    agree on every instant. Only waiting is compressed: work takes the real time it
    takes, which then counts `scale` times over on this clock (see RESULTS.md).
    """

    def __init__(self, scale: float = 1.0, epoch: float | None = None, wall: float | None = None):
        self.scale = scale
        self.epoch = time.monotonic() if epoch is None else epoch
        self.wall = time.time() if wall is None else wall

    def monotonic(self) -> float:
        return (time.monotonic() - self.epoch) * self.scale

    def now(self) -> float:
        return self.wall + self.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.scale)

    def at_real(self, real_monotonic: float) -> float:
        """This clock's reading at a `time.monotonic()` instant."""
        return (real_monotonic - self.epoch) * self.scale

    def params(self) -> dict[str, float]:
        return {"scale": self.scale, "epoch": self.epoch, "wall": self.wall}


# --- process measurements ----------------------------------------------------------------


def cpu_seconds() -> float:
    """CPU time (user + system) of this process so far."""
    user, system = cpu_split()
    return user + system


def cpu_split() -> tuple[float, float]:
    """(user, system) CPU seconds of this process so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def peak_rss_mb() -> float:
    """Peak resident set size of this process (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss() -> bool:
    """Restart this process's peak RSS (VmHWM) from its current RSS (Linux 4.0+)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def vm_hwm_mb() -> float:
    """Peak RSS of this process's memory map (VmHWM): unlike ru_maxrss it does not
    carry the parent's RSS over an exec, and reset_peak_rss() restarts it."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return float("nan")


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024.0 * 1024.0)
    except (OSError, ValueError, IndexError):
        return float("nan")


class LoopLag:
    """A ticker task that asks to wake every `interval` s and records how late it
    woke: the time any other callback held the event loop."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval)
            self.samples.append(max(0.0, loop.time() - before - self.interval))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def reset(self) -> None:
        self.samples = []


class GcPauses:
    """Records how long each garbage collection held the interpreter (gc.callbacks)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []  # (generation, seconds)
        self._started = 0.0

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((int(info["generation"]), time.perf_counter() - self._started))

    def worst(self, generation: int | None = None) -> float:
        return max(
            (s for g, s in self.pauses if generation is None or g == generation), default=0.0
        )

    def count(self, generation: int) -> int:
        return sum(1 for g, _ in self.pauses if g == generation)

    def total(self) -> float:
        """Seconds spent in collections of every generation."""
        return sum(s for _, s in self.pauses)


# --- the machine -------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram = "unknown"
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                    break
    except (OSError, ValueError):
        pass
    import sqlite3

    import aiohttp
    import discord

    return {
        "cpu": cpu,
        "cores": str(len(os.sched_getaffinity(0))),
        "ram": ram,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "libraries": (
            f"discord.py {discord.__version__}, aiohttp {aiohttp.__version__}, "
            f"SQLite {sqlite3.sqlite_version}"
        ),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }

"""The spend chart of `/quota report`: a PNG any front end can attach.

Platform-free (it reads a `ServerReport`, names come from the caller), so the
Discord cog, the console and a future Slack adapter draw the same picture.
matplotlib is imported inside the drawing function, never at module import, and
drawing blocks for tens of milliseconds: `spend_chart` runs it on an executor.
"""

from __future__ import annotations

import asyncio
import calendar
import functools
import io
from collections.abc import Mapping
from concurrent.futures import Executor
from datetime import UTC, datetime
from pathlib import Path

from bot.core.models import ServerReport

FILENAME = "spend.png"
TOP_USERS = 8
_SIZE_INCHES = (10.0, 7.0)
_DPI = 100  # 1000 x 700 px: readable in a Discord preview, small to upload
_BAR = "#4c72b0"
_COST = "#dd8452"
_BUDGET = "#c44e52"


async def spend_chart(
    report: ServerReport,
    *,
    names: Mapping[str, str] | None = None,
    now: float | None = None,
    executor: Executor | None = None,
) -> bytes:
    """The chart as PNG bytes, drawn on `executor` (None: the loop's default)."""
    loop = asyncio.get_running_loop()
    draw = functools.partial(render_spend_chart, report, dict(names or {}), now)
    return await loop.run_in_executor(executor, draw)


def render_spend_chart(
    report: ServerReport, names: Mapping[str, str] | None = None, now: float | None = None
) -> bytes:
    """Blocking: images and cost per day this month (bars and dots), the month so far
    against the budget, and the top users. `names` maps user ids to readable names;
    `now` ends the month-so-far line today (else at the last day with images)."""
    # Lazy: matplotlib costs ~0.3 s to import; only a report needs it. The OO API with
    # an Agg canvas touches no pyplot global state, so threads may draw at once.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    start = datetime.fromtimestamp(report.period_start, tz=UTC)
    month_days = calendar.monthrange(start.year, start.month)[1]
    days = list(range(1, month_days + 1))
    images = [0] * month_days
    costs = [0.0] * month_days
    for row in report.days:
        index = datetime.fromtimestamp(row.day, tz=UTC).day - 1
        if 0 <= index < month_days:
            images[index] += row.images
            costs[index] += row.cost_usd

    fig = Figure(figsize=_SIZE_INCHES, dpi=_DPI)
    FigureCanvasAgg(fig)
    # Fixed margins: an automatic layout engine would double the drawing time.
    grid = fig.add_gridspec(
        2,
        2,
        height_ratios=(1.1, 1.0),
        left=0.065,
        right=0.92,
        top=0.89,
        bottom=0.075,
        hspace=0.42,
        wspace=0.42,
    )
    title = f"{start:%B %Y}: {report.images} images, ${report.cost_usd:,.2f}"
    if report.budget is not None:
        title += f" (budget {report.budget:,} images)"
    fig.suptitle(title, fontsize=14, fontweight="bold")

    daily = fig.add_subplot(grid[0, :])
    daily.bar(days, images, color=_BAR, label="images")
    daily.set_title("Per day", loc="left")
    daily.set_xlim(0.4, month_days + 0.6)
    daily.set_xticks(days[::2] if month_days > 16 else days)
    daily.set_xlabel("day of month (UTC)")
    daily.set_ylabel("images", color=_BAR)
    daily.set_ylim(0, max(1, *images) * 1.15)
    daily.yaxis.set_major_locator(MaxNLocator(integer=True))
    cost_axis = daily.twinx()
    spent = [(day, cost) for day, cost in zip(days, costs, strict=True) if cost > 0]
    if spent:
        cost_axis.plot(*zip(*spent, strict=True), "o", color=_COST, label="cost")
    # Free images (the mock provider): a plain $0-$1 axis rather than repeated $0.00 ticks.
    cost_axis.set_ylim(0, (max(costs) or 1.0) * 1.15)
    cost_axis.set_ylabel("cost (USD)", color=_COST)
    cost_axis.yaxis.set_major_formatter("${x:,.2f}")

    total = fig.add_subplot(grid[1, 0])
    running = _running_total(images)
    shown = _days_so_far(start, month_days, now, images)
    total.step(days[:shown], running[:shown], where="mid", color=_BAR, label="images so far")
    top = max(running[-1], report.budget or 0, 1)
    if report.budget is not None:
        total.axhline(report.budget, color=_BUDGET, linestyle="--", label="monthly budget")
    total.set_ylim(0, top * 1.15)
    total.set_xlim(1, month_days)
    total.set_title("Month so far", loc="left")
    total.set_xlabel("day of month (UTC)")
    total.yaxis.set_major_locator(MaxNLocator(integer=True))
    total.legend(loc="upper left", fontsize=9)

    users = fig.add_subplot(grid[1, 1])
    users.set_title(f"Top users (of {len(report.users)})", loc="left")
    ranked = sorted(report.users, key=lambda row: (-row.images, row.user_id))[:TOP_USERS]
    if ranked:
        labels = [_label(row.user_id, names) for row in reversed(ranked)]
        counts = [row.images for row in reversed(ranked)]
        bars = users.barh(labels, counts, color=_BAR, height=0.6)
        users.set_ylim(-0.6, max(len(ranked), 5) - 0.4)  # same bar size with few users
        users.bar_label(
            bars,
            labels=[f" {row.images} (${row.cost_usd:,.2f})" for row in reversed(ranked)],
            fontsize=9,
        )
        users.set_xlim(0, max(counts) * 1.45)
        users.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        users.text(0.5, 0.5, "no images this month", ha="center", va="center")
        users.set_xticks([])
        users.set_yticks([])
    users.set_xlabel("images")

    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def _running_total(values: list[int]) -> list[int]:
    total, out = 0, []
    for value in values:
        total += value
        out.append(total)
    return out


def _days_so_far(start: datetime, month_days: int, now: float | None, images: list[int]) -> int:
    if now is not None:
        today = datetime.fromtimestamp(now, tz=UTC)
        if (today.year, today.month) == (start.year, start.month):
            return today.day
        return month_days if today > start else 1
    used = [day for day, count in enumerate(images, start=1) if count]
    return used[-1] if used else 1


def _label(user_id: str, names: Mapping[str, str] | None) -> str:
    name = (names or {}).get(user_id) or user_id
    name = name if len(name) <= 20 else name[:19] + "…"  # fits the gap between panels
    # A display name is anyone's text: a pair of "$" would start matplotlib's mathtext
    # (and a bad formula would break the whole chart), so each one is drawn as itself.
    return name.replace("$", r"\$")


async def save_spend_chart(
    report: ServerReport,
    folder: Path,
    *,
    now: float | None = None,
    executor: Executor | None = None,
) -> Path:
    """Draw the chart and write it as `spend_<YYYY-MM>.png` in `folder` (replacing the
    month's earlier one); the path written."""
    png = await spend_chart(report, now=now, executor=executor)
    month = datetime.fromtimestamp(report.period_start, tz=UTC)
    path = folder / f"spend_{month:%Y-%m}.png"

    def write() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)

    await asyncio.to_thread(write)
    return path

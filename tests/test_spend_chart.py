"""Spend at a glance: the per-day numbers in the report, the chart PNG, and the chart
attached to Discord's /quota report and written by the console's."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

import pytest
from PIL import Image

from bot.core.clock import FakeClock
from bot.core.models import DayUsage, JobState, ServerReport, UsageRow
from bot.reports.chart import FILENAME, render_spend_chart, save_spend_chart, spend_chart
from tests.fakes.discord import FakeDiscord, FakeUser
from tests.fakes.discord.harness import Running
from tests.store_backends import Backend, space
from tests.test_console_session import _console, _settings
from tests.test_job_store import admin_for, make_job, store_for

P = ParamSpec("P")
T = TypeVar("T")
NOVEMBER = datetime(2023, 11, 1, tzinfo=UTC).timestamp()  # FakeClock starts on Nov 14th
DAY = 86_400.0


def _png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        image.load()  # decodes every pixel: a truncated file fails here
        return image.size


def _report(users: int = 12, *, budget: int | None = 400) -> ServerReport:
    rows = [
        UsageRow(user_id=str(10_000 + n), images=50 - n, cost_usd=(50 - n) * 0.03)
        for n in range(users)
    ]
    days = [
        DayUsage(day=NOVEMBER + d * DAY, images=5 + d, cost_usd=(5 + d) * 0.03)
        for d in range(0, 30, 3)
    ]
    return ServerReport(
        guild_id="g1",
        period_start=NOVEMBER,
        images=sum(row.images for row in rows),
        cost_usd=round(sum(row.cost_usd for row in rows), 4),
        budget=budget,
        users=rows,
        days=days,
    )


def test_the_chart_is_a_readable_png() -> None:
    full = render_spend_chart(_report(), {"10000": "alice"}, now=NOVEMBER + 20 * DAY)
    empty = render_spend_chart(_report(0, budget=None).model_copy(update={"days": []}))
    assert _png_size(full) == _png_size(empty) == (1000, 700)
    assert 10_000 < len(full) < 500_000  # a real drawing, small enough to upload anywhere


@pytest.mark.parametrize("name", ["$\\frac$", "$x$ cash $", "50$ guy"])
def test_a_display_name_with_dollars_is_drawn_as_text(name: str) -> None:
    # Found in review: "$\frac$" as a Discord display name broke every /quota report
    # chart of its server (matplotlib read it as a formula and failed to parse it).
    png = render_spend_chart(_report(3), {"10000": name}, now=NOVEMBER + 20 * DAY)
    assert _png_size(png) == (1000, 700)


def test_matplotlib_is_not_imported_with_the_module() -> None:
    code = "import sys, bot.reports.chart, cogs.admin; print('matplotlib' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr


class CountingExecutor(Executor):
    """A thread pool that remembers which threads ran its work."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chart-test")
        self.threads: list[str] = []

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        def run() -> T:
            self.threads.append(threading.current_thread().name)
            return fn(*args, **kwargs)

        return self._pool.submit(run)

    def shutdown(self, wait: bool = True, **kwargs: Any) -> None:
        self._pool.shutdown(wait)


async def test_drawing_runs_on_the_given_executor_not_the_loop(tmp_path: Path) -> None:
    pool = CountingExecutor()
    try:
        png = await spend_chart(_report(), executor=pool)
        path = await save_spend_chart(_report(), tmp_path / "charts", executor=pool)
    finally:
        pool.shutdown()
    assert _png_size(png) == (1000, 700)
    assert path == tmp_path / "charts" / "spend_2023-11.png"
    assert _png_size(path.read_bytes()) == (1000, 700)
    assert len(pool.threads) == 2 and all(n.startswith("chart-test") for n in pool.threads)
    assert threading.current_thread().name not in pool.threads


# --- the numbers: images and cost per UTC day ------------------------------------------


async def test_the_report_has_images_and_cost_per_day(backend: Backend, clock: FakeClock) -> None:
    store = store_for(backend, clock)
    admin = admin_for(backend, clock)
    first = await store.admit(make_job(clock, user="a", count=4))  # Nov 14th, 22:13 UTC
    await store.finish(first.id, JobState.DONE, delivered=4)
    await clock.advance(DAY)  # the 15th
    second = await store.admit(make_job(clock, user="b", count=2))
    await store.finish(second.id, JobState.DONE, delivered=1)
    failed = await store.admit(make_job(clock, user="b", count=2))
    await store.finish(failed.id, JobState.FAILED, delivered=0)  # nothing charged
    await clock.advance(2 * 3600)  # past midnight: the 16th
    third = await store.admit(make_job(clock, user="a", count=3))
    await store.finish(third.id, JobState.DONE, delivered=3)
    await store.admit(make_job(clock, user="a", count=2))  # in flight: not yet charged

    report = await admin.server_report(space("g1"))
    days = [(datetime.fromtimestamp(d.day, UTC).day, d.images) for d in report.days]
    assert days == [(14, 4), (15, 1), (16, 3)]
    assert all(d.day % DAY == 0 for d in report.days)  # each starts at UTC midnight
    assert sum(d.images for d in report.days) == report.images == 8
    assert sum(d.cost_usd for d in report.days) == pytest.approx(report.cost_usd)
    assert report.cost_usd > 0


# --- the front ends ------------------------------------------------------------------


async def test_discord_quota_report_attaches_the_chart(
    run: Running, fake: FakeDiscord, alice: FakeUser
) -> None:
    await asyncio.to_thread(render_spend_chart, _report())  # matplotlib's first import
    admin = fake.add_user("mod", admin=True)
    await fake.slash("imagine", alice, {"prompt": "a cat", "count": 2})
    await run.wait_results()
    await run.finish()
    after = fake.last_seq
    report = await fake.slash("quota", admin, subcommand="report")
    await run.drive(lambda: report.answer(ephemeral=True))
    message = report.answer(ephemeral=True)
    assert message is not None
    assert "**2** images" in report.text()
    [embed] = message["embeds"]
    # Sent as attachment://spend.png; Discord (and the fake) answer with the CDN address.
    assert urlsplit(embed["image"]["url"]).path.endswith(f"/{FILENAME}")
    assert [a["filename"] for a in message["attachments"]] == [FILENAME]
    [upload] = [
        f
        for r in fake.requests
        if r.seq > after and r.files
        for f in r.files
        if f.filename == FILENAME
    ]
    assert _png_size(upload.data) == (1000, 700)


async def test_console_quota_report_writes_the_chart(tmp_path: Path, clock: FakeClock) -> None:
    settings = _settings(tmp_path, mock_latency_seconds=1.0)
    code, shown = await _console(settings, clock, "/imagine a cat -n 2\n/quota report\n")
    assert code == 0, shown
    month = datetime.fromtimestamp(clock.now(), UTC)
    chart = tmp_path / "out" / f"spend_{month:%Y-%m}.png"
    assert f"Chart: {chart}" in shown
    assert _png_size(chart.read_bytes()) == (1000, 700)
    assert "Image usage here\nSince " in shown  # the report card, then its chart


async def test_a_chart_that_cannot_be_drawn_leaves_the_report(
    run: Running, fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.discord.reports

    async def broken(*args: object, **kwargs: object) -> bytes:
        raise RuntimeError("no fonts")

    monkeypatch.setattr(bot.discord.reports, "spend_chart", broken)
    admin = fake.add_user("mod", admin=True)
    report = await fake.slash("quota", admin, subcommand="report")
    await run.drive(lambda: report.answer(ephemeral=True))
    message = report.answer(ephemeral=True)
    assert message is not None and "**0** images" in report.text()
    assert "image" not in message["embeds"][0]
    assert not any(f.filename == FILENAME for r in fake.requests for f in r.files)

"""ConsoleDelivery writes results to files; the views print the right things where."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from PIL import Image

from bot.console.delivery import ConsoleDelivery
from bot.console.render import failure_text, progress_bar, usage_text
from bot.console.views import ChatView, ShellView
from bot.core.models import (
    ErrorKind,
    GenerationRequest,
    Job,
    JobState,
    Period,
    ProgressUpdate,
    Requester,
    ResultImage,
    UsageReport,
    UserError,
)


def _job(job_id: str = "j1") -> Job:
    return Job(
        id=job_id,
        requester=Requester(platform="console", user_id="local", is_admin=True),
        provider="mock",
        request=GenerationRequest(prompt="a cat", count=2),
        created_at=1.0,
        updated_at=1.0,
    )


def _png(color: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(out, "PNG")
    return out.getvalue()


def _images() -> list[ResultImage]:
    return [
        ResultImage(index=i, data=_png(c), content_type="image/png", filename=f"wan-{i + 1}.png")
        for i, c in enumerate(("red", "blue"))
    ]


async def test_deliver_writes_decodable_files_once(tmp_path: Path) -> None:
    lines: list[str] = []
    delivery = ConsoleDelivery(tmp_path / "out", ChatView(lines.append))
    job = _job()
    waiter = asyncio.ensure_future(delivery.wait(job.id))  # waiting before the result exists

    data = await delivery.deliver(job, _images(), ["1 image was refused"])
    again = await delivery.deliver(job, _images(), [])  # a re-delivery after a crash

    outcome = await waiter
    expected = [tmp_path / "out" / "j1_1.png", tmp_path / "out" / "j1_2.png"]
    assert outcome.ok and outcome.paths == expected
    assert data == again == {"files": [str(p) for p in expected]}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["j1_1.png", "j1_2.png"]
    with Image.open(expected[1]) as image:
        assert image.getpixel((0, 0)) == (0, 0, 255)
    assert str(expected[0]) in lines[0] and "note: 1 image was refused" in lines[0]
    # Waiting after the end answers at once.
    assert (await delivery.wait(job.id)).paths == expected


async def test_fail_resolves_waiter_and_names_the_true_cause(tmp_path: Path) -> None:
    lines: list[str] = []
    delivery = ConsoleDelivery(tmp_path, ChatView(lines.append))
    job = _job()
    error = UserError(
        kind=ErrorKind.PROVIDER_CONFIG, message="the provider account is out of credit", job_id="j1"
    )
    await delivery.fail(job, error)
    outcome = await delivery.wait(job.id)
    assert outcome.error == error and not outcome.ok
    assert lines == [f"[j1] {failure_text(error)}"]
    assert lines[0].startswith("[j1] the provider account is out of credit.")
    assert "You were not charged." in lines[0] and "`wanbot doctor`" in lines[0]
    user_fault = failure_text(UserError(kind=ErrorKind.USER_INPUT, message="prompt refused"))
    assert user_fault == "prompt refused."  # no operator hint: the user can fix it


async def test_chat_progress_is_throttled(tmp_path: Path) -> None:
    lines: list[str] = []
    delivery = ConsoleDelivery(tmp_path, ChatView(lines.append))
    job = _job()
    for progress in (0, 5, 10, 30, 35, 60):
        await delivery.progress(job, ProgressUpdate(state=JobState.RUNNING, progress=progress))
    assert lines == ["[j1] generating 0%", "[j1] generating 30%", "[j1] generating 60%"]


async def test_shell_view_keeps_stdout_for_paths(tmp_path: Path) -> None:
    results, info = io.StringIO(), io.StringIO()
    view = ShellView(results, info, tty=True)
    delivery = ConsoleDelivery(tmp_path, view)
    job, old = _job("mine"), _job("old")
    view.track(job.id)
    await delivery.progress(job, ProgressUpdate(state=JobState.RUNNING, progress=50))
    await delivery.deliver(old, _images()[:1], [])  # resumed from an earlier run
    await delivery.deliver(job, _images(), [])
    assert results.getvalue().splitlines() == [
        str(tmp_path / "mine_1.png"),
        str(tmp_path / "mine_2.png"),
    ]
    shown = info.getvalue()
    assert shown.startswith("\r[############------------] generating 50%")
    assert "earlier job old finished" in shown


async def test_shell_view_plain_lines_without_a_terminal(tmp_path: Path) -> None:
    results, info = io.StringIO(), io.StringIO()
    view = ShellView(results, info, tty=False)
    job = _job()
    view.track(job.id)
    view.progress(job, ProgressUpdate(state=JobState.QUEUED, queue_position=2))
    view.progress(job, ProgressUpdate(state=JobState.RUNNING, progress=40, eta_seconds=12))
    view.failed(job, UserError(kind=ErrorKind.TIMEOUT, message="no result in 15 min", job_id="j1"))
    assert "\r" not in info.getvalue()
    assert info.getvalue().splitlines() == [
        "j1: queued (position 2)",
        "j1: generating 40%, ~12 s left",
        "no result in 15 min. You were not charged.",
    ]
    assert results.getvalue() == ""


def test_progress_bar_and_usage_wording() -> None:
    assert progress_bar(ProgressUpdate(state=JobState.DELIVERING), width=4) == (
        "[####] downloading results"
    )
    report = UsageReport(
        guild_id="direct",
        user_id="local",
        period=Period.DAY,
        used=3,
        in_flight=1,
        limit=5,
        remaining=2,
        resets_at=1000.0 + 3 * 3600,
    )
    text = usage_text(report, now=1000.0)
    assert "You have used 3 of 5 images today; 2 left." in text
    assert "1 of them are in jobs still running" in text
    assert "resets in 3 h" in text
    blocked = usage_text(report.model_copy(update={"blocked": True}), now=0)
    assert "blocked" in blocked


async def test_a_long_session_keeps_a_bounded_number_of_outcomes(tmp_path: Path) -> None:
    from bot.console import delivery as module

    port = ConsoleDelivery(tmp_path, ShellView(io.StringIO(), io.StringIO(), tty=False))
    for n in range(module._KEEP_OUTCOMES + 50):
        port._resolve(module.Outcome(job_id=f"j{n}", paths=[]))
    assert len(port._outcomes) == module._KEEP_OUTCOMES
    assert port.finished(f"j{module._KEEP_OUTCOMES + 49}")

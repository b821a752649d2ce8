"""The console's ChatSurface writes results to files, through the conversation layer's
one delivery path; the views print the right things where."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from bot.chat import cards
from bot.chat.delivery import ChatDelivery
from bot.console.delivery import STYLE, ConsoleSurface
from bot.console.render import card_text, progress_bar
from bot.console.views import RUN, ChatView, ShellView
from bot.core.clock import FakeClock
from bot.core.engine import failures
from bot.core.models import (
    ErrorKind,
    FailureCategory,
    GenerationRequest,
    Job,
    JobState,
    Period,
    ProgressUpdate,
    Requester,
    ResultImage,
    UsageReport,
)
from bot.core.ports import POSTED_IMAGES


def _job(job_id: str = "j1", **fields: object) -> Job:
    return Job(
        id=job_id,
        requester=Requester(platform="console", user_id="local", is_admin=True),
        provider="mock",
        request=GenerationRequest(prompt="a cat", count=2),
        created_at=1.0,
        updated_at=1.0,
        **fields,
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


async def test_deliver_writes_decodable_files_once(tmp_path: Path, clock: FakeClock) -> None:
    lines: list[str] = []
    surface = ConsoleSurface(tmp_path / "out", ChatView(lines.append))
    delivery = ChatDelivery(surface, clock)
    job = _job()

    data = await delivery.deliver(job, _images(), 1)
    again = await delivery.deliver(job, _images(), 0)  # a re-delivery after a crash

    expected = [tmp_path / "out" / "j1_1.png", tmp_path / "out" / "j1_2.png"]
    assert data["files"] == again["files"] == [str(p) for p in expected]
    assert data[POSTED_IMAGES] == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["j1_1.png", "j1_2.png"]
    with Image.open(expected[1]) as image:
        assert image.getpixel((0, 0)) == (0, 0, 255)
    assert lines[0].startswith("[j1] done, 2 images saved:")
    assert str(expected[0]) in lines[0] and "note: 1 of 2 images failed" in lines[0]
    # The files are what /show brings back; gone files are said to be gone.
    done = job.model_copy(update={"delivery": data})
    assert await surface.result_urls(done) == [str(p) for p in expected]
    for path in expected:
        path.unlink()
    assert await surface.result_urls(done) is None


async def test_fail_names_the_true_cause_with_the_operators_hint(
    tmp_path: Path, clock: FakeClock
) -> None:
    lines: list[str] = []
    delivery = ChatDelivery(ConsoleSurface(tmp_path, ChatView(lines.append)), clock)
    error = failures.for_category(FailureCategory.CONFIG, "insufficient_quota", job_id="j1")
    await delivery.fail(_job(state=JobState.FAILED, error_kind=error.kind), error)
    [line] = lines
    assert line.startswith("[j1] The bot's image service account has a problem")
    assert line.count("You were not charged.") == 1 and "`wanbot doctor`" in line
    assert "try again" not in line

    lines.clear()
    user = failures.for_category(FailureCategory.USER, "NSFW", "flagged", job_id="j1")
    await delivery.fail(_job(state=JobState.FAILED, error_kind=user.kind), user)
    assert "wanbot doctor" not in lines[0]  # no operator hint: the user can fix it


async def test_a_failure_that_offers_to_try_again_gives_the_line_to_type(
    tmp_path: Path, clock: FakeClock
) -> None:
    lines: list[str] = []
    delivery = ChatDelivery(ConsoleSurface(tmp_path, ChatView(lines.append)), clock)
    job = _job(state=JobState.FAILED, error_kind=ErrorKind.PROVIDER_OUTAGE)
    await delivery.fail(job, failures.submit_uncertain("j1"))
    assert 'enter `/imagine "a cat" -n 2`' in lines[0]
    assert lines[0].lower().count("charged") == 1


async def test_chat_progress_is_throttled(tmp_path: Path, clock: FakeClock) -> None:
    lines: list[str] = []
    delivery = ChatDelivery(ConsoleSurface(tmp_path, ChatView(lines.append)), clock)
    job = _job()
    for progress in (0, 5, 10, 30, 35, 60):
        await delivery.progress(job, ProgressUpdate(state=JobState.RUNNING, progress=progress))
    assert lines == ["[j1] generating 0%", "[j1] generating 30%", "[j1] generating 60%"]
    retrying = ProgressUpdate(state=JobState.SUBMITTING, retrying_after="Timeout")
    await delivery.progress(job, retrying)
    assert "trying once more at no cost" in lines[-1]


async def test_shell_view_keeps_stdout_for_paths(tmp_path: Path, clock: FakeClock) -> None:
    results, info = io.StringIO(), io.StringIO()
    view = ShellView(results, info, tty=True)
    delivery = ChatDelivery(ConsoleSurface(tmp_path, view), clock)
    job, old = _job("mine", delivery=dict(view.ref)), _job("old", delivery={RUN: "earlier"})
    await delivery.progress(job, ProgressUpdate(state=JobState.RUNNING, progress=50))
    await delivery.progress(old, ProgressUpdate(state=JobState.RUNNING, progress=50))
    await delivery.deliver(old, _images()[:1], [])  # resumed from an earlier run
    await delivery.deliver(job, _images(), [])
    assert results.getvalue().splitlines() == [
        str(tmp_path / "mine_1.png"),
        str(tmp_path / "mine_2.png"),
    ]
    shown = info.getvalue()
    assert shown.startswith("\r[############------------] generating 50%\n")
    assert "earlier job old finished" in shown


async def test_shell_view_plain_lines_without_a_terminal(tmp_path: Path, clock: FakeClock) -> None:
    results, info = io.StringIO(), io.StringIO()
    view = ShellView(results, info, tty=False)
    delivery = ChatDelivery(ConsoleSurface(tmp_path, view), clock)
    job = _job(delivery=dict(view.ref))
    await delivery.progress(job, ProgressUpdate(state=JobState.QUEUED, queue_position=2))
    update = ProgressUpdate(state=JobState.RUNNING, progress=40, eta_seconds=12)
    await delivery.progress(job, update)
    failed = job.model_copy(update={"state": JobState.FAILED, "error_kind": ErrorKind.TIMEOUT})
    await delivery.fail(failed, failures.timeout(900, "j1"))
    assert "\r" not in info.getvalue()
    queued, running, failure = info.getvalue().splitlines()
    assert (queued, running) == ("j1: queued (position 2)", "j1: generating 40%, ~12 s left")
    assert failure.startswith("The image service did not finish within 15 minutes")
    assert failure.count("You were not charged.") == 1
    assert results.getvalue() == ""


def test_progress_bar_and_usage_wording() -> None:
    delivering = cards.status_card(
        GenerationRequest(prompt="a cat"),
        ProgressUpdate(state=JobState.DELIVERING),
        STYLE,
        0.0,
        requester_id="local",
    )
    assert progress_bar(delivering, width=4) == "[####] downloading results"
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
    text = card_text(cards.usage_card(report, STYLE, now=1000.0))
    assert text.splitlines()[0] == "Your image quota"
    for line in ("Limit: 5 per day", "Used: 3", "In progress: 1", "Remaining: 2", "Resets: in 3 h"):
        assert line in text.splitlines()
    assert text.endswith("Failed images are never charged.")
    blocked = card_text(cards.usage_card(report.model_copy(update={"blocked": True}), STYLE, 0))
    assert "blocked" in blocked


async def test_a_long_session_keeps_nothing_for_ended_jobs(
    tmp_path: Path, clock: FakeClock
) -> None:
    surface = ConsoleSurface(tmp_path, ShellView(io.StringIO(), io.StringIO(), tty=False))
    delivery = ChatDelivery(surface, clock)
    for n in range(20):
        await delivery.deliver(_job(f"j{n}"), _images()[:1], ["a note"])
    await delivery.fail(_job("failed"), failures.internal("failed"))
    assert surface._notes == {}

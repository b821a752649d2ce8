"""Pure parts of the Discord front end (and the chat layer's rules it draws): re-encoding,
wording, ids, the progress throttle and stored references."""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from PIL import Image

from bot.chat import cards, wording
from bot.chat.actions import result_filename, result_index
from bot.chat.throttle import CHAT, ProgressThrottle
from bot.core.clock import FakeClock
from bot.core.errors import QuotaDenied, QuotaReason, RefusalFacts, ValidationFailed
from bot.core.models import (
    ErrorKind,
    GenerationRequest,
    JobState,
    Period,
    ProgressUpdate,
    ResultImage,
    UserError,
)
from bot.discord import embeds
from bot.discord.imaging import CannotFit, fit_bytes, fit_images
from bot.discord.surface import DiscordRef, nonce_for
from bot.discord.views import CUSTOM_ID, custom_id

T = TypeVar("T")


def noisy_png(side: int, seed: int) -> bytes:
    """A PNG that compresses badly (random pixels), so re-encoding has work to do."""
    rng = random.Random(seed)
    img = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def test_fit_bytes_shrinks_under_the_limit_and_flattens_alpha() -> None:
    rgba = Image.new("RGBA", (800, 800), (255, 0, 0, 0))
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    big = noisy_png(600, seed=3)
    for data, limit in ((buffer.getvalue(), 4000), (big, 60_000)):
        out = fit_bytes(data, limit)
        assert len(out) <= limit
        with Image.open(io.BytesIO(out)) as img:
            assert img.format == "JPEG" and img.mode == "RGB"
    with pytest.raises(CannotFit):
        fit_bytes(big, 50)


class CountingExecutor(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.submitted = 0

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


async def test_fit_images_keeps_small_ones_and_notes_changes() -> None:
    small = ResultImage(index=0, data=b"tiny", content_type="image/png", filename="a.png")
    large = ResultImage(
        index=1, data=noisy_png(300, seed=1), content_type="image/png", filename="b.png"
    )
    with CountingExecutor() as pool:
        fitted, notes = await fit_images([small, large], 40_000, pool)
    assert pool.submitted == 1  # Pillow ran in the pool given, not the loop's default
    assert fitted[0] is small
    assert fitted[1].filename == "b.jpg" and len(fitted[1].data) <= 40_000
    assert notes == ["image 2 was re-encoded as JPEG to fit Discord's 39 KB upload limit"]


def test_nonces_and_filenames_are_short_and_stable() -> None:
    assert nonce_for("k3f9x2m7qa", 0) == "wbk3f9x2m7qa0" and len(nonce_for("x" * 40, 9)) <= 25
    assert result_filename("k3f9x2m7qa", 1, "png") == "wan_k3f9x2m7qa_2.png"


def test_result_files_are_recognised_by_job() -> None:
    name = result_filename("k3f9x2m7qa", 2, "jpg")
    assert result_index("k3f9x2m7qa", name) == 2
    assert result_index("k3f9x2m7qb", name) is None
    assert result_index("k3f9x2m7qa", "wan_k3f9x2m7qa_x.png") is None
    assert result_index("k3f9x2m7qa", "logo.png") is None


async def test_status_edits_follow_positions_and_moved_estimates_sparingly() -> None:
    clock = FakeClock()
    throttle = ProgressThrottle(CHAT)

    def show(job_id: str, update: ProgressUpdate) -> bool:
        return throttle.worth_showing(job_id, update, clock.monotonic())

    def running(eta: float) -> ProgressUpdate:
        return ProgressUpdate(state=JobState.RUNNING, eta_seconds=eta)

    def queued(position: int) -> ProgressUpdate:
        return ProgressUpdate(state=JobState.QUEUED, queue_position=position)

    assert show("a", queued(57))
    await clock.advance(5)
    assert not show("a", queued(40))  # moved, but too soon after the last edit
    await clock.advance(10)
    assert show("a", queued(39))
    await clock.advance(15)
    assert not show("a", queued(39))  # nothing new to show
    assert show("b", running(300))  # ready at t=315
    await clock.advance(15)
    assert not show("b", running(285))  # the same end, counted down
    await clock.advance(10)
    assert show("b", running(395))  # now ready at t=435: two minutes later


def test_momentary_states_cost_no_status_edit() -> None:
    # Sending (a slot was free) and posting (the results follow at once) are skipped;
    # the card goes Queued -> Generating -> results.
    throttle, now = ProgressThrottle(CHAT), FakeClock().monotonic()

    def show(job_id: str, update: ProgressUpdate) -> bool:
        return throttle.worth_showing(job_id, update, now)

    assert show("a", ProgressUpdate(state=JobState.QUEUED, queue_position=1))
    assert not show("a", ProgressUpdate(state=JobState.SUBMITTING))
    assert show("a", ProgressUpdate(state=JobState.RUNNING, progress=10))
    assert not show("a", ProgressUpdate(state=JobState.DELIVERING, progress=100))


def test_button_ids_round_trip() -> None:
    match = CUSTOM_ID.fullmatch(custom_id("edit", "k3f9x2m7qa", 3))
    assert match is not None and match["action"] == "edit" and match["index"] == "3"
    assert CUSTOM_ID.fullmatch(custom_id("reroll", "k3f9x2m7qa"))
    assert CUSTOM_ID.fullmatch("wanbot:steal:k3f9x2m7qa") is None


def test_references_survive_a_round_trip_through_job_delivery() -> None:
    ref = DiscordRef(channel_id="1", guild_id="2", status_message_id="3", mode="inline")
    again = DiscordRef.model_validate({**ref.stored(), "input_notes": ["kept apart"]})
    assert again == ref and again.status_channel == "1"


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_failure_text_says_a_front_ends_cause_once_with_code_and_job(kind: ErrorKind) -> None:
    # A cause the front end states itself is shown as it is; the card adds "not charged"
    # once, the code and the job id, never a second cause.
    message = "Discord did not take the upload in time."
    error = UserError(kind=kind, message=message, code="x1", job_id="k3f9x2m7qa")
    text = wording.failure_text(error, embeds.STYLE)
    assert text.count(message) == 1 and text.count("charged") == 1
    assert "k3f9x2m7qa" in text
    assert ("`x1`" in text) is (kind not in (ErrorKind.QUOTA, ErrorKind.CANCELLED))


def test_user_errors_are_specific() -> None:
    style = embeds.STYLE
    text = wording.refusal(ValidationFailed(["the prompt is empty", "image 1 is tiny"]), style, 0)
    assert "• the prompt is empty\n• image 1 is tiny" in text
    facts = RefusalFacts(needed=1, allowance=5, used=5, period=Period.DAY)
    denied = QuotaDenied(QuotaReason.USER_LIMIT, "log", remaining=0, resets_at=90, facts=facts)
    quota = wording.refusal(denied, style, 0)
    assert quota.startswith("You have used 5 of 5 images today; more <t:90:R>")
    assert "/usage" in quota
    assert cards.progress_bar(50) == "█████░░░░░ 50%"


def test_the_status_card_shows_prompt_mode_state_queue_progress_and_eta() -> None:
    request = GenerationRequest(prompt="a red fox", count=2, aspect_ratio="16:9")
    update = ProgressUpdate(state=JobState.QUEUED, queue_position=3, eta_seconds=60)
    card = cards.status_card(
        request, update, embeds.STYLE, 1000.0, requester_id="7", job_id="k3f9x2m7qa"
    )
    queued = embeds.embed(card)
    fields = {f.name: f.value for f in queued.fields}
    assert queued.description == "a red fox" and queued.title and "Waiting" in queued.title
    assert fields["Mode"] == "text-to-image · 2 images · 16:9"
    assert fields["Queue"] == "#3" and fields["Ready"] == "~<t:1060:R>"
    assert fields["For"] == "<@7>"
    assert queued.footer.text == "Job k3f9x2m7qa"
    running_update = ProgressUpdate(state=JobState.RUNNING, progress=40)
    running = embeds.embed(
        cards.status_card(request, running_update, embeds.STYLE, 0, requester_id="7")
    )
    assert {f.name: f.value for f in running.fields}["Progress"] == "████░░░░░░ 40%"
    # Nothing ahead in line: the card says the job is starting, not waiting for a slot.
    idle = cards.status_card(
        request, ProgressUpdate(state=JobState.QUEUED), embeds.STYLE, 0, requester_id="7"
    )
    assert idle.title == wording.STARTING_TITLE

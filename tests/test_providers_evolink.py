"""EvoLink against its fake: wire format, progress, error codes (string or integer)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import aiohttp
import pytest
from pydantic import SecretStr

from bot.core.clock import FakeClock
from bot.core.download import SafeDownloader
from bot.core.errors import ProviderError, SubmitUncertain
from bot.core.models import FailureCategory, GenerationRequest, ImageRef, TaskState
from bot.core.providers import task_id_from_callback
from bot.core.providers.base import RetryPolicy, Timeouts
from bot.core.providers.evolink import EvolinkProvider, EvolinkTask
from tests.fakes.providers import FakeEvolink, Fault, drive, make_png

FAST = Timeouts(submit=0.2, status=0.1, connect=0.1)
RETRY = RetryPolicy(attempts=3, base_delay=1.0, jitter=0.0)
T2I = GenerationRequest(prompt="a lighthouse at dusk", aspect_ratio="16:9", count=3)
I2I = GenerationRequest(
    prompt="replace the sky with stars",
    count=1,
    images=[ImageRef(url="https://a.example/1.png"), ImageRef(url="https://a.example/2.png")],
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeEvolink]:
    async with FakeEvolink() as server:
        yield server


@pytest.fixture
def provider(
    session: aiohttp.ClientSession, clock: FakeClock, fake: FakeEvolink
) -> EvolinkProvider:
    return EvolinkProvider(
        session,
        SecretStr(fake.api_key),
        fake.base_url,
        fake.files_url,
        clock,
        timeouts=FAST,
        retry=RETRY,
        downloader=SafeDownloader(session, ["127.0.0.1"], max_bytes=1_000_000, timeout=2),
        rng=random.Random(3),
    )


async def test_text_to_image_body_maps_the_aspect_ratio_to_a_size(
    provider: EvolinkProvider, fake: FakeEvolink
) -> None:
    handle = await provider.submit(T2I)
    (sent,) = fake.requests_for("submit")
    assert sent.path == "/v1/images/generations"
    assert sent.headers["Authorization"] == "Bearer test-key"
    assert sent.json == {
        "model": "wan2.5-text-to-image",
        "prompt": "a lighthouse at dusk",
        "size": "1792x1008",
        "n": 3,
    }
    assert handle.task_id.startswith("task-unified-")
    assert handle.estimated_seconds == 30


async def test_image_to_image_body_with_callback(
    provider: EvolinkProvider, fake: FakeEvolink
) -> None:
    await provider.submit(I2I, callback_url="https://bot.example/cb/evolink")
    assert fake.requests_for("submit")[0].json == {
        "model": "wan2.5-image-to-image",
        "prompt": "replace the sky with stars",
        "image_urls": ["https://a.example/1.png", "https://a.example/2.png"],
        "n": 1,
        "callback_url": "https://bot.example/cb/evolink",
    }


async def test_negative_prompt_and_third_image_are_refused_before_sending(
    provider: EvolinkProvider, fake: FakeEvolink
) -> None:
    for request in (
        T2I.model_copy(update={"negative_prompt": "blurry"}),
        I2I.model_copy(update={"images": [*I2I.images, ImageRef(url="https://a.example/3.png")]}),
    ):
        with pytest.raises(ProviderError) as caught:
            await provider.submit(request)
        # Validation refuses these in the user's words first: reaching here is the bot's.
        assert caught.value.category is FailureCategory.REQUEST
    assert fake.requests == []


async def test_progress_eta_and_results(provider: EvolinkProvider, fake: FakeEvolink) -> None:
    handle = await provider.submit(T2I)
    queued = await provider.status(handle.task_id)
    assert (queued.state, queued.progress) == (TaskState.QUEUED, 0)
    fake.set_progress(handle.task_id, 40)
    running = await provider.status(handle.task_id)
    assert (running.state, running.progress, running.eta_seconds) == (TaskState.RUNNING, 40, 18)
    fake.complete(handle.task_id, n_images=2, failed=1)
    done = await provider.status(handle.task_id)
    assert done.state is TaskState.SUCCEEDED
    assert len(done.result_urls) == 2
    image = await provider.download_result(done.result_urls[0], 0)
    assert image.data.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("code", "category"),
    [
        ("content_policy_violation", FailureCategory.USER),
        ("invalid_parameters", FailureCategory.REQUEST),  # the bot builds the parameters
        ("image_processing_error", FailureCategory.USER),
        ("image_dimension_mismatch", FailureCategory.USER),
        ("generation_failed_no_content", FailureCategory.TRANSIENT),
        ("service_error", FailureCategory.TRANSIENT),
        ("quota_exceeded", FailureCategory.TRANSIENT),
        (1234, FailureCategory.TRANSIENT),  # an integer code nobody documented
    ],
)
async def test_task_error_codes(
    provider: EvolinkProvider, fake: FakeEvolink, code: str | int, category: FailureCategory
) -> None:
    handle = await provider.submit(T2I)
    fake.fail(handle.task_id, code, "refused")
    status = await provider.status(handle.task_id)
    assert status.state is TaskState.FAILED
    assert status.failure is not None
    assert (status.failure.code, status.failure.category) == (str(code), category)


async def test_cancelled_task(provider: EvolinkProvider, fake: FakeEvolink) -> None:
    handle = await provider.submit(T2I)
    fake.cancel(handle.task_id)
    status = await provider.status(handle.task_id)
    assert status.failure is not None
    assert status.failure.code == "request_cancelled"
    assert status.failure.category is FailureCategory.CANCELLED
    # No cancel route is documented: the bot stops waiting instead.
    assert await provider.cancel(handle.task_id) is False


@pytest.mark.parametrize(
    ("status", "code", "category", "expected_code"),
    [
        (401, None, FailureCategory.CONFIG, "unauthorized"),
        (402, None, FailureCategory.CONFIG, "insufficient_quota"),
        (403, None, FailureCategory.CONFIG, "model_access_denied"),
        (400, "content_policy_violation", FailureCategory.USER, "content_policy_violation"),
        (400, 400, FailureCategory.REQUEST, "400"),  # integer code: the status decides
        (400, None, FailureCategory.REQUEST, "invalid_request"),
        (429, None, FailureCategory.TRANSIENT, "rate_limit_exceeded"),
    ],
)
async def test_submit_http_errors(
    provider: EvolinkProvider,
    fake: FakeEvolink,
    status: int,
    code: str | int | None,
    category: FailureCategory,
    expected_code: str,
) -> None:
    fake.script_submit_fault(Fault.http(status, code=code))
    with pytest.raises(ProviderError) as caught:
        await provider.submit(T2I)
    assert not isinstance(caught.value, SubmitUncertain)
    assert (caught.value.category, caught.value.code) == (category, expected_code)
    assert len(fake.requests_for("submit")) == 1


@pytest.mark.parametrize(
    "fault",
    [Fault.hang(), Fault.http(500), Fault.html(502), Fault.http(503), Fault.html(401)],
    ids=["hang", "500", "html-502", "503", "html-401"],
)
async def test_submit_without_proof_of_refusal_is_uncertain(
    provider: EvolinkProvider, fake: FakeEvolink, fault: Fault
) -> None:
    # 5xx, or a 4xx without EvoLink's own error body: the task may exist; never resent.
    fake.script_submit_fault(fault)
    with pytest.raises(SubmitUncertain):
        await provider.submit(T2I)
    assert len(fake.requests_for("submit")) == 1


async def test_status_retries_then_succeeds(
    provider: EvolinkProvider, fake: FakeEvolink, clock: FakeClock
) -> None:
    handle = await provider.submit(T2I)
    fake.script_status_fault(Fault.rate_limited(), Fault.html(503))
    status, slept = await drive(clock, provider.status(handle.task_id))
    assert status.state is TaskState.QUEUED
    assert slept == [1.0, 2.0]  # no jitter configured: pure exponential backoff


async def test_unknown_task_fails(provider: EvolinkProvider, fake: FakeEvolink) -> None:
    handle = await provider.submit(T2I)
    fake.expire(handle.task_id)
    status = await provider.status(handle.task_id)
    assert status.failure is not None and status.failure.code == "task_not_found"
    assert status.failure.category is FailureCategory.GONE  # never replaced


async def test_credits(provider: EvolinkProvider, fake: FakeEvolink) -> None:
    fake.balance = 321.5
    assert await provider.balance() == 321.5


async def test_host_uploads_an_input_image(provider: EvolinkProvider, fake: FakeEvolink) -> None:
    png = make_png(400, 400)
    url = await provider.host(png, "image/png", "input.png")
    sent = fake.requests_for("upload")[0].json
    assert sent["base64_data"].startswith("data:image/png;base64,")
    async with aiohttp.ClientSession() as client, client.get(url) as response:
        assert await response.read() == png


def test_callback_payload_is_the_status_answer() -> None:
    task = EvolinkTask.model_validate(
        {
            "created": 1757156493,
            "id": "task-unified-1757156493-imcg5zqt",
            "model": "wan2.5-image-to-image",
            "object": "image.generation.task",
            "progress": "100",
            "status": "completed",
            "results": ["https://x.evolink.ai/a.jpg"],
            "task_info": {"can_cancel": False, "estimated_time": "30"},
            "type": "image",
            "usage": {"billing_rule": "per_call", "credits_reserved": 1.2},
        }
    )
    assert task.progress == 100 and task.task_info is not None
    assert task_id_from_callback("evolink", task.model_dump()) == task.id

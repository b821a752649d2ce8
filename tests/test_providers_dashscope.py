"""DashScope against its fake: async header, sizes, partial results, UNKNOWN tasks."""

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
from bot.core.providers.base import RetryPolicy, Timeouts
from bot.core.providers.dashscope import DashscopeProvider, DashscopeTaskReply
from tests.fakes.providers import FakeDashscope, Fault, drive

FAST = Timeouts(submit=0.2, status=0.1, connect=0.1)
RETRY = RetryPolicy(attempts=3, base_delay=1.0, jitter=0.0)
T2I = GenerationRequest(prompt="a red fox", negative_prompt="text", count=4, seed=42)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDashscope]:
    async with FakeDashscope() as server:
        yield server


@pytest.fixture
def provider(
    session: aiohttp.ClientSession, clock: FakeClock, fake: FakeDashscope
) -> DashscopeProvider:
    return DashscopeProvider(
        session,
        SecretStr(fake.api_key),
        fake.base_url,
        clock,
        timeouts=FAST,
        retry=RETRY,
        downloader=SafeDownloader(session, ["127.0.0.1"], max_bytes=1_000_000, timeout=2),
        rng=random.Random(5),
    )


async def test_text_to_image_body_and_headers(
    provider: DashscopeProvider, fake: FakeDashscope
) -> None:
    handle = await provider.submit(T2I)
    (sent,) = fake.requests_for("submit")
    assert sent.path == "/api/v1/services/aigc/text2image/image-synthesis"
    assert sent.headers["Authorization"] == "Bearer test-key"
    assert sent.headers["X-DashScope-Async"] == "enable"
    assert sent.json == {
        "model": "wan2.5-t2i-preview",
        "input": {"prompt": "a red fox", "negative_prompt": "text"},
        "parameters": {"size": "1280*1280", "n": 4, "seed": 42, "watermark": False},
    }
    assert handle.task_id == fake.task().id


async def test_image_to_image_accepts_data_uris(
    provider: DashscopeProvider, fake: FakeDashscope
) -> None:
    request = GenerationRequest(
        prompt="add a hat",
        aspect_ratio="3:4",
        count=1,
        images=[ImageRef(url="data:image/png;base64,iVBORw0KGgo="), ImageRef(url="https://x/a")],
    )
    await provider.submit(request)
    (sent,) = fake.requests_for("submit")
    assert sent.path == "/api/v1/services/aigc/image2image/image-synthesis"
    assert sent.json == {
        "model": "wan2.5-i2i-preview",
        "input": {
            "prompt": "add a hat",
            "images": ["data:image/png;base64,iVBORw0KGgo=", "https://x/a"],
        },
        "parameters": {"size": "1104*1472", "n": 1},
    }


async def test_lifecycle_with_partial_success(
    provider: DashscopeProvider, fake: FakeDashscope
) -> None:
    handle = await provider.submit(T2I)
    assert (await provider.status(handle.task_id)).state is TaskState.QUEUED
    fake.start_task(handle.task_id)
    assert (await provider.status(handle.task_id)).state is TaskState.RUNNING
    fake.complete(handle.task_id, n_images=2, failed=2)
    status = await provider.status(handle.task_id)
    assert status.state is TaskState.SUCCEEDED
    assert (len(status.result_urls), status.failed_count) == (2, 2)
    image = await provider.download_result(status.result_urls[0], 0)
    assert image.width == 64


async def test_every_image_refused_is_a_user_failure(
    provider: DashscopeProvider, fake: FakeDashscope
) -> None:
    handle = await provider.submit(T2I)
    fake.complete(handle.task_id, n_images=0, failed=4, failed_code="DataInspectionFailed")
    status = await provider.status(handle.task_id)
    assert status.state is TaskState.FAILED
    assert status.failed_count == 4
    assert status.failure is not None
    assert (status.failure.code, status.failure.category) == (
        "DataInspectionFailed",
        FailureCategory.USER,
    )


@pytest.mark.parametrize(
    ("code", "category"),
    [
        ("DataInspectionFailed", FailureCategory.USER),
        ("InvalidParameter.DataInspection", FailureCategory.USER),
        ("InvalidURL", FailureCategory.REQUEST),  # the bot's hosted input link
        ("InvalidParameter", FailureCategory.REQUEST),
        ("InternalError.Algo", FailureCategory.TRANSIENT),
        ("Throttling.AllocationQuota", FailureCategory.TRANSIENT),
        ("Arrearage", FailureCategory.CONFIG),
        ("NewCode", FailureCategory.TRANSIENT),
    ],
)
async def test_failed_task_codes(
    provider: DashscopeProvider, fake: FakeDashscope, code: str, category: FailureCategory
) -> None:
    handle = await provider.submit(T2I)
    fake.fail(handle.task_id, code, "nope")
    status = await provider.status(handle.task_id)
    assert status.failure is not None
    assert (status.failure.code, status.failure.category) == (code, category)


async def test_expired_task_is_unknown_and_fails(
    provider: DashscopeProvider, fake: FakeDashscope
) -> None:
    handle = await provider.submit(T2I)
    fake.expire(handle.task_id)
    status = await provider.status(handle.task_id)
    assert status.state is TaskState.FAILED
    assert status.failure is not None
    assert status.failure.code == "task_expired"
    assert status.failure.category is FailureCategory.GONE  # never replaced


async def test_cancelled_task(provider: DashscopeProvider, fake: FakeDashscope) -> None:
    handle = await provider.submit(T2I)
    fake.cancel(handle.task_id)
    status = await provider.status(handle.task_id)
    assert status.failure is not None
    assert status.failure.category is FailureCategory.CANCELLED


@pytest.mark.parametrize(
    ("status", "code", "category"),
    [
        (400, "Arrearage", FailureCategory.CONFIG),  # billing, although HTTP 400
        (400, "DataInspectionFailed", FailureCategory.USER),
        (400, "InvalidParameter", FailureCategory.REQUEST),
        (401, "InvalidApiKey", FailureCategory.CONFIG),
        (403, "AccessDenied.Unpurchased", FailureCategory.CONFIG),
        (429, "Throttling.RateQuota", FailureCategory.TRANSIENT),
    ],
)
async def test_submit_error_codes(
    provider: DashscopeProvider,
    fake: FakeDashscope,
    status: int,
    code: str,
    category: FailureCategory,
) -> None:
    fake.script_submit_fault(Fault.http(status, code=code, message="explained"))
    with pytest.raises(ProviderError) as caught:
        await provider.submit(T2I)
    assert not isinstance(caught.value, SubmitUncertain)
    assert (caught.value.code, caught.value.category, caught.value.message) == (
        code,
        category,
        "explained",
    )


async def test_status_retry_on_throttling(
    provider: DashscopeProvider, fake: FakeDashscope, clock: FakeClock
) -> None:
    handle = await provider.submit(T2I)
    fake.script_status_fault(Fault.http(429, code="Throttling", retry_after=3))
    status, slept = await drive(clock, provider.status(handle.task_id))
    assert status.state is TaskState.QUEUED
    assert slept == [3.0]


async def test_no_balance_api(provider: DashscopeProvider, fake: FakeDashscope) -> None:
    assert await provider.balance() is None
    assert fake.requests == []


def test_wire_model_reads_partial_results_verbatim() -> None:
    reply = DashscopeTaskReply.model_validate(
        {
            "request_id": "r1",
            "output": {
                "task_id": "t1",
                "task_status": "SUCCEEDED",
                "results": [
                    {"orig_prompt": "p", "actual_prompt": "p!", "url": "https://x/1.png"},
                    {"code": "InternalError.Timeout", "message": "timed out"},
                ],
                "task_metrics": {"TOTAL": "2", "SUCCEEDED": 1, "FAILED": 1},
            },
            "usage": {"image_count": 1},
        }
    )
    assert reply.output.task_metrics is not None
    assert reply.output.task_metrics.total == 2
    assert reply.output.results[1].code == "InternalError.Timeout"


@pytest.mark.parametrize(
    "fault",
    [Fault.http(500, code="InternalError"), Fault.html(502), Fault.html(400)],
    ids=["500-envelope", "html-502", "html-400"],
)
async def test_submit_without_proof_of_refusal_is_uncertain(
    provider: DashscopeProvider, fake: FakeDashscope, fault: Fault
) -> None:
    # A 5xx, even in DashScope's own shape, or a 4xx without it: the task may exist.
    fake.script_submit_fault(fault)
    with pytest.raises(SubmitUncertain):
        await provider.submit(T2I)
    assert len(fake.requests_for("submit")) == 1

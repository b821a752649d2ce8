"""APIXO against its fake: exact wire format, every failure class, faults, retries."""

from __future__ import annotations

import random
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from bot.core.clock import FakeClock
from bot.core.download import DownloadError, SafeDownloader
from bot.core.errors import ProviderError, SubmitUncertain
from bot.core.models import FailureCategory, GenerationRequest, ImageRef, TaskState
from bot.core.providers import task_id_from_callback
from bot.core.providers.apixo import ApixoProvider, ApixoTask
from bot.core.providers.base import RetryPolicy, Timeouts
from tests.fakes.loopback import serve_loopback
from tests.fakes.providers import FakeApixo, Fault, drive

FAST = Timeouts(submit=0.2, status=0.1, connect=0.1)
RETRY = RetryPolicy(attempts=4, base_delay=1.0, max_delay=8.0, jitter=0.5, max_retry_after=30)
T2I = GenerationRequest(prompt="a cinematic panda in snow", aspect_ratio="16:9", count=2)


@pytest.fixture
async def fake() -> AsyncIterator[FakeApixo]:
    async with FakeApixo() as server:
        yield server


def make_provider(
    session: aiohttp.ClientSession, clock: FakeClock, base_url: str, key: str = "test-key"
) -> ApixoProvider:
    return ApixoProvider(
        session,
        SecretStr(key),
        base_url,
        clock,
        timeouts=FAST,
        retry=RETRY,
        downloader=SafeDownloader(session, ["127.0.0.1"], max_bytes=1_000_000, timeout=2),
        rng=random.Random(7),
    )


@pytest.fixture
def provider(session: aiohttp.ClientSession, clock: FakeClock, fake: FakeApixo) -> ApixoProvider:
    return make_provider(session, clock, fake.base_url)


# --- happy paths ----------------------------------------------------------------------


async def test_text_to_image_submit_sends_the_documented_body(
    provider: ApixoProvider, fake: FakeApixo
) -> None:
    request = T2I.model_copy(update={"negative_prompt": "blurry"})
    handle = await provider.submit(request)
    (sent,) = fake.requests_for("submit")
    assert sent.path == "/api/v1/generateTask/wan-2-5-image"
    assert sent.headers["Authorization"] == "Bearer test-key"
    assert sent.headers["Content-Type"].startswith("application/json")
    assert sent.json == {
        "request_type": "async",
        "input": {
            "mode": "text-to-image",
            "prompt": "a cinematic panda in snow",
            "aspect_ratio": "16:9",
            "num_images": 2,
            "negative_prompt": "blurry",
        },
    }
    assert handle.provider == "apixo"
    assert handle.task_id == fake.task().id
    assert fake.task().n == 2  # never the provider's default of 4


async def test_image_to_image_with_callback(provider: ApixoProvider, fake: FakeApixo) -> None:
    request = GenerationRequest(
        prompt="make it night",
        aspect_ratio="21:9",
        count=1,
        images=[ImageRef(url="https://cdn.discordapp.com/a.png")],
    )
    await provider.submit(request, callback_url="https://bot.example/callbacks/apixo")
    sent = fake.requests_for("submit")[0].json
    assert sent == {
        "request_type": "callback",
        "callback_url": "https://bot.example/callbacks/apixo",
        "input": {
            "mode": "image-to-image",
            "prompt": "make it night",
            "aspect_ratio": "21:9",
            "num_images": 1,
            "image_urls": ["https://cdn.discordapp.com/a.png"],
        },
    }


async def test_status_lifecycle_and_result_download(
    provider: ApixoProvider, fake: FakeApixo
) -> None:
    handle = await provider.submit(T2I)
    assert (await provider.status(handle.task_id)).state is TaskState.QUEUED
    fake.start_task(handle.task_id)
    assert (await provider.status(handle.task_id)).state is TaskState.RUNNING
    fake.complete(handle.task_id)
    status = await provider.status(handle.task_id)
    assert status.state is TaskState.SUCCEEDED
    assert status.result_urls == [fake.result_url(handle.task_id, i) for i in range(2)]
    assert fake.requests_for("status")[0].query == {"taskId": handle.task_id}
    image = await provider.download_result(status.result_urls[1], 1)
    assert image.data == fake.result_png(handle.task_id, 1)
    assert (image.content_type, image.filename, image.width) == ("image/png", "wan-2.png", 72)


async def test_partial_success_lists_only_the_images_that_succeeded(
    provider: ApixoProvider, fake: FakeApixo
) -> None:
    handle = await provider.submit(T2I.model_copy(update={"count": 4}))
    fake.complete(handle.task_id, n_images=2)
    status = await provider.status(handle.task_id)
    assert status.state is TaskState.SUCCEEDED
    assert len(status.result_urls) == 2


async def test_tasks_can_complete_after_n_status_calls(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with FakeApixo(complete_after=3) as fake:
        provider = make_provider(session, clock, fake.base_url)
        handle = await provider.submit(T2I)
        states = [(await provider.status(handle.task_id)).state for _ in range(3)]
    assert states == [TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCEEDED]


async def test_balance(provider: ApixoProvider, fake: FakeApixo) -> None:
    assert await provider.balance() == 74.87
    fake.balance = "12.5"  # type: ignore[assignment]  # a numeric string is accepted too
    assert await provider.balance() == 12.5


async def test_callback_body_names_the_task(provider: ApixoProvider, fake: FakeApixo) -> None:
    received: list[Any] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/cb", hook)
    runner, port = await serve_loopback(app)
    try:
        handle = await provider.submit(T2I, callback_url="https://bot.example/cb")
        fake.complete(handle.task_id)
        assert await fake.send_callback(handle.task_id, f"http://127.0.0.1:{port}/cb") == 200
    finally:
        await runner.cleanup()
    assert task_id_from_callback("apixo", received[0]) == handle.task_id
    assert isinstance(received[0]["data"]["resultJson"], str)


# --- task failures --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "category"),
    [
        ("PromptInvalid", FailureCategory.USER),
        ("SensitiveContentDetected", FailureCategory.USER),
        ("InputImageSensitiveContentDetected", FailureCategory.USER),
        ("NSFW", FailureCategory.USER),
        ("PromptLengthExceeded", FailureCategory.USER),
        ("RateLimitExceeded", FailureCategory.TRANSIENT),
        ("Task TimeOut", FailureCategory.TRANSIENT),
        ("Timeout", FailureCategory.TRANSIENT),
        ("SomethingNobodyDocumented", FailureCategory.TRANSIENT),
    ],
)
async def test_fail_codes_map_to_categories(
    provider: ApixoProvider, fake: FakeApixo, code: str, category: FailureCategory
) -> None:
    handle = await provider.submit(T2I)
    fake.fail(handle.task_id, code, "rejected by the model service")
    status = await provider.status(handle.task_id)
    assert status.state is TaskState.FAILED
    assert status.failure is not None
    assert (status.failure.code, status.failure.category) == (code, category)
    assert status.failure.message == "rejected by the model service"


async def test_success_without_images_is_a_failure(
    provider: ApixoProvider, fake: FakeApixo
) -> None:
    handle = await provider.submit(T2I)
    fake.complete(handle.task_id, n_images=0)
    status = await provider.status(handle.task_id)
    assert status.state is TaskState.FAILED
    assert status.failure is not None and status.failure.code == "no_images"


async def test_forgotten_task_fails(provider: ApixoProvider, fake: FakeApixo) -> None:
    handle = await provider.submit(T2I)
    fake.expire(handle.task_id)
    status = await provider.status(handle.task_id)
    assert status.state is TaskState.FAILED
    assert status.failure is not None and status.failure.code == "task_not_found"


# --- HTTP errors on submit: never retried -----------------------------------------------


@pytest.mark.parametrize(
    ("status", "category"),
    [
        (400, FailureCategory.REQUEST),  # a malformed request is the bot's
        (401, FailureCategory.CONFIG),
        (402, FailureCategory.CONFIG),
        (403, FailureCategory.CONFIG),
        (429, FailureCategory.TRANSIENT),
    ],
)
async def test_submit_http_errors(
    provider: ApixoProvider, fake: FakeApixo, status: int, category: FailureCategory
) -> None:
    fake.script_submit_fault(Fault.http(status, retry_after=7 if status == 429 else None))
    with pytest.raises(ProviderError) as caught:
        await provider.submit(T2I)
    assert not isinstance(caught.value, SubmitUncertain)
    assert (caught.value.category, caught.value.status) == (category, status)
    assert caught.value.retry_after == (7.0 if status == 429 else None)
    assert len(fake.requests_for("submit")) == 1
    assert fake.tasks == {}


async def test_invalid_request_message_comes_from_the_envelope(
    provider: ApixoProvider, fake: FakeApixo
) -> None:
    with pytest.raises(ProviderError) as caught:
        await provider.submit(T2I.model_copy(update={"prompt": "   "}))
    assert caught.value.category is FailureCategory.REQUEST  # validation lets none through
    assert "Missing required field: input.prompt" in caught.value.message


async def test_wrong_key_is_config(
    session: aiohttp.ClientSession, clock: FakeClock, fake: FakeApixo
) -> None:
    provider = make_provider(session, clock, fake.base_url, key="wrong")
    with pytest.raises(ProviderError) as caught:
        await provider.submit(T2I)
    assert (caught.value.category, caught.value.status) == (FailureCategory.CONFIG, 401)
    with pytest.raises(ProviderError) as caught:
        await provider.balance()
    assert caught.value.category is FailureCategory.CONFIG


@pytest.mark.parametrize("fault", [Fault.hang(), Fault.disconnect()], ids=["hang", "disconnect"])
async def test_submit_that_may_have_arrived_is_uncertain_and_not_retried(
    provider: ApixoProvider, fake: FakeApixo, fault: Fault
) -> None:
    fake.script_submit_fault(fault)
    with pytest.raises(SubmitUncertain):
        await provider.submit(T2I)
    assert len(fake.requests_for("submit")) == 1


@pytest.mark.parametrize(
    "fault",
    [
        Fault.http(504),
        Fault.malformed_json(),
        Fault.http(500),
        Fault.http(502),
        Fault.http(503),
        Fault.html(502),
        Fault.html(403),  # a proxy's page, not APIXO's envelope: proves nothing
        Fault.http(404),
        Fault.reset(),
    ],
    ids=["504", "malformed", "500", "502", "503", "html-502", "html-403", "404", "reset"],
)
async def test_unreadable_or_gateway_timeout_submit_is_uncertain(
    provider: ApixoProvider, fake: FakeApixo, fault: Fault
) -> None:
    fake.script_submit_fault(fault)
    with pytest.raises(SubmitUncertain):
        await provider.submit(T2I)
    assert len(fake.requests_for("submit")) == 1


async def test_an_envelope_error_inside_http_200_counts_as_its_own_code(
    provider: ApixoProvider, fake: FakeApixo
) -> None:
    # APIXO's envelope `code` can carry the error in an HTTP 200: a 402 there is a
    # proof of refusal, a 500 there is not.
    fake.script_submit_fault(Fault.http(402).with_http_status(200))
    with pytest.raises(ProviderError) as caught:
        await provider.submit(T2I)
    assert not isinstance(caught.value, SubmitUncertain)
    assert (caught.value.category, caught.value.status) == (FailureCategory.CONFIG, 402)
    fake.script_submit_fault(Fault.http(500).with_http_status(200))
    with pytest.raises(SubmitUncertain):
        await provider.submit(T2I)
    assert len(fake.requests_for("submit")) == 2 and fake.tasks == {}


async def test_connection_refused_is_transient_not_uncertain(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = make_provider(session, clock, f"http://127.0.0.1:{port}/api/v1")
    with pytest.raises(ProviderError) as caught:
        await provider.submit(T2I)
    assert not isinstance(caught.value, SubmitUncertain)
    assert (caught.value.category, caught.value.code) == (
        FailureCategory.TRANSIENT,
        "connect_failed",
    )


async def test_request_the_provider_would_reject_is_never_sent(
    provider: ApixoProvider, fake: FakeApixo
) -> None:
    with pytest.raises(ProviderError) as caught:
        await provider.submit(GenerationRequest(prompt="x", aspect_ratio="21:9"))  # i2i only
    # Validation refuses it in the user's words first: reaching here is the bot's mistake.
    assert caught.value.category is FailureCategory.REQUEST
    assert fake.requests == []


# --- status queries: retried with backoff on the fake clock -----------------------------


async def test_status_retries_with_backoff_and_honours_retry_after(
    provider: ApixoProvider, fake: FakeApixo, clock: FakeClock
) -> None:
    handle = await provider.submit(T2I)
    fake.complete(handle.task_id)
    fake.script_status_fault(Fault.rate_limited(retry_after=2), Fault.http(502), Fault.http(500))
    status, slept = await drive(clock, provider.status(handle.task_id))
    assert status.state is TaskState.SUCCEEDED
    assert len(fake.requests_for("status")) == 4
    assert slept[0] == 2.0  # exactly what Retry-After asked for
    # Exponential in the retry number (base 1 s), up to half taken off by jitter.
    assert 1.0 <= slept[1] <= 2.0
    assert 2.0 <= slept[2] <= 4.0


async def test_status_gives_up_after_bounded_attempts(
    provider: ApixoProvider, fake: FakeApixo, clock: FakeClock
) -> None:
    handle = await provider.submit(T2I)
    fake.script_status_fault(*[Fault.http(500)] * 5)
    with pytest.raises(ProviderError) as caught:
        await drive(clock, provider.status(handle.task_id))
    assert (caught.value.category, caught.value.status) == (FailureCategory.TRANSIENT, 500)
    assert len(fake.requests_for("status")) == RETRY.attempts


async def test_long_retry_after_is_handed_to_the_caller(
    provider: ApixoProvider, fake: FakeApixo, clock: FakeClock
) -> None:
    handle = await provider.submit(T2I)
    fake.script_status_fault(Fault.rate_limited(retry_after=120))
    with pytest.raises(ProviderError) as caught:
        await drive(clock, provider.status(handle.task_id))
    assert caught.value.retry_after == 120.0
    assert len(fake.requests_for("status")) == 1


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault.malformed_json(), "bad_response"),
        (Fault.html(502), "http_502"),
        (Fault.hang(), "timeout"),
        (Fault.http(504), "http_504"),
    ],
    ids=["malformed", "html", "hang", "504"],
)
async def test_status_faults_are_transient_and_retried(
    provider: ApixoProvider, fake: FakeApixo, clock: FakeClock, fault: Fault, code: str
) -> None:
    handle = await provider.submit(T2I)
    fake.script_status_fault(fault)
    status, slept = await drive(clock, provider.status(handle.task_id))
    assert status.state is TaskState.QUEUED
    assert len(slept) == 1
    assert len(fake.requests_for("status")) == 2
    # And when it persists, the last error tells what happened.
    fake.script_status_fault(*[fault] * RETRY.attempts)
    with pytest.raises(ProviderError) as caught:
        await drive(clock, provider.status(handle.task_id))
    assert (caught.value.category, caught.value.code) == (FailureCategory.TRANSIENT, code)


async def test_status_config_errors_are_not_retried(
    provider: ApixoProvider, fake: FakeApixo, clock: FakeClock
) -> None:
    handle = await provider.submit(T2I)
    fake.script_status_fault(Fault.http(402))
    with pytest.raises(ProviderError) as caught:
        await drive(clock, provider.status(handle.task_id))
    assert caught.value.category is FailureCategory.CONFIG
    assert len(fake.requests_for("status")) == 1


# --- downloads and wire models ----------------------------------------------------------


async def test_missing_result_image_is_a_download_error(
    provider: ApixoProvider, fake: FakeApixo
) -> None:
    handle = await provider.submit(T2I)
    fake.complete(handle.task_id)
    fake.break_result(handle.task_id, 0)
    status = await provider.status(handle.task_id)
    with pytest.raises(DownloadError) as caught:
        await provider.download_result(status.result_urls[0], 0)
    assert caught.value.status == 404
    assert "404" in caught.value.reason


def test_wire_model_parses_the_documented_success_verbatim() -> None:
    data = {
        "taskId": "task_12345678",
        "state": "success",
        "resultJson": '{"resultUrls":["https://file.apixo.ai/img1.png"]}',
        "createTime": "1767965610929",  # numeric strings are tolerated
        "completeTime": 1767965652317,
        "costTime": 41388,
        "somethingNew": True,  # and so are extra fields
    }
    task = ApixoTask.model_validate(data)
    assert task.result is not None
    assert task.result.result_urls == ["https://file.apixo.ai/img1.png"]
    assert task.create_time == 1767965610929


def test_provider_repr_hides_the_key(provider: ApixoProvider) -> None:
    assert "test-key" not in repr(provider)

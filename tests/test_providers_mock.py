"""The offline mock: real images, progress on the injected clock, bounded memory."""

from __future__ import annotations

import base64
import io
import logging

import aiohttp
import pytest
from PIL import Image

from bot.core.clock import FakeClock
from bot.core.download import DownloadError, SafeDownloader
from bot.core.models import (
    FailureCategory,
    GenerationRequest,
    ImageRef,
    ProviderFailure,
    TaskState,
)
from bot.core.providers.mock import MockProvider
from tests.fakes.providers import FakeFileServer


def split_image() -> bytes:
    """Left half red, right half blue: a mirror shows."""
    image = Image.new("RGB", (400, 400), (255, 0, 0))
    image.paste((0, 0, 255), (200, 0, 400, 400))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


async def test_text_to_image_honours_count_and_aspect(clock: FakeClock) -> None:
    mock = MockProvider(clock, latency_seconds=0, long_side=256)
    handle = await mock.submit(GenerationRequest(prompt="a cat", aspect_ratio="16:9", count=3))
    status = await mock.status(handle.task_id)
    assert status.state is TaskState.SUCCEEDED
    assert status.result_urls == [f"mock://{handle.task_id}/{i}.png" for i in range(3)]
    images = [await mock.download_result(url, i) for i, url in enumerate(status.result_urls)]
    decoded = [decode(image.data) for image in images]
    assert [image.size for image in decoded] == [(256, 144)] * 3
    assert images[0].data != images[1].data  # each image differs
    assert (images[2].filename, images[2].width, images[2].content_type) == (
        "wan-3.png",
        256,
        "image/png",
    )


async def test_progress_follows_the_clock(clock: FakeClock) -> None:
    mock = MockProvider(clock, latency_seconds=10, long_side=128)
    handle = await mock.submit(GenerationRequest(prompt="slow"))
    assert handle.estimated_seconds == 10
    first = await mock.status(handle.task_id)
    assert (first.state, first.progress, first.eta_seconds) == (TaskState.RUNNING, 0, 10)
    await clock.advance(4)
    middle = await mock.status(handle.task_id)
    assert (middle.progress, middle.eta_seconds) == (40, 6)
    await clock.advance(6)
    assert (await mock.status(handle.task_id)).state is TaskState.SUCCEEDED


async def test_image_to_image_mirrors_the_first_input(clock: FakeClock) -> None:
    mock = MockProvider(clock, latency_seconds=0, long_side=200)
    request = GenerationRequest(
        prompt="edit", count=1, images=[ImageRef(url=data_uri(split_image()))]
    )
    handle = await mock.submit(request)
    status = await mock.status(handle.task_id)
    result = decode((await mock.download_result(status.result_urls[0], 0)).data).convert("RGB")
    pixel = result.getpixel((40, 100))  # left half, away from the captions
    assert isinstance(pixel, tuple)
    red, _, blue = pixel
    assert blue > 150 and red < 100  # the blue right half is now on the left


async def test_image_to_image_fetches_urls_with_the_downloader(
    clock: FakeClock, session: aiohttp.ClientSession
) -> None:
    async with FakeFileServer() as files:
        url = files.add("in.png", split_image())
        downloader = SafeDownloader(session, ["127.0.0.1"])
        mock = MockProvider(clock, latency_seconds=0, downloader=downloader, long_side=200)
        handle = await mock.submit(GenerationRequest(prompt="e", images=[ImageRef(url=url)]))
        status = await mock.status(handle.task_id)
    assert status.state is TaskState.SUCCEEDED
    assert len(files.requests) == 1


@pytest.mark.parametrize(
    "url", ["https://cdn.example.test/a.png", "data:image/png;base64,%%%"], ids=["url", "bad-uri"]
)
async def test_unreadable_input_is_a_user_failure(clock: FakeClock, url: str) -> None:
    mock = MockProvider(clock, latency_seconds=0)
    handle = await mock.submit(GenerationRequest(prompt="e", images=[ImageRef(url=url)]))
    status = await mock.status(handle.task_id)
    assert status.state is TaskState.FAILED
    assert status.failure is not None
    assert (status.failure.code, status.failure.category) == (
        "input_unreadable",
        FailureCategory.USER,
    )


async def test_failure_hook(clock: FakeClock) -> None:
    def hook(request: GenerationRequest) -> ProviderFailure | None:
        if "forbidden" in request.prompt:
            return ProviderFailure(code="NSFW", category=FailureCategory.USER)
        return None

    mock = MockProvider(clock, latency_seconds=1, failure_hook=hook)
    bad = await mock.submit(GenerationRequest(prompt="something forbidden"))
    good = await mock.submit(GenerationRequest(prompt="fine"))
    await clock.advance(1)
    failed = await mock.status(bad.task_id)
    assert failed.failure is not None and failed.failure.code == "NSFW"
    assert (await mock.status(good.task_id)).state is TaskState.SUCCEEDED


async def test_cancel(clock: FakeClock) -> None:
    mock = MockProvider(clock, latency_seconds=5)
    handle = await mock.submit(GenerationRequest(prompt="x"))
    assert await mock.cancel(handle.task_id) is True
    status = await mock.status(handle.task_id)
    assert status.failure is not None
    assert status.failure.category is FailureCategory.CANCELLED


async def test_memory_is_released_after_download_or_ttl(clock: FakeClock) -> None:
    mock = MockProvider(clock, latency_seconds=0, ttl_seconds=60, long_side=64)
    fetched = await mock.submit(GenerationRequest(prompt="a", count=2))
    forgotten = await mock.submit(GenerationRequest(prompt="b"))
    urls = (await mock.status(fetched.task_id)).result_urls
    for index, url in enumerate(urls):
        await mock.download_result(url, index)
    assert mock.task_count == 1
    with pytest.raises(DownloadError):
        await mock.download_result(urls[0], 0)
    await clock.advance(61)
    assert (await mock.status(forgotten.task_id)).state is TaskState.FAILED
    assert mock.task_count == 0


async def test_announces_itself_once(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    mock = MockProvider(clock, latency_seconds=0)
    with caplog.at_level(logging.WARNING, logger="bot.core.providers.mock"):
        await mock.submit(GenerationRequest(prompt="a"))
        await mock.submit(GenerationRequest(prompt="b"))
    assert sum("mock provider" in record.getMessage() for record in caplog.records) == 1


async def test_balance_is_what_it_was_given(clock: FakeClock) -> None:
    assert await MockProvider(clock).balance() is None
    assert await MockProvider(clock, balance=12.0).balance() == 12.0

"""An offline provider that draws real images locally: for trying the bot without a key,
for the console, and for tests of everything above the providers."""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import logging
import textwrap
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFont, ImageOps

from bot.core.clock import Clock
from bot.core.download import DownloadError, SafeDownloader
from bot.core.models import (
    Capabilities,
    FailureCategory,
    GenerationRequest,
    ProviderFailure,
    ResultImage,
    TaskHandle,
    TaskState,
    TaskStatus,
)
from bot.core.providers.base import TASK_NOT_FOUND, gone_task, result_image
from bot.core.providers.sizes import SIZED_ASPECT_RATIOS, parse_ratio

log = logging.getLogger(__name__)

# Decides, at submit, how a task ends: a ProviderFailure fails it when it completes
# (None: it succeeds). The hook may also raise ProviderError to fail the submit itself.
FailureHook = Callable[[GenerationRequest], ProviderFailure | None]


@dataclass
class _MockTask:
    request: GenerationRequest
    started: float  # clock.monotonic()
    failure: ProviderFailure | None
    cancelled: bool = False
    images: list[bytes] | None = None
    downloaded: set[int] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class MockProvider:
    name = "mock"
    capabilities = Capabilities(
        name="mock",
        max_input_images=3,
        aspect_ratios_t2i=list(SIZED_ASPECT_RATIOS),
        aspect_ratios_i2i=list(SIZED_ASPECT_RATIOS),
        supports_negative_prompt=True,
        supports_cancel=True,
        supports_callback=False,
        accepts_data_uri=True,
        price_per_image_usd=0.0,
        failed_tasks_free=True,  # nothing is ever billed
    )

    def __init__(
        self,
        clock: Clock,
        latency_seconds: float = 3.0,
        *,
        downloader: SafeDownloader | None = None,
        failure_hook: FailureHook | None = None,
        ttl_seconds: float = 900.0,
        balance: float | None = None,
        long_side: int = 1024,
        executor: Executor | None = None,
    ) -> None:
        self._clock = clock
        self._latency = max(0.0, latency_seconds)
        self._downloader = downloader
        self._failure_hook = failure_hook
        self._ttl = ttl_seconds
        self._balance = balance
        self._long_side = long_side
        self._executor = executor
        self._tasks: dict[str, _MockTask] = {}
        self._announced = False

    @property
    def task_count(self) -> int:
        """Tasks still held in memory (for tests of the memory bound)."""
        return len(self._tasks)

    async def submit(
        self, request: GenerationRequest, *, callback_url: str | None = None
    ) -> TaskHandle:
        if not self._announced:
            self._announced = True
            log.warning("using the offline mock provider: images are drawn locally, not by Wan")
        self._purge()
        failure = self._failure_hook(request) if self._failure_hook else None
        task_id = f"mock-{uuid.uuid4().hex[:16]}"
        self._tasks[task_id] = _MockTask(request, self._clock.monotonic(), failure)
        return TaskHandle(provider=self.name, task_id=task_id, estimated_seconds=self._latency)

    async def status(self, task_id: str) -> TaskStatus:
        self._purge()
        task = self._tasks.get(task_id)
        if task is None:
            return gone_task(TASK_NOT_FOUND, "the mock")
        if task.cancelled:
            return TaskStatus(
                state=TaskState.FAILED,
                failure=ProviderFailure(
                    code="cancelled", message="cancelled", category=FailureCategory.CANCELLED
                ),
            )
        elapsed = self._clock.monotonic() - task.started
        if elapsed < self._latency:
            return TaskStatus(
                state=TaskState.RUNNING,
                progress=min(99, int(100 * elapsed / self._latency)),
                eta_seconds=self._latency - elapsed,
            )
        if task.failure is not None:
            return TaskStatus(state=TaskState.FAILED, failure=task.failure)
        async with task.lock:
            if task.images is None:
                try:
                    task.images = await self._render(task.request)
                except _InputUnreadable as exc:
                    task.failure = ProviderFailure(
                        code="input_unreadable", message=str(exc), category=FailureCategory.USER
                    )
                    return TaskStatus(state=TaskState.FAILED, failure=task.failure)
        urls = [f"mock://{task_id}/{index}.png" for index in range(len(task.images))]
        return TaskStatus(state=TaskState.SUCCEEDED, progress=100, result_urls=urls)

    async def balance(self) -> float | None:
        return self._balance

    async def cancel(self, task_id: str) -> bool:
        task = self._tasks.get(task_id)
        if task is None or task.images is not None:
            return False
        task.cancelled = True
        return True

    async def download_result(self, url: str, index: int) -> ResultImage:
        """Serve a rendered image from memory; a task is dropped once all are fetched."""
        task_id, _, name = url.removeprefix("mock://").partition("/")
        task = self._tasks.get(task_id)
        number = name.removesuffix(".png")
        if (
            not url.startswith("mock://")
            or task is None
            or task.images is None
            or not number.isdigit()
            or int(number) >= len(task.images)
        ):
            raise DownloadError("the image is no longer available", code="http_status", status=404)
        data = task.images[int(number)]
        task.downloaded.add(int(number))
        if len(task.downloaded) == len(task.images):
            del self._tasks[task_id]
        return result_image(index, data, "image/png")

    def _purge(self) -> None:
        # Bounded memory: tasks nobody fetched are dropped after latency + TTL.
        horizon = self._clock.monotonic() - self._latency - self._ttl
        for task_id in [tid for tid, task in self._tasks.items() if task.started < horizon]:
            del self._tasks[task_id]

    async def _render(self, request: GenerationRequest) -> list[bytes]:
        source = await self._input_image(request) if request.images else None
        size = _size(request.aspect_ratio, self._long_side)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, render_images, request, size, source)

    async def _input_image(self, request: GenerationRequest) -> bytes:
        url = request.images[0].url
        if url.startswith("data:"):
            try:
                return base64.b64decode(url.split(",", 1)[1], validate=True)
            except (IndexError, binascii.Error):
                raise _InputUnreadable("the input image's data URI is not valid base64") from None
        if self._downloader is None:
            raise _InputUnreadable("the mock provider cannot fetch image URLs (no downloader)")
        try:
            return (await self._downloader.fetch(url)).data
        except DownloadError as exc:
            raise _InputUnreadable(f"the input image could not be fetched: {exc.reason}") from None


class _InputUnreadable(Exception):
    pass


def _size(aspect_ratio: str, long_side: int) -> tuple[int, int]:
    ratio = parse_ratio(aspect_ratio)
    if ratio >= 1:
        return long_side, max(1, round(long_side / ratio))
    return max(1, round(long_side * ratio)), long_side


# --- drawing (runs in a thread: no event loop here) ---------------------------------

_TINTS = [(255, 120, 60), (60, 160, 255), (120, 220, 90), (230, 90, 200)]


def render_images(
    request: GenerationRequest, size: tuple[int, int], source: bytes | None
) -> list[bytes]:
    """`request.count` PNGs: a gradient with the prompt (text-to-image), or a mirrored,
    tinted copy of the first input image (image-to-image); "MOCK IMAGE" on every one."""
    base = _prepare_source(source, size) if source is not None else None
    images = []
    for index in range(request.count):
        tint = _TINTS[index % len(_TINTS)]
        if base is not None:
            image = Image.blend(base, Image.new("RGB", size, tint), 0.2)
            label = "MOCK IMAGE (edit)"
        else:
            image = _gradient(size, tint)
            label = "MOCK IMAGE"
        _caption(image, label, request, index)
        buffer = io.BytesIO()
        image.save(buffer, "PNG", compress_level=3)
        images.append(buffer.getvalue())
    return images


def _prepare_source(source: bytes, size: tuple[int, int]) -> Image.Image:
    try:
        with Image.open(io.BytesIO(source)) as opened:
            picture = opened.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise _InputUnreadable("the input image could not be decoded") from exc
    return ImageOps.mirror(ImageOps.fit(picture, size))


def _gradient(size: tuple[int, int], tint: tuple[int, int, int]) -> Image.Image:
    width, height = size
    horizontal = Image.linear_gradient("L").rotate(90).resize(size)
    vertical = Image.linear_gradient("L").resize(size)
    flat = Image.new("L", size, tint[2])
    image = Image.merge("RGB", (horizontal, vertical, flat))
    return Image.blend(image, Image.new("RGB", (width, height), tint), 0.35)


def _caption(image: Image.Image, label: str, request: GenerationRequest, index: int) -> None:
    draw = ImageDraw.Draw(image)
    width, height = image.size
    big = ImageFont.load_default(size=max(16, width // 14))
    small = ImageFont.load_default(size=max(12, width // 40))
    band = height // 7
    draw.rectangle((0, 0, width, band), fill=(0, 0, 0))
    draw.text((width // 40, band // 6), label, fill=(255, 255, 255), font=big)
    lines = textwrap.wrap(request.prompt, width=max(20, width // 13))[:3]
    info = f"{index + 1}/{request.count}  {request.aspect_ratio}  {request.mode.value}"
    footer = [*lines, info]
    line_height = max(14, width // 34)
    top = height - line_height * len(footer) - line_height // 2
    draw.rectangle((0, top - line_height // 4, width, height), fill=(0, 0, 0))
    for number, line in enumerate(footer):
        draw.text((width // 40, top + number * line_height), line, fill=(255, 255, 255), font=small)

"""Make result images fit Discord's upload limit (Pillow, run in the image executor)."""

from __future__ import annotations

import asyncio
import io
import math
from concurrent.futures import Executor
from pathlib import PurePosixPath
from typing import Any

import aiohttp.payload
from aiohttp.abc import AbstractStreamWriter
from PIL import Image

from bot.core.models import ResultImage
from bot.core.validation.wording import file_size

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # bytes per file without server boosts
_QUALITIES = (90, 82, 74)
_MIN_SIDE = 256


class CannotFit(Exception):
    pass


UPLOAD_STEP = 1024 * 1024  # bytes handed to the socket per write of an upload


class SharedBytes(io.BytesIO):
    """A file over `data` that an upload reads without copying it.

    BytesIO shares the bytes it starts with until its buffer is asked for, and
    aiohttp's payload asks (getbuffer) just to learn the size, which copies a whole
    image per upload: here the answer is a view of the same bytes. aiohttp sends it
    with SharedBytesPayload (registered on first use)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self._shared = data
        if not _registered:
            _register_payload()

    def getbuffer(self) -> memoryview:
        return memoryview(self._shared)

    def close(self) -> None:
        # discord.File stores this object's own close method on it (a reference cycle
        # that only the cyclic GC breaks): let go of the image bytes here, at once.
        self._shared = b""
        super().close()


class SharedBytesPayload(aiohttp.payload.Payload):
    """How aiohttp sends a SharedBytes: views of the bytes themselves, UPLOAD_STEP per
    write, instead of BytesIOPayload's 64 KB copies with a loop turn each (a 4 MB
    image: 4 socket writes instead of 64)."""

    _value: SharedBytes

    def __init__(self, value: SharedBytes, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("content_type", "application/octet-stream")
        super().__init__(value, *args, **kwargs)
        self._size = len(value.getbuffer())

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes(self._value.getbuffer()).decode(encoding, errors)

    async def write(self, writer: AbstractStreamWriter) -> None:
        view = self._value.getbuffer()
        for start in range(0, len(view), UPLOAD_STEP):
            await writer.write(view[start : start + UPLOAD_STEP])


_registered = False


def _register_payload() -> None:
    global _registered
    aiohttp.payload.PAYLOAD_REGISTRY.register(
        SharedBytesPayload, SharedBytes, order=aiohttp.payload.Order.try_first
    )
    _registered = True


def fit_bytes(data: bytes, limit: int) -> bytes:
    """Re-encode as JPEG (then downscale) until at most `limit` bytes. Blocking."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        rgb = _flatten(img)
    for quality in _QUALITIES:
        out = _jpeg(rgb, quality)
        if len(out) <= limit:
            return out
    scaled = rgb
    while min(scaled.size) > _MIN_SIDE:
        # JPEG size grows roughly with the pixel count: aim a little under the limit.
        factor = max(0.5, min(0.9, math.sqrt(limit / max(len(out), 1)) * 0.95))
        size = (max(1, int(scaled.width * factor)), max(1, int(scaled.height * factor)))
        scaled = rgb.resize(size, Image.Resampling.LANCZOS)
        out = _jpeg(scaled, _QUALITIES[-1])
        if len(out) <= limit:
            return out
    raise CannotFit(f"cannot fit an image into {limit} bytes")


def _flatten(img: Image.Image) -> Image.Image:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


async def fit_images(
    images: list[ResultImage], limit: int, executor: Executor | None
) -> tuple[list[ResultImage], list[str]]:
    """Images re-encoded where larger than `limit`, and a note for each one changed.
    Pillow runs in `executor` (the runtime's image pool)."""
    loop = asyncio.get_running_loop()
    fitted: list[ResultImage] = []
    notes: list[str] = []
    for image in images:
        if len(image.data) <= limit:
            fitted.append(image)
            continue
        data = await loop.run_in_executor(executor, fit_bytes, image.data, limit)
        stem = PurePosixPath(image.filename).stem or f"image{image.index + 1}"
        fitted.append(
            image.model_copy(
                update={"data": data, "content_type": "image/jpeg", "filename": f"{stem}.jpg"}
            )
        )
        notes.append(
            f"image {image.index + 1} was re-encoded as JPEG to fit Discord's "
            f"{file_size(limit)} upload limit"
        )
    return fitted, notes

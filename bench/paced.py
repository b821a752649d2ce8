"""Real-sized images and a network with a speed, for the `bigimages` benchmark.

- Photo-like PNGs (a smooth gradient with grain that does not compress) of the
  sizes Wan returns (2-5 MB results) and users send (1-10 MB inputs), made once and
  cached in the temporary directory (not committed: tens of MB).
- A fake APIXO whose result downloads and a fake Discord whose CDN downloads are
  paced at DOWNLOAD_BPS per connection, and whose upload reads are paced at
  UPLOAD_BPS, so the bot holds bytes for as long as a real network makes it.
  Uploaded files are kept only by their first bytes (enough to tell the task), so
  the world process does not hoard gigabytes.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import struct
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web
from PIL import Image

from bench.model import Timing
from bench.providers import MARKER, DrivenApixo
from tests.fakes.discord import FakeDiscord
from tests.fakes.discord.wire import RecordedFile, Upload
from tests.fakes.providers import FakeTask

DOWNLOAD_BPS = 200e6 / 8  # bytes per second, per connection
UPLOAD_BPS = 100e6 / 8
CHUNK = 256 * 1024  # per paced step: larger steps keep the world process's own CPU down
KEPT_PREFIX = 4096  # bytes of an uploaded file the fake keeps (the task marker is early)
CACHE = Path(tempfile.gettempdir()) / "wanbot-bench-bigimages-v2"

# (width, height, grain) per file; grain sets how much of it is incompressible.
RESULT_SPECS = [(1280, 1280, g) for g in (3, 6, 12, 22, 40, 80)]  # 2.2-4.9 MB
INPUT_SPECS = [(1024, 768, 8), (1280, 960, 4), (1600, 1200, 6), (2000, 1500, 12)]
INPUT_SPECS += [(2200, 1800, 16), (2560, 1600, 20)]  # 1.1-9.5 MB


def _photo(width: int, height: int, grain: int, seed: int) -> bytes:
    """A gradient with Gaussian grain of strength `grain`, as an RGB PNG."""
    rng = random.Random(seed)
    base = Image.linear_gradient("L").resize((width, height))
    channels = []
    for _ in range(3):
        noise = Image.effect_noise((width, height), grain)
        shade = rng.uniform(0.3, 0.7)
        channels.append(Image.blend(base, noise, shade))
    image = Image.merge("RGB", channels)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()


def _cached(name: str, specs: list[tuple[int, int, int]]) -> list[bytes]:
    CACHE.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (width, height, grain) in enumerate(specs):
        path = CACHE / f"{name}-{i}-{width}x{height}-{grain}.png"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(_photo(width, height, grain, seed=i))
            tmp.replace(path)
        out.append(path.read_bytes())
    return out


def result_images() -> list[bytes]:
    return _cached("result", RESULT_SPECS)


def input_images() -> list[bytes]:
    return _cached("input", INPUT_SPECS)


def with_marker(png: bytes, task_id: str) -> bytes:
    """`png` with a tEXt chunk naming its task right after IHDR (no re-encode)."""
    body = b"tEXt" + MARKER + b"\x00" + f"{task_id};".encode()
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    head = 8 + 25  # signature + IHDR
    return png[:head] + chunk + png[head:]


async def paced_write(response: web.StreamResponse, data: bytes, rate: float) -> None:
    view = memoryview(data)
    started = time.monotonic()
    for start in range(0, len(view), CHUNK):
        await response.write(view[start : start + CHUNK])
        ahead = started + (start + CHUNK) / rate - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)
    await response.write_eof()


class BigApixo(DrivenApixo):
    """The self-driving APIXO-like fake, with real-sized results for the tasks of
    serials in `big_serials`, served at DOWNLOAD_BPS."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.big_serials: set[int] = set()
        self.short_serials: set[int] = set()
        self.big_results = result_images()

    def _add_task(self, task: FakeTask) -> FakeTask:
        added = super()._add_task(task)
        record = self.records.get(task.id)
        if record is not None and record.serial in self.short_serials:
            # A few seconds instead of 20-60: for measuring one delivery at a time.
            record.timing = Timing(0.5, self.rng.uniform(3.0, 6.0), 1.0)
        return added

    def result_png(self, task_id: str, index: int) -> bytes:
        record = self.records.get(task_id)
        if record is None or record.serial not in self.big_serials:
            return super().result_png(task_id, index)
        pick = (record.serial * 4 + index) % len(self.big_results)
        return with_marker(self.big_results[pick], task_id)  # made per request: not kept

    async def _result(self, request: web.Request) -> web.StreamResponse:
        answer = await super()._result(request)
        if not isinstance(answer, web.Response) or answer.status != 200:
            return answer
        data = answer.body
        assert isinstance(data, bytes)
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.content_length = len(data)
        await response.prepare(request)
        await paced_write(response, data, DOWNLOAD_BPS)
        return response


class PacedDiscord(FakeDiscord):
    """The fake Discord reading uploads at UPLOAD_BPS and serving its CDN at
    DOWNLOAD_BPS; of each uploaded file it keeps only the first KEPT_PREFIX bytes."""

    uploaded_bytes = 0

    async def _read_body(self, request: web.Request) -> Upload:
        if request.method in ("GET", "DELETE") or not request.content_type.startswith("multipart/"):
            return await super()._read_body(request)
        upload = Upload(payload={})
        reader = await request.multipart()
        started, received = time.monotonic(), 0
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue
            kept = bytearray()
            while chunk := await part.read_chunk(CHUNK):
                received += len(chunk)
                if len(kept) < KEPT_PREFIX or part.filename is None:
                    kept += chunk
                ahead = started + received / UPLOAD_BPS - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if part.name == "payload_json":
                upload.payload = json.loads(bytes(kept))
            elif part.filename is not None:
                upload.files.append(
                    RecordedFile(
                        field=part.name or "",
                        filename=part.filename,
                        content_type=part.headers.get("Content-Type"),
                        data=bytes(kept[:KEPT_PREFIX]),
                    )
                )
        self.uploaded_bytes += received
        return upload

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        attachment = self.attachments.get(request.match_info["attachment"])
        if attachment is None or attachment.filename != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        response = web.StreamResponse(headers={"Content-Type": attachment.content_type})
        response.content_length = len(attachment.data)
        await response.prepare(request)
        await paced_write(response, attachment.data, DOWNLOAD_BPS)
        return response

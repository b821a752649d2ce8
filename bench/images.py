"""Image checks: the bot's header-only validation of a 10 MB 5000x5000 PNG against
a full decode of the same file (what a naive check with Pillow's load() costs)."""

from __future__ import annotations

import io
import random
import time
from collections.abc import Callable

from PIL import Image

from bench.common import Figure, Section, md_table, percentile
from bot.core.validation import MAX_BYTES, check_image

SIDE = 5000
REPEATS_FAST = 50
REPEATS_FULL = 5


def make_png(target_bytes: int = MAX_BYTES - 256 * 1024) -> bytes:
    """A 5000x5000 RGB PNG just under 10 MB: noise in horizontal bands (which does
    not compress) on a flat background (which does), so its size can be tuned."""
    rng = random.Random(5000)
    row_bytes = SIDE * 3
    # Noise rows barely compress: about one row's bytes each, plus filter overhead.
    noisy_rows = max(1, int(target_bytes / row_bytes))
    for _ in range(5):
        data = _banded_png(rng, noisy_rows)
        if target_bytes * 0.97 <= len(data) <= MAX_BYTES:
            return data
        noisy_rows = int(noisy_rows * target_bytes / len(data))
    raise RuntimeError(f"could not make a PNG just under {MAX_BYTES} bytes")


def _banded_png(rng: random.Random, noisy_rows: int) -> bytes:
    row_bytes = SIDE * 3
    step = SIDE / noisy_rows
    flat = bytes([200, 170, 120]) * SIDE
    noise_rows = [rng.randbytes(row_bytes) for _ in range(64)]
    raw = bytearray()
    next_noisy = 0.0
    for y in range(SIDE):
        if y >= next_noisy:
            raw += noise_rows[y % len(noise_rows)]
            next_noisy += step
        else:
            raw += flat
    image = Image.frombytes("RGB", (SIDE, SIDE), bytes(raw))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def full_decode(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()  # every pixel decompressed and unfiltered
        return image.size


def header_check(data: bytes) -> tuple[int, int]:
    checked = check_image(data, normalize=True)
    if checked.changed or checked.data is not data:
        raise RuntimeError("the test image should pass unchanged")
    return checked.width, checked.height


def _times(fn: Callable[[bytes], tuple[int, int]], data: bytes, repeats: int) -> list[float]:
    fn(data)  # warm-up (imports, plugin registry)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        size = fn(data)
        samples.append(time.perf_counter() - started)
        if size != (SIDE, SIDE):
            raise RuntimeError(f"wrong size {size}")
    return samples


def run() -> Section:
    data = make_png()
    fast = _times(header_check, data, REPEATS_FAST)
    full = _times(full_decode, data, REPEATS_FULL)
    fast_median = percentile(fast, 50) or 0.0
    full_median = percentile(full, 50) or 0.0
    ratio = full_median / fast_median if fast_median else None
    figures = [
        Figure("header-only check of a 10 MB 5000x5000 PNG (median)", fast_median * 1000, "ms"),
        Figure("full decode of the same PNG (median)", full_median * 1000, "ms"),
        Figure("full decode / header-only check", ratio, "x", digits=0),
    ]
    table = md_table(
        ["check", "runs", "median", "min", "max"],
        [
            ["`check_image` (header only, unchanged)", REPEATS_FAST, *_ms3(fast)],
            ["Pillow `Image.open(...).load()` (full decode)", REPEATS_FULL, *_ms3(full)],
        ],
    )
    body = f"""{table}

Ratio (median full decode / median header check): **{ratio:,.0f}x**.

Method: one {SIDE}x{SIDE} RGB PNG of {len(data):,} bytes (just under the 10 MB limit;
bands of noise on a flat background) held in memory. The bot's path is
`bot.core.validation.check_image(data, normalize=True)`: format sniffing, a walk over
the PNG chunks that reads the header and checks every chunk's CRC (so a damaged
upload is caught without inflating anything), the rules, and no re-encode because the
image is acceptable (the same bytes come back). The comparison is what a check that
decodes the pixels costs: Pillow's `Image.open(...).load()` on the same bytes
(about {SIDE * SIDE * 3 / 1e6:.0f} MB of pixels). Both run in this process, one
after the other, with a warm-up call first. In the bot the check runs in a thread
executor, so neither blocks the event loop; the difference is CPU and memory per
input image."""
    return Section("images", "Image checks: header-only vs full decode", figures, body)


def _ms3(samples: list[float]) -> list[str]:
    return [
        f"{(percentile(samples, 50) or 0) * 1000:,.2f} ms",
        f"{min(samples) * 1000:,.2f} ms",
        f"{max(samples) * 1000:,.2f} ms",
    ]

"""Image checks: the bot's header-only validation of a 10 MB 5000x5000 PNG against
a full decode of the same file (what a naive check with Pillow's load() costs); and
the repair of a 5000x5000 RGBA photo PNG against a plain decode (time, peak memory)."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from bench.common import (
    Figure,
    Section,
    current_rss_mb,
    md_table,
    percentile,
    reset_peak_rss,
    target_at_most,
    vm_hwm_mb,
)
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
    repair_figures, repair_body = repair_section()
    figures += repair_figures
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
input image.

{repair_body}"""
    return Section("images", "Image checks: header-only vs full decode; repair", figures, body)


def _ms3(samples: list[float]) -> list[str]:
    return [
        f"{(percentile(samples, 50) or 0) * 1000:,.2f} ms",
        f"{min(samples) * 1000:,.2f} ms",
        f"{max(samples) * 1000:,.2f} ms",
    ]


# --- repair of a big RGBA photo PNG ----------------------------------------------------

REPAIR_CACHE = Path(tempfile.gettempdir()) / "wanbot-bench-rgba5000-v1.png"
REPAIR_REPEATS = 3
MB = 1024 * 1024


def rgba_photo_png() -> bytes:
    """A 5000x5000 RGBA PNG of about 22 MB: a gradient with soft grain (photo-like:
    its flattened PNG would be far over 10 MB, its JPEG far under) and an alpha that
    fades to clear at the corners. Made once, cached in the temporary directory."""
    if not REPAIR_CACHE.exists():
        base = Image.linear_gradient("L").resize((SIDE, SIDE))
        bands = []
        for i in range(3):
            grain = Image.effect_noise((SIDE // 8, SIDE // 8), 40).resize(
                (SIDE, SIDE), Image.Resampling.BILINEAR
            )
            bands.append(Image.blend(base, grain, 0.15 + 0.05 * i))
        alpha = Image.radial_gradient("L").resize((SIDE, SIDE))
        bands.append(alpha.point(lambda v: 255 if v < 180 else max(0, 255 - (v - 180) * 3)))
        buffer = io.BytesIO()
        Image.merge("RGBA", bands).save(buffer, "PNG", compress_level=6)
        tmp = REPAIR_CACHE.with_suffix(".tmp")
        tmp.write_bytes(buffer.getvalue())
        tmp.replace(REPAIR_CACHE)
    return REPAIR_CACHE.read_bytes()


def _plain_decode(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as image:
        image.load()


def _repair(data: bytes) -> None:
    checked = check_image(data, normalize=True)
    if not checked.changed or len(checked.data) > MAX_BYTES:
        raise RuntimeError("the RGBA photo should be repaired to fit")


def _peak_in_fresh_process(what: str) -> tuple[float, float]:
    """(RSS before, peak RSS) in MB of a new process that loads the PNG and then
    runs `what` (decode or repair) once: the peak is that work's alone."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.images", "--peak", what],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    before, peak = json.loads(out.strip().splitlines()[-1])
    return float(before), float(peak)


def repair_section() -> tuple[list[Figure], str]:
    data = rgba_photo_png()
    with Image.open(io.BytesIO(data)) as probe:
        width, height = probe.size
    checked = check_image(data, normalize=True)
    decode = _seconds(_plain_decode, data, REPAIR_REPEATS)
    repair = _seconds(_repair, data, REPAIR_REPEATS)
    decode_median = percentile(decode, 50) or 0.0
    repair_median = percentile(repair, 50) or 0.0
    time_ratio = repair_median / decode_median if decode_median else None
    rgb_mb = width * height * 3 / MB
    before, peak = _peak_in_fresh_process("repair")
    decode_before, decode_peak = _peak_in_fresh_process("decode")
    memory_ratio = (peak - before) / rgb_mb
    time_target, time_ok = target_at_most(time_ratio, 2.0, "x")
    memory_target, memory_ok = target_at_most(memory_ratio, 2.0, "x")
    figures = [
        Figure(
            "repair of a 5000x5000 RGBA photo PNG: time / plain decode",
            time_ratio,
            "x",
            time_target,
            time_ok,
        ),
        Figure(
            "repair of a 5000x5000 RGBA photo PNG: peak memory / decoded RGB size",
            memory_ratio,
            "x",
            memory_target,
            memory_ok,
        ),
    ]
    table = md_table(
        ["step", "runs", "median", "min", "max", "peak memory above the start"],
        [
            [
                "Pillow `Image.open(...).load()` (plain decode, RGBA)",
                REPAIR_REPEATS,
                *_ms3(decode),
                f"{decode_peak - decode_before:,.0f} MB",
            ],
            [
                "`check_image(data, normalize=True)` (the repair)",
                REPAIR_REPEATS,
                *_ms3(repair),
                f"{peak - before:,.0f} MB",
            ],
        ],
    )
    body = f"""Repair of a big RGBA photo PNG ({width}x{height}, {len(data) / 1e6:.1f} MB; its
decoded RGB pixels are {rgb_mb:,.0f} MB at 3 bytes each):

{table}

Result: {checked.format}, {len(checked.data) / 1e6:.2f} MB; notes: {"; ".join(checked.notes)}.
Time: **{time_ratio:.2f}x** the plain decode (target at most 2x). Peak memory:
**{memory_ratio:.2f}x** the decoded RGB size (target at most 2x).

Method: the PNG (a gradient with soft grain, alpha fading to clear at the corners; made
once and cached in the temporary directory) is in memory; the times are medians of
{REPAIR_REPEATS} runs in this process after the checks above. The repair is the bot's own
`check_image(data, normalize=True)`: the header check, then (transparency to flatten)
the band decoder of `bot/core/validation/pngbands.py`, which inflates the PNG a few MB
at a time and pastes each band onto the white RGB result with its alpha as the mask, so
the RGBA image never exists whole; then one encode, in the format the size prediction
(`_Predictor` in `bot/core/validation/normalize.py`: 8 bands of 16 rows spread over the
image, encoded as a sample) says fits, here JPEG at quality 92: the lossless PNG it
would once have tried first was predicted far over 10 MB and skipped. Peak memory is
measured in a fresh process per step (`python -m bench.images --peak decode|repair`):
the peak RSS (VmHWM, restarted through /proc/self/clear_refs once the PNG is loaded)
minus the RSS at that moment; the plain decode's
peak is the RGBA image Pillow holds (Pillow keeps RGB and RGBA at 4 bytes a pixel)."""
    return figures, body


def _seconds(fn: Callable[[bytes], None], data: bytes, repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn(data)
        samples.append(time.perf_counter() - started)
    return samples


def _peak_main(what: str) -> None:
    data = rgba_photo_png()
    Image.init()  # the plugins: imported before the start is measured
    reset_peak_rss()
    before = current_rss_mb()
    (_repair if what == "repair" else _plain_decode)(data)
    print(json.dumps([before, vm_hwm_mb()]))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--peak":
        _peak_main(sys.argv[2])

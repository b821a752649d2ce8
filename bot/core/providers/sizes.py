"""Aspect ratios to pixel sizes for the providers that take a size (EvoLink, DashScope).

Wan 2.5 accepts any size whose total pixels lie between 768*768 and 1440*1440 with a
width:height between 1:4 and 4:1. We aim near 1280*1280 pixels (the providers'
default), keep both sides multiples of 16 and stay as close to the ratio as possible.
"""

from __future__ import annotations

import math
from functools import cache

MIN_PIXELS = 768 * 768
MAX_PIXELS = 1440 * 1440
TARGET_PIXELS = 1280 * 1280
STEP = 16

# Offered wherever a provider takes a free size; all within 1:4..4:1.
SIZED_ASPECT_RATIOS = ["1:1", "2:3", "3:2", "3:4", "4:3", "9:16", "16:9", "21:9"]


def parse_ratio(aspect_ratio: str) -> float:
    width, _, height = aspect_ratio.partition(":")
    value = int(width) / int(height)
    if not 0.25 <= value <= 4.0:
        raise ValueError(f"aspect ratio {aspect_ratio} is outside 1:4..4:1")
    return value


@cache
def size_for(aspect_ratio: str) -> tuple[int, int]:
    """(width, height) for an aspect ratio like "16:9". Raises ValueError if impossible."""
    ratio = parse_ratio(aspect_ratio)
    best: tuple[float, float, int, int] | None = None
    ideal_height = math.sqrt(TARGET_PIXELS / ratio)
    for height in range(STEP, 4096 + STEP, STEP):
        width = max(STEP, round(height * ratio / STEP) * STEP)
        pixels = width * height
        if not MIN_PIXELS <= pixels <= MAX_PIXELS or not 0.25 <= width / height <= 4.0:
            continue
        # Closest ratio first (rounded so near-equal ratios tie), then closest to target.
        score = (round(abs(width / height - ratio) / ratio, 3), abs(height - ideal_height))
        if best is None or score < best[:2]:
            best = (*score, width, height)
    if best is None:
        raise ValueError(f"no size fits aspect ratio {aspect_ratio}")
    return best[2], best[3]

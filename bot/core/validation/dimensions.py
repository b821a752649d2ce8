"""Side-length and pixel-count rules, shared by the metadata and the bytes stage."""

from __future__ import annotations

from bot.core.validation.limits import MAX_PIXELS, MAX_SIDE, MIN_SIDE
from bot.core.validation.wording import pixels_text

# The longest shape that can be scaled into MIN_SIDE..MAX_SIDE on both sides.
MAX_ASPECT = MAX_SIDE / MIN_SIDE


def sides_ok(width: int, height: int) -> bool:
    return MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE


def fitted_size(width: int, height: int) -> tuple[int, int] | None:
    """The size to scale to so both sides are in bounds (aspect kept), or None if none is."""
    if sides_ok(width, height):
        return width, height
    long_side, short_side = max(width, height), min(width, height)
    if long_side > MAX_SIDE:
        new_long, new_short = MAX_SIDE, round(short_side * MAX_SIDE / long_side)
    else:
        new_long, new_short = round(long_side * MIN_SIDE / short_side), MIN_SIDE
    if new_short < MIN_SIDE or new_long > MAX_SIDE:
        return None
    return (new_long, new_short) if width >= height else (new_short, new_long)


def too_many_pixels(width: int, height: int) -> str | None:
    if width * height <= MAX_PIXELS:
        return None
    return (
        f"is {pixels_text(width, height)} ({width * height / 1e6:.0f} megapixels); "
        f"the limit is {MAX_PIXELS / 1e6:.0f} megapixels"
    )


def dimension_problem(width: int, height: int, *, normalize: bool) -> str | None:
    """Why an image of this size cannot be used, or None (fine, or fixable by scaling)."""
    if bomb := too_many_pixels(width, height):
        return bomb
    if sides_ok(width, height):
        return None
    size = pixels_text(width, height)
    if normalize:
        if fitted_size(width, height) is not None:
            return None
        return (
            f"is {size}; each side must be {MIN_SIDE}-{MAX_SIDE} px and an image this long "
            f"and narrow cannot be scaled to fit (the long side may be at most "
            f"{MAX_ASPECT:.0f} times the short side)"
        )
    if min(width, height) < MIN_SIDE and max(width, height) > MAX_SIDE:
        return f"is {size}; each side must be {MIN_SIDE}-{MAX_SIDE} px"
    if min(width, height) < MIN_SIDE:
        return f"is {size}; each side must be at least {MIN_SIDE} px"
    return f"is {size}; each side must be at most {MAX_SIDE} px"

"""Stage 2b: judge an inspected image against the provider rules.

With normalisation off the provider rules are applied as documented and the image is
sent as it is. With it on, everything that can be repaired becomes a `Plan`; only what
cannot (bombs, hopeless shapes, huge files) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.validation.dimensions import dimension_problem, sides_ok
from bot.core.validation.limits import (
    ACCEPTED_FORMATS,
    ACCEPTED_FORMATS_TEXT,
    HARD_MAX_BYTES,
    MAX_BYTES,
)
from bot.core.validation.probe import ImageInfo, format_name
from bot.core.validation.sniff import InvalidImage
from bot.core.validation.wording import byte_size_problem

# Colour models the providers are not documented to take; converted when normalising.
_NON_RGB_MODES = frozenset({"CMYK", "YCbCr", "LAB", "HSV"})


@dataclass(frozen=True)
class Plan:
    """What normalisation must change. Nothing set: the original bytes are sent."""

    convert_format: bool = False
    first_frame: bool = False
    flatten: bool = False
    to_rgb: bool = False
    to_8bit: bool = False
    resize: bool = False
    shrink_bytes: bool = False

    @property
    def needed(self) -> bool:
        return any(vars(self).values())


def assess(info: ImageInfo, size: int, *, normalize: bool) -> Plan:
    """The changes the image needs; raises `InvalidImage` with every reason it can't be used."""
    reasons: list[str] = []
    if reason := dimension_problem(info.width, info.height, normalize=normalize):
        reasons.append(reason)
    limit = HARD_MAX_BYTES if normalize else MAX_BYTES
    if size > limit:
        reasons.append(byte_size_problem(size, limit))
    plan = Plan(
        convert_format=info.format not in ACCEPTED_FORMATS,
        first_frame=info.animated,
        flatten=info.has_alpha,
        to_rgb=info.mode in _NON_RGB_MODES,
        to_8bit=info.bit_depth > 8,
        resize=not sides_ok(info.width, info.height),
        shrink_bytes=size > MAX_BYTES,
    )
    if not normalize:
        # CMYK and 16-bit are within the documented rules: only normalisation changes them.
        if plan.convert_format:
            reasons.append(
                f"is a {format_name(info.format)} image; send a {ACCEPTED_FORMATS_TEXT} image"
            )
        if plan.first_frame:
            reasons.append(f"is animated ({info.frames} frames); send a still image")
        if plan.flatten:
            reasons.append(
                "has transparency, which the image providers do not accept; "
                "send it without (for example as a JPEG)"
            )
    if reasons:
        raise InvalidImage(*reasons)
    return plan if normalize else Plan()

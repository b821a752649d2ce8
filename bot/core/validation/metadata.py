"""Stage 1: what an attachment's metadata alone proves can never work.

Runs before the interaction is deferred or anything is downloaded, so a hopeless image
costs nothing. Only facts that hold whatever the bytes turn out to be are used: the
format is decided later from the bytes, never from the name or content type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.core.errors import ValidationFailed
from bot.core.models import Capabilities
from bot.core.validation.dimensions import dimension_problem
from bot.core.validation.limits import HARD_MAX_BYTES, MAX_BYTES
from bot.core.validation.wording import byte_size_problem, image_label

# Types that some clients send for any file; they say nothing either way.
_NEUTRAL_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})


@dataclass(frozen=True)
class ImageMeta:
    """What a platform tells about an attachment before download. Unknowns are None."""

    index: int  # 1-based number, as the user sees the attachments
    filename: str | None = None
    size: int | None = None  # bytes
    content_type: str | None = None
    width: int | None = None
    height: int | None = None

    @property
    def label(self) -> str:
        return image_label(self.index, self.filename)


def byte_limit(normalize: bool) -> int:
    """The most bytes worth downloading for one image."""
    return HARD_MAX_BYTES if normalize else MAX_BYTES


def too_many_images(count: int, caps: Capabilities) -> str | None:
    if count <= caps.max_input_images:
        return None
    return f"{count} images given; {caps.name} accepts at most {caps.max_input_images}"


def content_type_problem(content_type: str | None) -> str | None:
    base = (content_type or "").split(";")[0].strip().lower()
    if base in _NEUTRAL_TYPES:
        return None
    if base == "image/svg+xml":
        return "is an SVG drawing, not a picture; send a PNG or JPEG export of it"
    if base in ("image/heic", "image/heif"):
        return "is a HEIC photo, which the bot cannot read; send it as JPEG or PNG"
    if not base.startswith("image/"):
        return f"is not an image ({base})"
    return None


def meta_problems(meta: ImageMeta, *, normalize: bool) -> list[str]:
    reasons: list[str] = []
    if meta.size is not None:
        if meta.size == 0:
            reasons.append("is empty (0 bytes)")
        elif meta.size > byte_limit(normalize):
            reasons.append(byte_size_problem(meta.size, byte_limit(normalize)))
    if reason := content_type_problem(meta.content_type):
        reasons.append(reason)
    if meta.width is not None and meta.height is not None:
        reasons.extend(_dimension_reasons(meta.width, meta.height, normalize=normalize))
    return [f"{meta.label} {reason}" for reason in reasons]


def _dimension_reasons(width: int, height: int, *, normalize: bool) -> list[str]:
    reason = dimension_problem(width, height, normalize=normalize)
    return [reason] if reason else []


def check_metadata(metas: Sequence[ImageMeta], caps: Capabilities, normalize: bool) -> None:
    """Raise `ValidationFailed` listing every problem the metadata already shows."""
    problems: list[str] = []
    if count_problem := too_many_images(len(metas), caps):
        problems.append(count_problem)
    for meta in metas:
        problems.extend(meta_problems(meta, normalize=normalize))
    if problems:
        raise ValidationFailed(problems)

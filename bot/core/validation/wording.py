"""Wording shared by every check, so a limit reads the same wherever it is hit."""

from __future__ import annotations

from bot.core.validation.limits import MIB

_FILENAME_MAX = 60


def image_label(index: int, filename: str | None = None) -> str:
    """'image 2 (cat.png)': numbered from 1, as the user attached them."""
    if not filename:
        return f"image {index}"
    # A user-chosen name goes into a chat message: keep it short and on one line.
    clean = " ".join(filename.replace("`", "'").split())
    if len(clean) > _FILENAME_MAX:
        clean = clean[: _FILENAME_MAX - 1] + "…"
    return f"image {index} ({clean})"


def megabytes(size: int) -> str:
    text = f"{size / MIB:.1f}"
    return f"{text.removesuffix('.0')} MB"


def file_size(size: int) -> str:
    """A size for notes: '312 KB', '4.2 MB'."""
    if size < MIB:
        return f"{max(1, round(size / 1024))} KB"
    return megabytes(size)


def byte_size_problem(size: int, limit: int) -> str:
    """'is 12.3 MB; the limit is 10 MB', exact bytes when the two would round alike."""
    if abs(size - limit) < MIB // 10:
        return f"is {size:,} bytes; the limit is {limit:,} bytes ({megabytes(limit)})"
    return f"is {megabytes(size)}; the limit is {megabytes(limit)}"


def pixels_text(width: int, height: int) -> str:
    return f"{width}x{height} px"

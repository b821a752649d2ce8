"""Stage 2a: what the downloaded bytes really are, from headers only (no pixel decode)."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from bot.core.validation.dimensions import too_many_pixels
from bot.core.validation.limits import ACCEPTED_FORMATS_TEXT, CONTENT_TYPES
from bot.core.validation.sniff import (
    InvalidImage,
    describe_non_image,
    detect_format,
    read_header,
)

# What Pillow may try for each detected format. Anything not recognised here is only
# offered to plugins without side effects (never EPS: it would run Ghostscript).
_PILLOW_FORMATS = {
    "JPEG": ("JPEG", "MPO"),  # camera JPEGs with a multi-picture index open as MPO
    "PNG": ("PNG",),
    "GIF": ("GIF",),
    "BMP": ("BMP",),
    "WEBP": ("WEBP",),
    "TIFF": ("TIFF",),
    "AVIF": ("AVIF",),
}
_OTHER_PILLOW_FORMATS = ("ICO", "PPM", "QOI", "PSD", "PCX", "SGI")

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_DISPLAY_NAMES = {"WEBP": "WebP"}

# Pillow reports these for broken or unreadable files.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)


def format_name(fmt: str) -> str:
    return _DISPLAY_NAMES.get(fmt, fmt)


def pillow_formats(fmt: str) -> tuple[str, ...]:
    return _PILLOW_FORMATS.get(fmt, (fmt,))


@dataclass(frozen=True)
class ImageInfo:
    """An image as read from its header."""

    format: str  # from the bytes: JPEG, PNG, BMP, WEBP, GIF, TIFF, or a Pillow format name
    width: int
    height: int
    has_alpha: bool  # any transparency: alpha channel, tRNS, used 4th byte of a 32-bit BMP
    frames: int  # > 1 when animated
    mode: str  # Pillow mode: RGB, RGBA, P, L, LA, CMYK, I;16, ...
    bit_depth: int = 8  # bits per channel sample

    @property
    def animated(self) -> bool:
        return self.frames > 1

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES.get(self.format, "application/octet-stream")


def inspect_image(data: bytes) -> ImageInfo:
    """Read format, size, alpha and frames without decoding pixels.

    Raises `InvalidImage` for empty, non-image, corrupt or truncated data and for
    decompression bombs (judged from the header, before Pillow touches the pixels).
    """
    if not data:
        raise InvalidImage("is empty (0 bytes)")
    fmt = detect_format(data)
    if fmt is None and (what := describe_non_image(data)):
        raise InvalidImage(f"is not an image (it is {what})")
    if fmt == "HEIC":
        raise InvalidImage(
            f"is a HEIC photo, which the bot cannot read; send a {ACCEPTED_FORMATS_TEXT} image"
        )
    header = read_header(fmt, data) if fmt else None
    if header and (bomb := too_many_pixels(header.width, header.height)):
        raise InvalidImage(bomb)
    formats = pillow_formats(fmt) if fmt else _OTHER_PILLOW_FORMATS
    try:
        # Lazy: Image.open parses the header; pixels are only decoded by load().
        with Image.open(io.BytesIO(data), formats=formats) as img:
            width, height = (header.width, header.height) if header else img.size
            if bomb := too_many_pixels(width, height):
                raise InvalidImage(bomb)
            frames = int(getattr(img, "n_frames", 1))
            mode = img.mode
            has_alpha = mode in _ALPHA_MODES or "transparency" in img.info
            detected = fmt or str(img.format)
    except Image.DecompressionBombError as exc:
        raise InvalidImage("has far too many pixels to be processed safely") from exc
    except UnidentifiedImageError as exc:
        if fmt:
            raise InvalidImage(f"could not be read as a {format_name(fmt)} image") from exc
        raise InvalidImage(
            f"is not an image format the bot can read; send a {ACCEPTED_FORMATS_TEXT} image"
        ) from exc
    except DECODE_ERRORS as exc:
        raise InvalidImage("is damaged or incomplete (its header could not be read)") from exc
    if header:
        bit_depth = header.bit_depth
        has_alpha = has_alpha or header.bmp_alpha
    else:
        bit_depth = 16 if mode.startswith("I;16") else 32 if mode in ("I", "F") else 8
    return ImageInfo(detected, width, height, has_alpha, frames, mode, bit_depth)

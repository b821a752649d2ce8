"""Repair an image so the providers accept it. CPU-heavy: run it in a thread executor."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field

from PIL import Image, ImageOps

from bot.core.validation.dimensions import fitted_size
from bot.core.validation.limits import CONTENT_TYPES, EXTENSIONS, MAX_BYTES, MIN_SIDE
from bot.core.validation.probe import (
    DECODE_ERRORS,
    ImageInfo,
    format_name,
    pillow_formats,
)
from bot.core.validation.rules import Plan
from bot.core.validation.sniff import InvalidImage
from bot.core.validation.wording import file_size, megabytes, pixels_text

_WHITE = (255, 255, 255, 255)
_FIRST_QUALITY = 92
_FALLBACK_QUALITIES = (85, 75, 65)
_SHRINK_QUALITY = 75
_SHRINK_STEP = 0.8
# Bicubic: close to Lanczos for photos at about two thirds of its cost on 50 Mpx.
_RESAMPLE = Image.Resampling.BICUBIC
# Lossy sources stay lossy; lossless ones (PNG, BMP, GIF, TIFF...) are kept as PNG if it fits.
_LOSSY_SOURCES = frozenset({"JPEG", "WEBP"})


@dataclass(frozen=True)
class CheckedImage:
    """An image ready for a provider: the original bytes, or the repaired ones."""

    data: bytes
    format: str  # JPEG, PNG, BMP or WEBP
    width: int
    height: int
    changed: bool = False
    notes: list[str] = field(default_factory=list)  # what was changed, for the user

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


def normalize_image(data: bytes, info: ImageInfo, plan: Plan) -> CheckedImage:
    """Apply `plan` and re-encode to fit the limits. Raises `InvalidImage` if undecodable."""
    try:
        return _normalize(data, info, plan)
    except InvalidImage:
        raise
    except MemoryError as exc:
        raise InvalidImage("is too large to be processed") from exc
    except DECODE_ERRORS as exc:
        raise InvalidImage("is damaged or incomplete (it could not be decoded)") from exc


def _normalize(data: bytes, info: ImageInfo, plan: Plan) -> CheckedImage:
    notes: list[str] = []
    # Everything happens inside the block: the decoded source is used in place, never
    # copied (a 50 Mpx image is 150 MB), and freed when the block ends.
    with Image.open(io.BytesIO(data), formats=pillow_formats(info.format)) as source:
        if plan.first_frame:
            source.seek(0)
            notes.append(f"first frame of {info.frames} used")
        target = fitted_size(info.width, info.height)
        if info.format == "JPEG" and target and target[0] < info.width:
            # Decode at 1/2, 1/4 or 1/8 scale when that is still >= target: far less memory.
            source.draft(source.mode, target)
        source.load()
        icc = None if plan.to_rgb else source.info.get("icc_profile")
        image = _bmp_with_alpha(data) if _bmp_alpha_hidden(info, source) else source
        # Phone photos store orientation in EXIF; the re-encoded file has none, so bake it in.
        ImageOps.exif_transpose(image, in_place=True)
        shown = _upright_size(info, image)
        image = _to_provider_colours(image, info, plan, notes)

        target = fitted_size(*shown)
        if target is None:  # rules refuse these first; kept as a guard
            raise InvalidImage(f"is {pixels_text(*shown)} and cannot be scaled to fit")
        if image.size != target:
            image = image.resize(target, _RESAMPLE, reducing_gap=3.0)
        if target != shown:
            notes.append(f"scaled {_dims(shown)} -> {_dims(target)}")
        encoded, out_format, quality, squeezed, image = _encode_to_fit(image, info.format, icc)

    to_fit = f" to fit {megabytes(MAX_BYTES)}" if plan.shrink_bytes or squeezed else ""
    quality_text = f" (quality {quality})" if quality is not None and to_fit else ""
    if out_format != info.format:
        source_name = format_name(info.format)
        notes.append(f"converted from {source_name} to {out_format}{quality_text}{to_fit}")
    elif to_fit:
        notes.append(f"re-encoded{quality_text}{to_fit} (now {file_size(len(encoded))})")
    if image.size != target:
        notes.append(f"scaled {_dims(target)} -> {_dims(image.size)} to fit {megabytes(MAX_BYTES)}")
    return CheckedImage(encoded, out_format, image.width, image.height, True, notes)


def _to_provider_colours(
    image: Image.Image, info: ImageInfo, plan: Plan, notes: list[str]
) -> Image.Image:
    """8-bit RGB (or L) without transparency."""
    if plan.to_8bit:
        image = _to_8bit(image)
        notes.append(f"{info.bit_depth}-bit colour reduced to 8-bit")
    if plan.flatten:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
        notes.append("transparency flattened onto white")
    if plan.to_rgb:
        notes.append(f"{info.mode} colours converted to RGB")
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    return image


def _dims(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _upright_size(info: ImageInfo, image: Image.Image) -> tuple[int, int]:
    """The original size as the user sees it (EXIF rotation may have swapped the sides)."""
    stored_landscape = info.width >= info.height
    if image.width == image.height or (image.width > image.height) == stored_landscape:
        return info.width, info.height
    return info.height, info.width


def _bmp_alpha_hidden(info: ImageInfo, source: Image.Image) -> bool:
    # A 32-bit BI_RGB BMP using its 4th byte as alpha: Pillow reads it as plain RGB.
    return info.format == "BMP" and info.has_alpha and source.mode == "RGB"


def _bmp_with_alpha(data: bytes) -> Image.Image:
    (offset,) = struct.unpack_from("<I", data, 10)
    width, height = struct.unpack_from("<ii", data, 18)
    rows = abs(height)
    pixels = data[offset : offset + width * rows * 4]
    # Rows are stored bottom-up unless the height is negative.
    orientation = 1 if height < 0 else -1
    return Image.frombuffer("RGBA", (width, rows), pixels, "raw", "BGRA", 0, orientation)


def _to_8bit(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I;16") or image.mode == "I":
        # Scale 0..65535 down to 0..255; a plain convert would clip everything bright.
        return image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    if image.mode == "F":
        return image.convert("L")
    return image  # 16-bit RGB(A) PNGs are already decoded to 8 bits per channel


def _save(image: Image.Image, fmt: str, quality: int | None, icc: bytes | None) -> bytes:
    buffer = io.BytesIO()
    options: dict[str, object] = {"icc_profile": icc} if icc else {}
    if fmt == "JPEG":
        image.save(buffer, "JPEG", quality=quality, **options)
    else:
        image.save(buffer, "PNG", compress_level=6, **options)
    return buffer.getvalue()


def _encode_to_fit(
    image: Image.Image, source_format: str, icc: bytes | None
) -> tuple[bytes, str, int | None, bool, Image.Image]:
    """(bytes, format, JPEG quality or None for PNG, whether the first choice was too big,
    the image as encoded)."""
    lossless = source_format not in _LOSSY_SOURCES
    if lossless:
        encoded = _save(image, "PNG", None, icc)
        if len(encoded) <= MAX_BYTES:
            return encoded, "PNG", None, False, image
    for quality in (_FIRST_QUALITY, *_FALLBACK_QUALITIES):
        encoded = _save(image, "JPEG", quality, icc)
        if len(encoded) <= MAX_BYTES:
            squeezed = lossless or quality != _FIRST_QUALITY
            return encoded, "JPEG", quality, squeezed, image
    while True:
        size = (round(image.width * _SHRINK_STEP), round(image.height * _SHRINK_STEP))
        if min(size) < MIN_SIDE:
            raise InvalidImage(f"could not be made smaller than {megabytes(MAX_BYTES)}")
        image = image.resize(size, _RESAMPLE, reducing_gap=3.0)
        encoded = _save(image, "JPEG", _SHRINK_QUALITY, icc)
        if len(encoded) <= MAX_BYTES:
            return encoded, "JPEG", _SHRINK_QUALITY, True, image

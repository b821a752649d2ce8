"""Repair an image so the providers accept it. CPU-heavy: run it in a thread executor."""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass, field

from PIL import Image, ImageOps

from bot.core.validation.dimensions import fitted_size
from bot.core.validation.limits import CONTENT_TYPES, EXTENSIONS, MAX_BYTES, MIN_SIDE
from bot.core.validation.pngbands import flatten_rgba_png
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
_SHRINK_MARGIN = 0.85  # aim this far under MAX_BYTES when shrinking to a predicted size
# Size prediction: _SAMPLE_BANDS bands of _SAMPLE_ROWS rows (16: whole JPEG blocks).
_SAMPLE_BANDS = 8
_SAMPLE_ROWS = 16
# Predicted this far over the limit: skip the encode. Predictions land within a few %
# of the real size on photos and noise (see tests/test_validation_repair.py).
_SURE_OVER = 1.1
_PNG_WORST = 1.01  # PNG of incompressible pixels: raw size plus filter bytes and framing
# Below this an RGBA PNG is decoded whole: the band decoder pays off on big images.
_BAND_MIN_PIXELS = 4_000_000
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
    if _bandable(info, plan) and (banded := flatten_rgba_png(data)) is not None:
        # A large RGBA PNG: flattened band by band, never whole in RGBA next to RGB.
        image, icc = banded
        notes.append("transparency flattened onto white")
        return _fit_and_encode(image, (info.width, info.height), info, plan, icc, notes)
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
        return _fit_and_encode(image, shown, info, plan, icc, notes)


def _bandable(info: ImageInfo, plan: Plan) -> bool:
    return (
        plan.flatten
        and info.format == "PNG"
        and info.mode == "RGBA"
        and info.bit_depth == 8
        and not plan.first_frame
        and info.width * info.height >= _BAND_MIN_PIXELS
    )


def _fit_and_encode(
    image: Image.Image,
    shown: tuple[int, int],
    info: ImageInfo,
    plan: Plan,
    icc: bytes | None,
    notes: list[str],
) -> CheckedImage:
    """Scale `image` (RGB or L, upright) into bounds and encode it to fit MAX_BYTES."""
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
        if image.mode != "RGBA":
            image = image.convert("RGBA")  # LA, PA, P with tRNS...: a mode change anyway
        # Pasted onto white with its own alpha as the mask: the only new image is the
        # RGB result (no RGBA copy, no white RGBA layer, no composite to convert).
        flat = Image.new("RGB", image.size, _WHITE[:3])
        flat.paste(image, (0, 0), image)
        image = flat
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
    """Encode the whole image (the expensive step: predicted before it is done)."""
    return _encode(image, fmt, quality, icc)


def _encode(image: Image.Image, fmt: str, quality: int | None, icc: bytes | None) -> bytes:
    buffer = io.BytesIO()
    options: dict[str, object] = {"icc_profile": icc} if icc else {}
    if fmt == "JPEG":
        image.save(buffer, "JPEG", quality=quality, **options)
    else:
        image.save(buffer, "PNG", compress_level=6, **options)
    return buffer.getvalue()


class _Predictor:
    """Sizes of whole-image encodes, predicted from a sample: bands of rows spread
    evenly over the image, stacked into one small image (a few % of the pixels), so
    an encode that is bound to miss MAX_BYTES is never done. The seams between the
    bands make the sample a little harder to compress: the guess errs high."""

    def __init__(self, image: Image.Image) -> None:
        self._image = image
        self._sample: Image.Image | None = None
        rows = _SAMPLE_BANDS * _SAMPLE_ROWS
        if image.height >= 4 * rows:
            sample = Image.new(image.mode, (image.width, rows))
            step = (image.height - _SAMPLE_ROWS) / (_SAMPLE_BANDS - 1)
            for band in range(_SAMPLE_BANDS):
                top = round(band * step)
                strip = image.crop((0, top, image.width, top + _SAMPLE_ROWS))
                sample.paste(strip, (0, band * _SAMPLE_ROWS))
            self._sample = sample

    def bound_to_exceed(self, fmt: str, quality: int | None, limit: int = MAX_BYTES) -> bool:
        """Whether this encode would surely be over `limit` (False when unsure)."""
        return self.predicted(fmt, quality) > limit * _SURE_OVER

    def predicted(self, fmt: str, quality: int | None) -> float:
        image = self._image
        if fmt == "PNG" and _raw_bytes(image) * _PNG_WORST <= MAX_BYTES:
            return 0.0  # even incompressible, it fits: no need to guess
        if self._sample is None:
            return 0.0  # small image: encoding it is cheap, just try
        sampled = len(_encode(self._sample, fmt, quality, None))
        return sampled * image.height / self._sample.height


def _raw_bytes(image: Image.Image) -> int:
    return image.width * image.height * len(image.getbands())


def _encode_to_fit(
    image: Image.Image, source_format: str, icc: bytes | None
) -> tuple[bytes, str, int | None, bool, Image.Image]:
    """(bytes, format, JPEG quality or None for PNG, whether the first choice was too big,
    the image as encoded). Encodes predicted to be over MAX_BYTES are skipped."""
    lossless = source_format not in _LOSSY_SOURCES
    predictor = _Predictor(image)
    if lossless and not predictor.bound_to_exceed("PNG", None):
        encoded = _save(image, "PNG", None, icc)
        if len(encoded) <= MAX_BYTES:
            return encoded, "PNG", None, False, image
    for quality in (_FIRST_QUALITY, *_FALLBACK_QUALITIES):
        if predictor.bound_to_exceed("JPEG", quality):
            continue
        encoded = _save(image, "JPEG", quality, icc)
        if len(encoded) <= MAX_BYTES:
            squeezed = lossless or quality != _FIRST_QUALITY
            return encoded, "JPEG", quality, squeezed, image
    while True:
        # JPEG bytes grow with the pixel count: go straight to the size predicted to
        # fit (with a margin), then by steps if it still does not.
        predicted = predictor.predicted("JPEG", _SHRINK_QUALITY)
        step = _SHRINK_STEP
        if predicted > MAX_BYTES:
            step = min(step, math.sqrt(MAX_BYTES * _SHRINK_MARGIN / predicted))
        size = (round(image.width * step), round(image.height * step))
        if min(size) < MIN_SIDE:
            raise InvalidImage(f"could not be made smaller than {megabytes(MAX_BYTES)}")
        image = image.resize(size, _RESAMPLE, reducing_gap=3.0)
        predictor = _Predictor(image)
        encoded = _save(image, "JPEG", _SHRINK_QUALITY, icc)
        if len(encoded) <= MAX_BYTES:
            return encoded, "JPEG", _SHRINK_QUALITY, True, image

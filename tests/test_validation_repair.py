"""Input repair of big images: one encode, predicted to fit; RGBA PNGs flattened in
bands (the same pixels as flattening the whole image)."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator

import pytest
from PIL import Image, PngImagePlugin

from bot.core.validation import MAX_BYTES, check_image
from bot.core.validation import normalize as normalize_module
from bot.core.validation.pngbands import flatten_rgba_png


def _noisy_rgba(width: int, height: int, grain: int = 60) -> Image.Image:
    """A photo-like RGBA image: a gradient with grain that does not compress, and an
    alpha channel from opaque to clear."""
    base = Image.linear_gradient("L").resize((width, height))
    bands = [Image.blend(base, Image.effect_noise((width, height), grain), s) for s in (0.3, 0.5)]
    bands.append(Image.effect_noise((width, height), grain))
    alpha = Image.radial_gradient("L").resize((width, height)).point(lambda v: 255 - v)
    return Image.merge("RGBA", [*bands, alpha])


def _png(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1, **options)
    return buffer.getvalue()


def _interlaced(png: bytes) -> bytes:
    """`png` with its header marked Adam7-interlaced (Pillow does not write those)."""
    header = bytearray(png[12:29])  # "IHDR" and its 13 bytes
    header[-1] = 1
    crc = struct.pack(">I", zlib.crc32(header))
    return png[:12] + bytes(header) + crc + png[33:]


@pytest.fixture
def encodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    """Every whole-image encode the normaliser does: (format, bytes)."""
    seen: list[tuple[str, int]] = []
    real = normalize_module._save

    def spy(image: Image.Image, fmt: str, quality: int | None, icc: bytes | None) -> bytes:
        data = real(image, fmt, quality, icc)
        seen.append((fmt, len(data)))
        return data

    monkeypatch.setattr(normalize_module, "_save", spy)
    yield seen


@pytest.fixture(scope="module")
def big_rgba_png() -> bytes:
    data = _png(_noisy_rgba(2600, 2000))
    assert len(data) > MAX_BYTES  # its flattened PNG would be far over the limit too
    return data


def test_a_large_noisy_rgba_png_is_encoded_exactly_once(
    big_rgba_png: bytes, encodes: list[tuple[str, int]]
) -> None:
    checked = check_image(big_rgba_png, normalize=True)
    assert checked.changed and checked.format == "JPEG"
    assert [fmt for fmt, _ in encodes] == ["JPEG"]  # no PNG encode thrown away
    assert encodes[0][1] == len(checked.data) <= MAX_BYTES
    assert "transparency flattened onto white" in checked.notes
    # The strict rules take the repaired image as it is.
    strict = check_image(checked.data, normalize=False)
    assert not strict.changed and (strict.width, strict.height) == (2600, 2000)


def test_a_small_png_that_fits_is_still_kept_lossless(encodes: list[tuple[str, int]]) -> None:
    data = _png(_noisy_rgba(900, 700))
    checked = check_image(data, normalize=True)
    assert checked.format == "PNG"
    assert encodes == [("PNG", len(checked.data))]
    assert not check_image(checked.data, normalize=False).changed


def test_bands_give_the_same_pixels_as_flattening_the_whole_image() -> None:
    image = _noisy_rgba(1100, 950, grain=30)  # several bands, filtered rows across seams
    info = PngImagePlugin.PngInfo()
    data = _png(image, pnginfo=info, icc_profile=b"fake icc profile")
    banded = flatten_rgba_png(data)
    assert banded is not None
    flat, icc = banded
    expected = Image.new("RGB", image.size, (255, 255, 255))
    expected.paste(image, (0, 0), image)
    assert flat.mode == "RGB" and flat.tobytes() == expected.tobytes()
    assert icc == b"fake icc profile"


def test_pngs_the_bands_do_not_handle_are_left_to_the_whole_decode() -> None:
    image = _noisy_rgba(600, 500, grain=10)
    assert flatten_rgba_png(_png(image.convert("RGB"))) is None  # no alpha
    assert flatten_rgba_png(_interlaced(_png(image))) is None  # Adam7 needs every pass
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: orientation must be baked in by the whole decode
    assert flatten_rgba_png(_png(image, exif=exif.tobytes())) is None


def test_a_cut_off_png_is_reported_damaged() -> None:
    data = _png(_noisy_rgba(800, 600, grain=10))
    idat_end = data.rindex(b"IEND") - 4
    cut = data[: idat_end // 2]
    with pytest.raises(ValueError):
        flatten_rgba_png(cut)

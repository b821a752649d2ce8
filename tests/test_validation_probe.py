"""Stage 2: what the bytes really are, read from headers without decoding pixels."""

from __future__ import annotations

import io
import random
import re
from collections.abc import Iterator

import pytest
from PIL import Image, ImageFile

from bot.core.validation import InvalidImage, check_image, inspect_image
from tests.image_corpus import CASES, case, encode, solid


@pytest.fixture
def no_decode(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Make any pixel decode fail loudly; yields the list of attempted decodes."""
    for built in CASES:  # the corpus is made (and cached) before the trap is set
        built.data()
    attempts: list[str] = []

    def refuse(self: Image.Image, *args: object, **kwargs: object) -> None:
        attempts.append(type(self).__name__)
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    monkeypatch.setattr(Image.Image, "load", refuse)
    yield attempts
    assert attempts == []


@pytest.mark.parametrize(
    ("name", "fmt", "size", "alpha", "frames", "mode", "depth"),
    [
        ("jpeg", "JPEG", (512, 512), False, 1, "RGB", 8),
        ("png", "PNG", (512, 512), False, 1, "RGB", 8),
        ("bmp24", "BMP", (512, 400), False, 1, "RGB", 8),
        ("webp_lossy", "WEBP", (512, 512), False, 1, "RGB", 8),
        ("webp_lossless", "WEBP", (512, 512), False, 1, "RGB", 8),
        ("gif", "GIF", (400, 400), False, 1, "P", 8),
        ("tiff", "TIFF", (400, 400), False, 1, "RGB", 8),
        ("ppm", "PPM", (400, 400), False, 1, "RGB", 8),
        ("png_rgba", "PNG", (400, 400), True, 1, "RGBA", 8),
        ("png_la", "PNG", (400, 400), True, 1, "LA", 8),
        ("png_palette_trns", "PNG", (400, 400), True, 1, "P", 1),  # 1-bit indices
        ("png_rgb_trns", "PNG", (400, 400), True, 1, "RGB", 8),
        ("webp_alpha", "WEBP", (400, 400), True, 1, "RGBA", 8),
        ("bmp32_alpha", "BMP", (400, 400), True, 1, "RGB", 8),
        ("bmp32_v4_alpha", "BMP", (400, 400), True, 1, "RGBA", 8),
        ("bmp32_no_alpha", "BMP", (400, 400), False, 1, "RGB", 8),
        ("gif_transparent", "GIF", (400, 400), True, 1, "P", 8),
        ("jpeg_cmyk", "JPEG", (400, 400), False, 1, "CMYK", 8),
        ("png_16bit_gray", "PNG", (400, 400), False, 1, "I;16", 16),
        ("png_16bit_rgb", "PNG", (400, 400), False, 1, "RGB", 16),
        ("gif_animated", "GIF", (400, 400), False, 3, "P", 8),
        ("webp_animated", "WEBP", (400, 400), False, 3, "RGB", 8),
        ("png_animated", "PNG", (400, 400), False, 3, "RGB", 8),
        ("png_5000x5000_10mb", "PNG", (5000, 5000), False, 1, "RGB", 8),
    ],
)
def test_inspect_reads_the_header(
    name: str,
    fmt: str,
    size: tuple[int, int],
    alpha: bool,
    frames: int,
    mode: str,
    depth: int,
    no_decode: list[str],
) -> None:
    info = inspect_image(case(name).data())
    assert (info.format, (info.width, info.height)) == (fmt, size)
    assert (info.has_alpha, info.frames, info.mode, info.bit_depth) == (alpha, frames, mode, depth)


def test_format_comes_from_the_bytes_not_the_name() -> None:
    # the corpus names these .png/.jpg; the bytes say otherwise
    assert inspect_image(case("jpeg").data()).format == "JPEG"
    for name, what in (("html_as_png", "an HTML page"), ("svg_as_png", "an SVG drawing")):
        with pytest.raises(InvalidImage) as caught:
            inspect_image(case(name).data())
        assert caught.value.reasons == [f"is not an image (it is {what})"]


def test_heic_is_named_for_what_it_is() -> None:
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
    with pytest.raises(InvalidImage, match="is a HEIC photo"):
        inspect_image(heic)


def test_truncation_found_without_decoding(no_decode: list[str]) -> None:
    for name in ("png_truncated", "jpeg_truncated", "webp_truncated", "bmp_truncated"):
        with pytest.raises(InvalidImage, match="damaged or incomplete"):
            inspect_image(case(name).data())


def test_every_possible_png_cut_is_caught() -> None:
    """A PNG cut at any byte is refused (the chunk walk needs IEND)."""
    data = solid((400, 400))
    for cut in range(1, len(data)):
        with pytest.raises(InvalidImage):
            inspect_image(data[:cut])


def test_jpeg_cut_anywhere_after_the_header_is_caught() -> None:
    data = encode(Image.effect_noise((400, 400), 40).convert("RGB"), "JPEG")
    for cut in range(2, len(data) - 1, 97):
        with pytest.raises(InvalidImage):
            inspect_image(data[:cut])
    inspect_image(data + b"trailing data after EOI is tolerated")


def test_bomb_refused_from_the_header_before_pillow_opens_it(
    monkeypatch: pytest.MonkeyPatch, no_decode: list[str]
) -> None:
    opened: list[object] = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    with pytest.raises(InvalidImage) as caught:
        inspect_image(case("png_bomb_60000").data())
    assert caught.value.reasons == [
        "is 60000x60000 px (3600 megapixels); the limit is 50 megapixels"
    ]
    assert opened == []  # our own limit, not Pillow's global MAX_IMAGE_PIXELS


def test_bomb_limit_does_not_depend_on_pillows_global(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # someone disabled Pillow's guard
    with pytest.raises(InvalidImage, match="the limit is 50 megapixels"):
        inspect_image(case("png_bomb_60000").data())


def test_ten_mb_5000px_png_is_checked_without_decoding(no_decode: list[str]) -> None:
    """The structural proof: with every decode path booby-trapped, a 10 MB 5000x5000
    PNG that needs no change is inspected and passed through untouched."""
    data = case("png_5000x5000_10mb").data()
    assert len(data) == 10 * 1024 * 1024
    for normalize in (True, False):
        checked = check_image(data, normalize=normalize)
        assert checked.data is data and not checked.changed
        assert (checked.width, checked.height) == (5000, 5000)


def test_decode_spy_does_catch_a_decode(no_decode: list[str]) -> None:
    """The spy works: a conversion (which must decode) trips it."""
    with pytest.raises(AssertionError, match="pixels were decoded"):
        check_image(case("png_rgba").data(), normalize=True)
    assert no_decode == ["PngImageFile"]
    no_decode.clear()


def test_normalised_output_is_really_flattened_onto_white() -> None:
    rgba = Image.new("RGBA", (400, 400), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (0, 0, 200, 400))
    checked = check_image(encode(rgba, "PNG"), normalize=True)
    with Image.open(io.BytesIO(checked.data)) as out:
        assert out.mode == "RGB"
        assert out.getpixel((10, 10)) == (255, 0, 0)
        assert out.getpixel((300, 10)) == (255, 255, 255)


def test_bmp_alpha_in_the_fourth_byte_is_flattened() -> None:
    checked = check_image(case("bmp32_alpha").data(), normalize=True)
    with Image.open(io.BytesIO(checked.data)) as out:
        # COLOR (200, 120, 40) at alpha 128 over white
        assert out.getpixel((0, 0)) == pytest.approx((227, 187, 147), abs=2)


def test_sixteen_bit_gray_is_scaled_not_clipped() -> None:
    checked = check_image(case("png_16bit_gray").data(), normalize=True)
    with Image.open(io.BytesIO(checked.data)) as out:
        assert out.mode == "L"
        assert out.getpixel((0, 0)) == 40000 // 256


def test_exif_rotation_is_baked_in_when_re_encoding() -> None:
    checked = check_image(case("exif_rotated_small").data(), normalize=True)
    assert (checked.width, checked.height) == (384, 640)  # upright, then scaled up
    with Image.open(io.BytesIO(checked.data)) as out:
        assert out.size == (384, 640)
        assert out.getexif().get(0x0112) in (None, 1)


def test_photo_too_big_in_bytes_is_re_encoded_to_fit() -> None:
    side = 1900
    noisy = Image.frombytes("RGB", (side, side), random.Random(7).randbytes(side * side * 3))
    data = encode(noisy, "PNG", compress_level=1)
    assert len(data) > 10 * 1024 * 1024
    checked = check_image(data, normalize=True)
    assert len(checked.data) <= 10 * 1024 * 1024
    assert checked.format == "JPEG"
    [note] = checked.notes
    assert re.fullmatch(r"converted from PNG to JPEG \(quality \d+\) to fit 10 MB", note)
    with pytest.raises(InvalidImage, match="; the limit is 10 MB"):
        check_image(data, normalize=False)


def test_when_quality_is_not_enough_the_image_is_scaled_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("bot.core.validation.normalize.MAX_BYTES", 150_000)
    side = 1000
    pixels = random.Random(3).randbytes(side * side * 4)
    data = encode(Image.frombytes("RGBA", (side, side), pixels), "PNG", compress_level=1)
    checked = check_image(data, normalize=True)
    assert len(checked.data) <= 150_000
    assert checked.format == "JPEG"
    assert 384 <= checked.width < side and checked.width == checked.height
    assert checked.notes[0] == "transparency flattened onto white"
    assert checked.notes[-1].startswith(f"scaled {side}x{side} -> ")
    with Image.open(io.BytesIO(checked.data)) as out:
        assert out.size == (checked.width, checked.height)

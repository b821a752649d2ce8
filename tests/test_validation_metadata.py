"""Stage 1: refuse from attachment metadata what can never work, before any download."""

from __future__ import annotations

import pytest

from bot.core.errors import ValidationFailed
from bot.core.models import Capabilities, ErrorKind
from bot.core.validation import ImageMeta, check_metadata
from bot.core.validation.dimensions import fitted_size
from bot.core.validation.wording import image_label

MIB = 1024 * 1024
CAPS = Capabilities(
    name="apixo",
    max_input_images=3,
    aspect_ratios_t2i=["1:1"],
    aspect_ratios_i2i=["1:1"],
    supports_negative_prompt=True,
)


def meta(index: int = 1, **fields: object) -> ImageMeta:
    values: dict[str, object] = {
        "filename": "cat.png",
        "size": 1000,
        "content_type": "image/png",
        "width": 512,
        "height": 512,
    }
    values.update(fields)
    return ImageMeta(index=index, **values)  # type: ignore[arg-type]


def problems(metas: list[ImageMeta], normalize: bool) -> list[str]:
    try:
        check_metadata(metas, CAPS, normalize)
    except ValidationFailed as failed:
        assert failed.kind is ErrorKind.USER_INPUT  # the user's image, never the bot's fault
        return failed.problems
    return []


@pytest.mark.parametrize("normalize", [True, False])
def test_plain_image_passes(normalize: bool) -> None:
    assert problems([meta(), meta(2), meta(3)], normalize) == []


def test_unknown_fields_are_not_held_against_the_image() -> None:
    bare = ImageMeta(index=1)
    assert problems([bare], False) == []


def test_too_many_images_is_refused_first() -> None:
    assert problems([meta(i) for i in range(1, 5)], True) == [
        "4 images given; apixo accepts at most 3"
    ]


def test_size_limits_depend_on_normalisation() -> None:
    over = meta(size=10 * MIB + 1)
    assert problems([over], True) == []  # may be re-encoded to fit
    assert problems([over], False) == [
        "image 1 (cat.png) is 10,485,761 bytes; the limit is 10,485,760 bytes (10 MB)"
    ]
    assert problems([meta(size=12 * MIB)], False) == [
        "image 1 (cat.png) is 12 MB; the limit is 10 MB"
    ]
    assert problems([meta(size=80 * MIB)], True) == [
        "image 1 (cat.png) is 80 MB; the limit is 50 MB"
    ]
    assert problems([meta(size=0)], True) == ["image 1 (cat.png) is empty (0 bytes)"]


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/plain; charset=utf-8", "is not an image (text/plain)"),
        ("video/mp4", "is not an image (video/mp4)"),
        ("application/pdf", "is not an image (application/pdf)"),
        ("image/svg+xml", "is an SVG drawing"),
        ("image/heic", "is a HEIC photo"),
    ],
)
def test_non_image_content_types(content_type: str, expected: str) -> None:
    for normalize in (True, False):
        [problem] = problems([meta(content_type=content_type)], normalize)
        assert problem.startswith("image 1 (cat.png) " + expected)


@pytest.mark.parametrize(
    "content_type", [None, "", "application/octet-stream", "image/gif", "image/tiff"]
)
def test_content_type_that_does_not_prove_anything(content_type: str | None) -> None:
    # The real format comes from the bytes: a .gif may be a PNG, and GIFs get converted.
    assert problems([meta(content_type=content_type)], True) == []
    assert problems([meta(content_type=content_type)], False) == []


@pytest.mark.parametrize(
    ("width", "height", "on_fragment"),
    [
        (383, 400, None),
        (6000, 4000, None),
        (5000, 384, None),
        (5001, 383, "cannot be scaled to fit"),
        (20, 400, "cannot be scaled to fit"),
        (9000, 9000, "the limit is 50 megapixels"),
    ],
)
def test_dimensions(width: int, height: int, on_fragment: str | None) -> None:
    on = problems([meta(width=width, height=height)], True)
    if on_fragment is None:
        assert on == []
    else:
        [problem] = on
        assert problem.startswith(f"image 1 (cat.png) is {width}x{height} px")
        assert on_fragment in problem
    off = problems([meta(width=width, height=height)], False)
    if width == 5000:
        assert off == []
    else:
        [problem] = off
        assert problem.startswith(f"image 1 (cat.png) is {width}x{height} px")


def test_the_example_message_and_all_problems_at_once() -> None:
    metas = [
        meta(1),
        meta(2, filename="small.png", width=300, height=280),
        meta(3, filename="notes.txt", content_type="text/plain", size=11 * MIB),
    ]
    assert problems(metas, False) == [
        "image 2 (small.png) is 300x280 px; each side must be at least 384 px",
        "image 3 (notes.txt) is 11 MB; the limit is 10 MB",
        "image 3 (notes.txt) is not an image (text/plain)",
    ]


def test_labels_are_short_and_safe() -> None:
    assert image_label(2) == "image 2"
    assert image_label(1, "my `cat`\nphoto.png") == "image 1 (my 'cat' photo.png)"
    long = image_label(1, "x" * 200 + ".png")
    assert len(long) < 80
    assert long.endswith("…)")


def test_fitted_size_exhaustively_on_a_grid() -> None:
    """Every result keeps both sides in bounds and the aspect ratio within rounding, and
    None is returned exactly when the shape cannot fit."""
    for width in (1, 50, 200, 383, 384, 385, 1000, 4999, 5000, 5001, 7000, 60000):
        for height in (1, 29, 30, 383, 384, 390, 2000, 5000, 5001, 9999):
            fitted = fitted_size(width, height)
            long_side, short_side = max(width, height), min(width, height)
            if fitted is None:
                assert long_side / short_side > 5000 / 384 - 0.01, (width, height)
                continue
            new_w, new_h = fitted
            assert 384 <= new_w <= 5000 and 384 <= new_h <= 5000, (width, height)
            assert (new_w >= new_h) == (width >= height) or width == height
            assert abs(new_w / new_h - width / height) <= width / height / min(new_w, new_h) + 1e-9

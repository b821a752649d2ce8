"""Prompt and option checks: every problem reported at once, in words a person understands."""

from __future__ import annotations

import pytest

from bot.core.errors import ValidationFailed
from bot.core.models import Capabilities, ImageRef, Mode
from bot.core.validation import check_options
from bot.core.validation.options import clean_text

T2I = ["1:1", "3:4", "4:3", "9:16", "16:9"]
APIXO = Capabilities(
    name="apixo",
    max_input_images=3,
    aspect_ratios_t2i=T2I,
    aspect_ratios_i2i=[*T2I, "2:3", "3:2", "21:9"],
    supports_negative_prompt=True,
)
EVOLINK = Capabilities(
    name="evolink",
    max_input_images=2,
    aspect_ratios_t2i=T2I,
    aspect_ratios_i2i=T2I,
    supports_negative_prompt=False,
)


def problems_of(*args: object) -> list[str]:
    with pytest.raises(ValidationFailed) as caught:
        check_options(*args)  # type: ignore[arg-type]
    return caught.value.problems


def test_defaults_and_trimming() -> None:
    checked = check_options("  a red fox \n", "  ", None, None, 0, APIXO)
    assert checked.prompt == "a red fox"
    assert checked.negative_prompt is None
    assert checked.aspect_ratio == "1:1"
    assert checked.count == 1
    assert checked.mode is Mode.TEXT_TO_IMAGE
    assert checked.notes == []


def test_to_request_builds_a_generation_request() -> None:
    checked = check_options("fox", " blur ", "3:2", 2, 1, APIXO)
    image = ImageRef(url="https://x.test/a.png", width=512, height=512)
    request = checked.to_request([image], seed=7)
    assert request.mode is Mode.IMAGE_TO_IMAGE
    assert (request.prompt, request.negative_prompt, request.aspect_ratio) == ("fox", "blur", "3:2")
    assert (request.count, request.seed, request.images) == (2, 7, [image])


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t", None])
def test_empty_prompt(prompt: str | None) -> None:
    assert problems_of(prompt, None, None, None, 0, APIXO) == [
        "the prompt is empty; describe the image you want"
    ]


def test_prompt_length_bound_after_trimming() -> None:
    check_options("x" * 2000, None, None, None, 0, APIXO)
    check_options("  " + "x" * 2000 + "  ", None, None, None, 0, APIXO)
    assert problems_of("x" * 2001, None, None, None, 0, APIXO) == [
        "the prompt is 2001 characters; the limit is 2000"
    ]


def test_negative_prompt_length_bound() -> None:
    assert check_options("p", "n" * 500, None, None, 0, APIXO).negative_prompt == "n" * 500
    assert problems_of("p", "n" * 501, None, None, 0, APIXO) == [
        "the negative prompt is 501 characters; the limit is 500"
    ]


def test_unsupported_negative_prompt_is_dropped_with_a_note() -> None:
    checked = check_options("p", "blurry, text", None, None, 1, EVOLINK)
    assert checked.negative_prompt is None
    assert checked.notes == ["negative prompt is not supported by evolink, ignored"]
    assert checked.to_request().negative_prompt is None
    # not given, nothing to say
    assert check_options("p", None, None, None, 1, EVOLINK).notes == []


@pytest.mark.parametrize("count", [1, 4])
def test_count_bounds_ok(count: int) -> None:
    assert check_options("p", None, None, count, 0, APIXO).count == count


@pytest.mark.parametrize("count", [0, 5, -1])
def test_count_out_of_bounds(count: int) -> None:
    assert problems_of("p", None, None, count, 0, APIXO) == [
        f"the image count must be 1-4; got {count}"
    ]


@pytest.mark.parametrize("given", ["16:9", "16x9", " 16 / 9 ", "16X9"])
def test_aspect_ratio_spellings(given: str) -> None:
    assert check_options("p", None, given, None, 0, APIXO).aspect_ratio == "16:9"


def test_image_to_image_ratio_needs_an_image() -> None:
    assert check_options("p", None, "21:9", None, 1, APIXO).aspect_ratio == "21:9"
    assert problems_of("p", None, "21:9", None, 0, APIXO) == [
        "aspect ratio 21:9 needs an input image; without one choose 1:1, 3:4, 4:3, 9:16, 16:9"
    ]


def test_unknown_aspect_ratio_lists_the_choices() -> None:
    [problem] = problems_of("p", None, "5:4", None, 0, APIXO)
    assert problem == "aspect ratio 5:4 is not available; choose 1:1, 3:4, 4:3, 9:16, 16:9"


def test_image_count_against_provider_limit() -> None:
    check_options("p", None, None, None, 2, EVOLINK)
    assert problems_of("p", None, None, None, 3, EVOLINK) == [
        "3 images given; evolink accepts at most 2"
    ]


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_of("x" * 2500, "n" * 600, "7:1", 9, 4, APIXO)
    assert problems == [
        "the prompt is 2500 characters; the limit is 2000",
        "the negative prompt is 600 characters; the limit is 500",
        "aspect ratio 7:1 is not available; choose 1:1, 3:4, 4:3, 9:16, 16:9, 2:3, 3:2, 21:9",
        "the image count must be 1-4; got 9",
        "4 images given; apixo accepts at most 3",
    ]
    with pytest.raises(ValidationFailed) as caught:
        check_options("", None, None, 0, 0, APIXO)
    # the exception's own message (shown by front ends) carries them all
    assert "the prompt is empty" in caught.value.message
    assert "the image count must be 1-4; got 0" in caught.value.message


# --- invisible and control characters (nothing is paid for an empty request) -------

INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u3000\u00a0\u2028"


@pytest.mark.parametrize(
    "prompt",
    [
        INVISIBLE,
        "\u200b",
        " \ufeff ",
        "\x00\x00",
        "\x1b\x07\x7f",
        "\u200b\n\u2060\t\u200d",
        # default-ignorable marks and letters: combining grapheme joiner, variation
        # selectors, Hangul fillers (found in review: these were paid for)
        "\u200b\u034f\u200b",
        "\ufe0f",
        "\u3164 \u115f\u1160",
        "\U000e0101\u180b",
    ],
)
def test_a_prompt_of_invisible_characters_is_empty(prompt: str) -> None:
    assert problems_of(prompt, None, None, None, 0, APIXO) == [
        "the prompt is empty; describe the image you want"
    ]


def test_controls_and_nul_are_removed_from_both_prompts() -> None:
    checked = check_options(
        "\ufeff a\x00 red\nfox\tin\r\nsnow\x1b \u200b", "blur\x00ry\n", None, None, 0, APIXO
    )
    assert checked.prompt == "a red fox in snow"
    assert checked.negative_prompt == "blurry"
    assert check_options("fox", "\u200b\x00", None, None, 0, APIXO).negative_prompt is None


@pytest.mark.parametrize(
    ("given", "cleaned"),
    [
        ("a cat", "a cat"),
        (
            "family 👨\u200d👩\u200d👧 portrait",
            "family 👨\u200d👩\u200d👧 portrait",
        ),  # joiners kept
        ("می\u200cخواهم", "می\u200cخواهم"),  # ZWNJ inside Persian words kept
        ("a\u202eevil\u202c sign", "aevil sign"),  # bidi overrides would mislead readers
        ("lone \ud800surrogate", "lone surrogate"),
        ("東京\u3000夜景", "東京\u3000夜景"),  # an ideographic space inside stays
        ("a  b \n\n c", "a b c"),
        ("\u2060\u200bword\u200b\u2060", "word"),
        ("a red heart \u2764\ufe0f", "a red heart \u2764\ufe0f"),  # VS16 beside text stays
        (None, ""),
    ],
)
def test_clean_text(given: str | None, cleaned: str) -> None:
    assert clean_text(given) == cleaned


def test_prompt_length_counts_the_cleaned_text() -> None:
    caps = APIXO.model_copy(update={"max_prompt_chars": 6})
    assert check_options("ab\x00\x00\x00\n\ncd\x07", None, None, None, 0, caps).prompt == "ab cd"
    assert problems_of("ab\x00 cdefg", None, None, None, 0, caps) == [
        "the prompt is 8 characters; the limit is 6"
    ]

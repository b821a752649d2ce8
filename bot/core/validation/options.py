"""The prompt and options of a request, checked together so every problem is told at once."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.core.errors import ValidationFailed
from bot.core.models import Capabilities, GenerationRequest, ImageRef, Mode
from bot.core.validation.metadata import too_many_images

DEFAULT_ASPECT_RATIO = "1:1"
# Users type "16x9", "16/9" or "16 : 9" as often as "16:9".
_RATIO_SEPARATORS = re.compile(r"\s*[:x/×]\s*", re.IGNORECASE)
# Bidi embeddings, overrides and isolates: they reorder how the text is *shown* (in
# Discord messages too), so a prompt could display as something other than what is sent.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Categories that draw nothing: controls, format characters (zero-width space and
# joiners, U+2060, U+FEFF, soft hyphen...), separators, surrogates, unassigned.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn", "Zs", "Zl", "Zp"})
_SPACE_RUNS = re.compile(r" {2,}")
# Default-ignorable characters outside the categories above (Unicode's
# Default_Ignorable_Code_Point: combining grapheme joiner, Hangul fillers, variation
# selectors): they draw nothing alone, but are kept beside visible text (an emoji's VS16).
_IGNORABLE_RANGES = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xE0100, 0xE01EF),
)


def clean_text(text: str | None) -> str:
    """A prompt as it may be sent and shown: control characters and NUL removed (line
    breaks, tabs and other whitespace controls become a space), lone surrogates and bidi
    overrides removed, runs of spaces collapsed, and trimmed of whitespace and invisible
    characters at both ends. Joiners inside the text stay: emoji sequences and some
    scripts need them. Returns "" when nothing visible is left."""
    if not text:
        return ""
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category in ("Cc", "Zl", "Zp"):
            if char.isspace():  # \n \t \r, NEL, line/paragraph separators
                kept.append(" ")
            continue  # NUL, escape and the other controls
        if category == "Cs" or char in _BIDI_CONTROLS:
            continue  # a lone surrogate cannot even be encoded as UTF-8
        kept.append(char)
    cleaned = _SPACE_RUNS.sub(" ", "".join(kept))
    start, end = 0, len(cleaned)
    while start < end and _invisible(cleaned[start]):
        start += 1
    while end > start and _invisible(cleaned[end - 1]):
        end -= 1
    cleaned = cleaned[start:end]
    if all(_invisible(char) or _ignorable(char) for char in cleaned):
        return ""  # e.g. "\u200b\u034f\u200b": nothing a person could read
    return cleaned


def _invisible(char: str) -> bool:
    return char.isspace() or unicodedata.category(char) in _INVISIBLE_CATEGORIES


def _ignorable(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _IGNORABLE_RANGES)


@dataclass(frozen=True)
class CheckedOptions:
    prompt: str  # cleaned (see clean_text)
    negative_prompt: str | None  # cleaned; None when empty or not supported
    aspect_ratio: str
    count: int
    mode: Mode
    notes: list[str] = field(default_factory=list)  # e.g. an ignored negative prompt

    def to_request(
        self, images: Sequence[ImageRef] = (), *, seed: int | None = None
    ) -> GenerationRequest:
        return GenerationRequest(
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            aspect_ratio=self.aspect_ratio,
            count=self.count,
            images=list(images),
            seed=seed,
        )


def check_options(
    prompt: str | None,
    negative_prompt: str | None,
    aspect_ratio: str | None,
    count: int | None,
    image_count: int,
    caps: Capabilities,
) -> CheckedOptions:
    """Check a request's text and options for `caps`' provider.

    None means "not given": no negative prompt, the default aspect ratio, one image.
    A negative prompt the provider cannot take is dropped with a note rather than
    refused: the user cannot choose the provider, so refusing would only make them
    retype the request without it. Raises `ValidationFailed` with every problem.
    """
    problems: list[str] = []
    notes: list[str] = []
    mode = Mode.IMAGE_TO_IMAGE if image_count > 0 else Mode.TEXT_TO_IMAGE

    text = clean_text(prompt)
    if not text:
        problems.append("the prompt is empty; describe the image you want")
    elif len(text) > caps.max_prompt_chars:
        problems.append(
            f"the prompt is {len(text)} characters; the limit is {caps.max_prompt_chars}"
        )

    negative = clean_text(negative_prompt) or None
    if negative is not None and not caps.supports_negative_prompt:
        notes.append(f"negative prompt is not supported by {caps.name}, ignored")
        negative = None
    elif negative is not None and len(negative) > caps.max_negative_chars:
        problems.append(
            f"the negative prompt is {len(negative)} characters; "
            f"the limit is {caps.max_negative_chars}"
        )

    ratio = _aspect_ratio(aspect_ratio, mode, caps, problems)

    wanted = 1 if count is None else count
    if not 1 <= wanted <= caps.max_count:
        problems.append(f"the image count must be 1-{caps.max_count}; got {wanted}")

    if count_problem := too_many_images(image_count, caps):
        problems.append(count_problem)

    if problems:
        raise ValidationFailed(problems)
    return CheckedOptions(text, negative, ratio, wanted, mode, notes)


def _aspect_ratio(given: str | None, mode: Mode, caps: Capabilities, problems: list[str]) -> str:
    allowed = caps.aspect_ratios(mode)
    if given is None or not given.strip():
        return DEFAULT_ASPECT_RATIO if DEFAULT_ASPECT_RATIO in allowed else allowed[0]
    ratio = _RATIO_SEPARATORS.sub(":", given.strip())
    if ratio in allowed:
        return ratio
    choices = ", ".join(allowed)
    if mode is Mode.TEXT_TO_IMAGE and ratio in caps.aspect_ratios(Mode.IMAGE_TO_IMAGE):
        problems.append(f"aspect ratio {ratio} needs an input image; without one choose {choices}")
    else:
        problems.append(f"aspect ratio {given.strip()} is not available; choose {choices}")
    return ratio

"""The prompt and options of a request, checked together so every problem is told at once."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.core.errors import ValidationFailed
from bot.core.models import Capabilities, GenerationRequest, ImageRef, Mode
from bot.core.validation.metadata import too_many_images

DEFAULT_ASPECT_RATIO = "1:1"
# Users type "16x9", "16/9" or "16 : 9" as often as "16:9".
_RATIO_SEPARATORS = re.compile(r"\s*[:x/×]\s*", re.IGNORECASE)


@dataclass(frozen=True)
class CheckedOptions:
    prompt: str  # trimmed
    negative_prompt: str | None  # trimmed; None when empty or not supported
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

    text = (prompt or "").strip()
    if not text:
        problems.append("the prompt is empty; describe the image you want")
    elif len(text) > caps.max_prompt_chars:
        problems.append(
            f"the prompt is {len(text)} characters; the limit is {caps.max_prompt_chars}"
        )

    negative = (negative_prompt or "").strip() or None
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

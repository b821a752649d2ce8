"""One image's bytes in, a provider-ready image (or the reasons it is refused) out."""

from __future__ import annotations

from bot.core.validation.normalize import CheckedImage, normalize_image
from bot.core.validation.probe import inspect_image
from bot.core.validation.rules import assess


def check_image(data: bytes, *, normalize: bool) -> CheckedImage:
    """Blocking (Pillow); call it through an executor. Raises `InvalidImage`.

    An image that needs no change comes back with the very same bytes and `changed`
    False, having had only its header read.
    """
    info = inspect_image(data)
    plan = assess(info, len(data), normalize=normalize)
    if not plan.needed:
        return CheckedImage(data, info.format, info.width, info.height)
    return normalize_image(data, info, plan)

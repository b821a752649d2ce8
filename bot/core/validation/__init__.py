"""Input validation and normalisation: everything a request must satisfy, checked before
any money is spent, with messages a person understands.

Front ends call, in order:
1. `check_options(...)` for the prompt and options (all problems at once);
2. `check_metadata(...)` with the attachments' metadata, before deferring or downloading;
3. `prepare_images(...)` to download, inspect and (if the server allows) repair images.
Each raises `bot.core.errors.ValidationFailed(problems)`.
"""

from bot.core.validation.limits import (
    HARD_MAX_BYTES,
    MAX_BYTES,
    MAX_PIXELS,
    MAX_SIDE,
    MIN_SIDE,
)
from bot.core.validation.metadata import ImageMeta, check_metadata
from bot.core.validation.normalize import CheckedImage
from bot.core.validation.options import CheckedOptions, check_options
from bot.core.validation.pipeline import check_image
from bot.core.validation.prepare import (
    Fetched,
    Fetcher,
    ImageSource,
    InputFetchFailed,
    PreparedImages,
    prepare_images,
)
from bot.core.validation.probe import ImageInfo, inspect_image
from bot.core.validation.sniff import InvalidImage

__all__ = [
    "HARD_MAX_BYTES",
    "MAX_BYTES",
    "MAX_PIXELS",
    "MAX_SIDE",
    "MIN_SIDE",
    "CheckedImage",
    "CheckedOptions",
    "Fetched",
    "Fetcher",
    "ImageInfo",
    "ImageMeta",
    "ImageSource",
    "InputFetchFailed",
    "InvalidImage",
    "PreparedImages",
    "check_image",
    "check_metadata",
    "check_options",
    "inspect_image",
    "prepare_images",
]

"""From a parsed /imagine (or `wanbot generate`) to a validated GenerationRequest."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from bot.console.commands import ImagineCommand
from bot.console.hosting import LocalImageHost
from bot.core.errors import ValidationFailed
from bot.core.models import GenerationRequest
from bot.core.ports import ImageProvider
from bot.core.validation import (
    HARD_MAX_BYTES,
    Fetcher,
    ImageSource,
    check_options,
    prepare_images,
)
from bot.core.validation.wording import byte_size_problem, image_label


@dataclass(frozen=True)
class PreparedRequest:
    request: GenerationRequest
    notes: list[str]  # what was changed or ignored, to tell the user


def is_url(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


def _read_file(value: str, index: int) -> ImageSource | str:
    """The file's bytes, or the problem with it (read in a thread: disks can be slow)."""
    path = Path(value).expanduser()
    label = image_label(index, path.name)
    try:
        size = path.stat().st_size
        if not path.is_file():
            return f"{label} is not a file"
        if size > HARD_MAX_BYTES:
            return f"{label} {byte_size_problem(size, HARD_MAX_BYTES)}"
        return ImageSource.from_bytes(path.read_bytes(), filename=path.name)
    except FileNotFoundError:
        return f"{label}: there is no file {path}"
    except OSError as exc:
        return f"{label} cannot be read: {exc.strerror or exc}"


async def _sources(images: tuple[str, ...]) -> list[ImageSource]:
    found: list[ImageSource | str] = []
    for index, value in enumerate(images, start=1):
        if is_url(value):
            found.append(ImageSource.from_url(value))
        else:
            found.append(await asyncio.to_thread(_read_file, value, index))
    problems = [item for item in found if isinstance(item, str)]
    if problems:
        raise ValidationFailed(problems)
    return [item for item in found if isinstance(item, ImageSource)]


async def prepare_request(
    command: ImagineCommand,
    provider: ImageProvider,
    *,
    fetch: Fetcher,
    host: LocalImageHost,
    normalize: bool = True,
    executor: Executor | None = None,
) -> PreparedRequest:
    """Check the options and images like the Discord front end does. Raises
    ValidationFailed with every problem; nothing is reserved or spent before this passes."""
    caps = provider.capabilities
    options = check_options(
        command.prompt, command.negative, command.aspect, command.count, len(command.images), caps
    )
    local = [image for image in command.images if not is_url(image)]
    if local and not host.can_host:
        raise host.refusal(Path(local[0]).name)
    sources = await _sources(command.images)
    prepared = await prepare_images(
        sources, caps, normalize=normalize, fetch=fetch, host=host, executor=executor
    )
    return PreparedRequest(
        request=options.to_request(prepared.refs), notes=[*options.notes, *prepared.notes]
    )

"""From a parsed /imagine (or `wanbot generate`) to checked options and image sources
for the conversation layer, which prepares, hosts and submits them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.chat.service import ChatService
from bot.console.commands import ImagineCommand
from bot.console.conversation import ConsoleConversation
from bot.core.errors import ValidationFailed
from bot.core.validation import HARD_MAX_BYTES, CheckedOptions, ImageSource
from bot.core.validation.wording import byte_size_problem, image_label


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


async def image_sources(images: tuple[str, ...], conv: ConsoleConversation) -> list[ImageSource]:
    """Links as they are, files read; ValidationFailed with every problem, or when the
    provider cannot be given a file from this machine."""
    local = [image for image in images if not is_url(image)]
    if local and not (host := conv.local_host()).can_host:
        raise host.refusal(Path(local[0]).name)
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


async def checked(
    service: ChatService, conv: ConsoleConversation, command: ImagineCommand
) -> tuple[CheckedOptions, list[ImageSource]]:
    """The instant checks, every problem at once (nothing reserved or sent yet)."""
    problems: list[str] = []
    sources: list[ImageSource] = []
    try:
        sources = await image_sources(command.images, conv)
    except ValidationFailed as exc:
        problems += exc.problems
    config = await service.configs.get(conv.requester.space)
    try:
        options = service.check(
            command.prompt,
            command.negative,
            command.aspect,
            command.count,
            sources,
            normalize=config.normalize_images,
        )
    except ValidationFailed as exc:
        problems += exc.problems
    if problems:
        raise ValidationFailed(list(dict.fromkeys(problems)))
    return options, sources

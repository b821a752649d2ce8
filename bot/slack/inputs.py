"""A Slack user's images, on their way to the provider.

Slack files are private: the chat layer's image preparation fetches them with the
bot token (SlackFiles: Slack's hosts only, redirects by hand, sign-in pages refused,
size capped), checks and repairs them as Discord's, and hosts every one anew for the
provider (a private source): inline (data: URI) where the provider takes it, on the
provider's own file host (EvoLink), or served by the bot itself (MediaHost, for
APIXO). With no way to host them the request is refused before anything is spent.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any, cast

from bot.core.ports import ImageHost, ImageProvider
from bot.core.tasks import TaskGroup
from bot.core.validation import Fetcher, ImageMeta, ImageSource
from bot.media import MediaHost, MediaSession, needs_public_urls, served_session
from bot.slack.files import SlackFiles

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".heic", ".heif", ".tiff")
SlackFile = Mapping[str, Any]


def is_image(file: SlackFile) -> bool:
    mimetype = str(file.get("mimetype") or "")
    if mimetype:  # may be "" [python-slack-sdk#1590]
        return mimetype.startswith("image/")
    return PurePosixPath(str(file.get("name") or "").lower()).suffix in IMAGE_SUFFIXES


def image_files(files: Sequence[SlackFile] | None) -> list[SlackFile]:
    return [f for f in files or () if is_image(f)]


def _meta(file: SlackFile, index: int) -> ImageMeta:
    width, height = file.get("original_w"), file.get("original_h")
    return ImageMeta(
        index=index,
        filename=str(file.get("name") or "") or None,
        size=int(file["size"]) if isinstance(file.get("size"), int) else None,
        content_type=str(file.get("mimetype") or "") or None,
        width=int(width) if isinstance(width, int) else None,
        height=int(height) if isinstance(height, int) else None,
    )


def described(files: Sequence[SlackFile]) -> list[ImageSource]:
    """The files as input images: Slack's word on them for the instant checks, and
    private links the bot fetches with its token (and hosts anew for the provider)."""
    return [
        ImageSource.from_url(
            str(f.get("url_private_download") or f.get("url_private")),
            _meta(f, i),
            private=True,
        )
        for i, f in enumerate(files, 1)
    ]


class SlackImageHost:
    """Hosts one request's repaired images for the provider (a `HostSession`)."""

    def __init__(self, provider: ImageProvider, media: MediaHost | None, tasks: TaskGroup) -> None:
        self._provider = provider
        self._tasks = tasks
        # EvoLink's provider is itself an ImageHost (it uploads to its file host).
        self._upload = cast(ImageHost, provider) if hasattr(provider, "host") else None
        self._served: MediaSession | None = None
        if needs_public_urls(provider):
            self._served = served_session(media, provider)  # HostingUnavailable if none

    async def host(self, data: bytes, content_type: str, filename: str) -> str:
        if self._served is not None:
            return await self._served.host(data, content_type, filename)
        if self._upload is not None:
            return await self._upload.host(data, content_type, filename)
        return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"

    async def withdraw(self) -> None:
        if self._served is not None:
            await self._served.withdraw()

    def kept(self) -> list[str]:
        return []  # data: URIs, the provider's own files, or the MediaHost's memory

    def bind(self, job_id: str) -> None:
        if self._served is not None:
            self._tasks.create_task(self._served.bind(job_id), name=f"bind-inputs-{job_id}")


class SlackInputs:
    def __init__(
        self,
        files: SlackFiles,
        provider: ImageProvider,
        media: MediaHost | None,
        tasks: TaskGroup,
    ) -> None:
        self._files = files
        self._provider = provider
        self._media = media
        self._tasks = tasks

    def session(self) -> SlackImageHost:
        return SlackImageHost(self._provider, self._media, self._tasks)

    @property
    def fetcher(self) -> Fetcher:
        return self._files.fetcher

    def check_hosting(self) -> None:
        """Raise HostingUnavailable (what the admin must set) before anything is done."""
        if needs_public_urls(self._provider):
            served_session(self._media, self._provider)

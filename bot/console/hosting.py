"""Making local image files reachable by the provider (the console's ImageHost).

Providers fetch input images themselves, so a file on this machine must become
a data: URI (providers that accept one: the mock, DashScope), a URL on the
provider's own file host (EvoLink's base64 upload), or, for providers that only
fetch public URLs (APIXO), a URL the bot serves itself (bot.media, when
MEDIA_PUBLIC_URL or CALLBACK_PUBLIC_URL is set). Without that, such a provider
needs an image that is already online.
"""

from __future__ import annotations

import base64
from typing import cast

from bot.core.errors import ValidationFailed
from bot.core.ports import ImageHost, ImageProvider
from bot.media import MediaHost, MediaSession, needs_public_urls


def data_uri(data: bytes, content_type: str) -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"


class LocalImageHost:
    """Hosts the images of one request. `withdraw` when it is refused, `bind` once its
    job exists (only images the bot serves itself need either)."""

    def __init__(self, provider: ImageProvider, media: MediaHost | None = None) -> None:
        self._provider = provider
        # EvoLink's provider is itself an ImageHost (it uploads to its file host).
        self._upload = cast(ImageHost, provider) if hasattr(provider, "host") else None
        self._served: MediaSession | None = None
        if media is not None and needs_public_urls(provider):
            self._served = media.session()

    @property
    def can_host(self) -> bool:
        return (
            self._provider.capabilities.accepts_data_uri
            or self._upload is not None
            or self._served is not None
        )

    async def host(self, data: bytes, content_type: str, filename: str) -> str:
        if self._provider.capabilities.accepts_data_uri:
            return data_uri(data, content_type)
        if self._upload is not None:
            return await self._upload.host(data, content_type, filename)
        if self._served is not None:
            return await self._served.host(data, content_type, filename)
        raise self.refusal(filename)

    async def withdraw(self) -> None:
        if self._served is not None:
            await self._served.withdraw()

    async def bind(self, job_id: str) -> None:
        if self._served is not None:
            await self._served.bind(job_id)

    def refusal(self, filename: str) -> ValidationFailed:
        """Why a local file cannot be used with this provider."""
        name = self._provider.capabilities.name
        return ValidationFailed(
            [
                f"{name} only fetches input images from public URLs, so it cannot take "
                f"{filename} as a file unless the bot serves it: set MEDIA_PUBLIC_URL (or "
                "CALLBACK_PUBLIC_URL) to the public https address that reaches this "
                "machine's CALLBACK_PORT, and make that port reachable from the internet; "
                "or pass an https:// link to an image it can use as it is (JPEG, or PNG "
                "without transparency, 384-5000 px per side); or use DashScope, EvoLink or "
                "the mock provider, which take files"
            ]
        )

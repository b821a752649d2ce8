"""Making local image files reachable by the provider (the console's ImageHost).

Providers fetch input images themselves, so a file on this machine must become
either a data: URI (providers that accept one: the mock, DashScope) or a URL
on the provider's own file host (EvoLink's base64 upload). Other providers
need an image that is already online.
"""

from __future__ import annotations

import base64
from typing import cast

from bot.core.errors import ValidationFailed
from bot.core.ports import ImageHost, ImageProvider


def data_uri(data: bytes, content_type: str) -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"


class LocalImageHost:
    def __init__(self, provider: ImageProvider) -> None:
        self._provider = provider
        # EvoLink's provider is itself an ImageHost (it uploads to its file host).
        self._upload = cast(ImageHost, provider) if hasattr(provider, "host") else None

    @property
    def can_host(self) -> bool:
        return self._provider.capabilities.accepts_data_uri or self._upload is not None

    async def host(self, data: bytes, content_type: str, filename: str) -> str:
        if self._provider.capabilities.accepts_data_uri:
            return data_uri(data, content_type)
        if self._upload is not None:
            return await self._upload.host(data, content_type, filename)
        raise self.refusal(filename)

    def refusal(self, filename: str) -> ValidationFailed:
        """Why a local file cannot be used with this provider."""
        name = self._provider.capabilities.name
        return ValidationFailed(
            [
                f"{name} only fetches input images from public URLs, so it cannot take "
                f"{filename} as a file: pass an https:// link to an image it can use as it "
                "is (JPEG, or PNG without transparency, 384-5000 px per side), or use "
                "DashScope, EvoLink or the mock provider, which take files"
            ]
        )

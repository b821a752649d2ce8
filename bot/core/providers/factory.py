"""Build a provider by name from plain arguments (the runtime maps settings to these)."""

from __future__ import annotations

from typing import Any

import aiohttp
from pydantic import SecretStr

from bot.core.clock import Clock
from bot.core.download import SafeDownloader
from bot.core.ports import ImageProvider
from bot.core.providers import apixo, dashscope, evolink
from bot.core.providers.apixo import ApixoProvider
from bot.core.providers.base import RetryPolicy, Timeouts
from bot.core.providers.dashscope import DashscopeProvider
from bot.core.providers.evolink import EvolinkProvider
from bot.core.providers.mock import MockProvider

PROVIDER_NAMES = ("apixo", "evolink", "dashscope", "mock")


def build_provider(
    name: str,
    *,
    clock: Clock,
    session: aiohttp.ClientSession | None = None,
    api_key: SecretStr | None = None,
    base_url: str | None = None,
    files_url: str | None = None,
    downloader: SafeDownloader | None = None,
    mock_latency_seconds: float = 3.0,
    timeouts: Timeouts | None = None,
    retry: RetryPolicy | None = None,
) -> ImageProvider:
    """The provider called `name`. Raises ValueError when it cannot be built.

    `downloader` fetches result images (HTTP providers) and input images given by URL
    (the mock); without one, HTTP providers only accept their own result hosts.
    """
    if name == "mock":
        return MockProvider(clock, mock_latency_seconds, downloader=downloader)
    if name not in PROVIDER_NAMES:
        raise ValueError(f"unknown provider {name!r}: use one of {', '.join(PROVIDER_NAMES)}")
    if session is None:
        raise ValueError(f"the {name} provider needs an HTTP session")
    if api_key is None or not api_key.get_secret_value().strip():
        raise ValueError(f"the {name} provider needs an API key ({name.upper()}_API_KEY)")
    options: dict[str, Any] = {"timeouts": timeouts, "retry": retry, "downloader": downloader}
    if name == "apixo":
        return ApixoProvider(session, api_key, base_url or apixo.DEFAULT_BASE_URL, clock, **options)
    if name == "evolink":
        return EvolinkProvider(
            session,
            api_key,
            base_url or evolink.DEFAULT_BASE_URL,
            files_url or evolink.DEFAULT_FILES_URL,
            clock,
            **options,
        )
    return DashscopeProvider(
        session, api_key, base_url or dashscope.DEFAULT_BASE_URL, clock, **options
    )

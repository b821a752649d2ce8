"""Wan 2.5 providers behind the ImageProvider port: APIXO, EvoLink, DashScope, and an
offline mock. Build one with `build_provider`."""

from bot.core.providers.apixo import ApixoProvider
from bot.core.providers.base import RetryPolicy, Timeouts
from bot.core.providers.callbacks import task_id_from_callback
from bot.core.providers.dashscope import DashscopeProvider
from bot.core.providers.evolink import EvolinkProvider
from bot.core.providers.factory import PROVIDER_NAMES, build_provider
from bot.core.providers.mock import MockProvider

__all__ = [
    "PROVIDER_NAMES",
    "ApixoProvider",
    "DashscopeProvider",
    "EvolinkProvider",
    "MockProvider",
    "RetryPolicy",
    "Timeouts",
    "build_provider",
    "task_id_from_callback",
]

"""What the Discord front end needs from the runtime (bot.runtime.Runtime fits).

A protocol rather than the concrete class, so the front end depends only on the
core's ports and tests can hand in any runtime built from settings.
"""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Protocol

from bot.chat.service import ChatService
from bot.core.clock import Clock
from bot.core.ports import ImageProvider, JobService, JobStore, QuotaAdmin
from bot.core.tasks import TaskGroup
from bot.core.validation import Fetcher
from bot.settings import Settings


class DiscordRuntime(Protocol):
    @property
    def chat(self) -> ChatService: ...

    @property
    def engine(self) -> JobService: ...

    @property
    def quotas(self) -> QuotaAdmin: ...

    @property
    def jobs(self) -> JobStore: ...

    @property
    def provider(self) -> ImageProvider: ...

    @property
    def downloader(self) -> Fetcher: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def tasks(self) -> TaskGroup: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def image_executor(self) -> Executor:
        """Pillow work (input repair, result re-encoding): not the loop's default
        executor, where aiohttp resolves host names."""
        ...

"""The person at the keyboard as the conversation layer sees them (`Conversation`):
the local admin, who owns the machine, the keys and the bill, answered in the
terminal."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from bot.chat.cards import Card
from bot.chat.surface import HostSession
from bot.console.commands import LOCAL_USER
from bot.console.delivery import PLATFORM, STYLE
from bot.console.hosting import LocalImageHost
from bot.console.render import card_text
from bot.core.models import GuildConfig, Requester
from bot.core.ports import ImageProvider
from bot.core.tasks import TaskGroup
from bot.media import MediaHost

LOCAL_REQUESTER = Requester(
    platform=PLATFORM, user_id=LOCAL_USER, guild_id=None, is_admin=True, display_name="you"
)


class ConsoleConversation:
    requester = LOCAL_REQUESTER
    style = STYLE

    def __init__(
        self,
        emit: Callable[[str], None],
        provider: ImageProvider,
        media: MediaHost | None,
        tasks: TaskGroup,
        ref: dict[str, Any] | None = None,
    ) -> None:
        self._emit = emit
        self._provider = provider
        self._media = media
        self._tasks = tasks
        self._ref = ref or {}  # stored with each job (see ShellView)

    def check_place(self, config: GuildConfig | None) -> None:
        """Anything goes on one's own machine."""

    def local_host(self) -> LocalImageHost:
        return LocalImageHost(self._provider, self._media)

    def image_host(self) -> HostSession:
        return _Hosting(self.local_host(), self._tasks)

    async def post_status(self, card: Card) -> dict[str, Any]:
        # The caller prints the job's first line once it has the job.
        return dict(self._ref)

    async def answer(self, card: Card | str, *, files: Sequence[Any] = ()) -> None:
        self._emit(card if isinstance(card, str) else card_text(card))


class _Hosting:
    """LocalImageHost as a `HostSession`, whose `bind` is not a coroutine."""

    def __init__(self, host: LocalImageHost, tasks: TaskGroup) -> None:
        self._host = host
        self._tasks = tasks

    async def host(self, data: bytes, content_type: str, filename: str) -> str:
        return await self._host.host(data, content_type, filename)

    async def withdraw(self) -> None:
        await self._host.withdraw()

    def kept(self) -> list[str]:
        return []  # the MediaHost's memory: gone with the process anyway

    def bind(self, job_id: str) -> None:
        # A late bind is safe: the media host drops the images of a job already ended.
        # Shutting down (the group is closed): the images expire with the media host.
        with contextlib.suppress(RuntimeError):
            self._tasks.create_task(self._host.bind(job_id), name=f"bind-inputs-{job_id}")

"""Running the shared core (bot.runtime.Runtime) for a terminal front end."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from bot.console.alerts import ConsoleAlerts, drop_alert_log_lines
from bot.console.conversation import ConsoleConversation
from bot.console.delivery import ConsoleSurface
from bot.runtime import Runtime
from bot.settings import Settings

RuntimeFactory = Callable[[Settings], Runtime]


def quiet_routine_logs(settings: Settings) -> None:
    """At the default level, keep the terminal for the conversation: routine INFO
    lines are hidden, warnings and errors still show. LOG_LEVEL=DEBUG shows all."""
    if settings.log_level == "INFO":
        logging.getLogger().setLevel(logging.WARNING)
        # The banner and the docs already say so, in friendlier words.
        logging.getLogger("bot.core.providers.mock").setLevel(logging.ERROR)
    drop_alert_log_lines(logging.getLogger().handlers)  # ConsoleAlerts prints them


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    surface: ConsoleSurface,
    factory: RuntimeFactory = Runtime,
    *,
    alert_line: Callable[[str], None],
) -> AsyncIterator[Runtime]:
    """A started Runtime with the console's surface added to its ChatService (before
    the start, so unfinished console jobs from an earlier run resume into it); closed
    on exit. `alert_line` shows an admin alert where the person reads."""
    rt = factory(settings)
    surface.media = rt.media
    rt.chat.add_surface(surface)
    rt.alert_sinks.add(ConsoleAlerts(alert_line))  # billing/key trouble, outages
    try:
        await rt.start()
        yield rt
    finally:
        await rt.close()


def conversation(
    rt: Runtime, emit: Callable[[str], None], ref: dict[str, object] | None = None
) -> ConsoleConversation:
    return ConsoleConversation(emit, rt.provider, rt.media, rt.tasks, ref)

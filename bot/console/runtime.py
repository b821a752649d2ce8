"""Running the shared core (bot.runtime.Runtime) for a terminal front end."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from bot.console.alerts import ConsoleAlerts, drop_alert_log_lines
from bot.console.delivery import ConsoleDelivery
from bot.console.session import PLATFORM, CoreParts
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
    delivery: ConsoleDelivery,
    factory: RuntimeFactory = Runtime,
    *,
    alert_line: Callable[[str], None],
) -> AsyncIterator[Runtime]:
    """A started Runtime with the console's delivery registered (before the start, so
    unfinished console jobs from an earlier run resume into it); closed on exit.
    `alert_line` shows an admin alert where the person reads."""
    rt = factory(settings)
    rt.engine.register_delivery(PLATFORM, delivery)
    rt.alert_sinks.add(ConsoleAlerts(alert_line))  # billing/key trouble, outages
    try:
        await rt.start()
        yield rt
    finally:
        await rt.close()


def core_parts(rt: Runtime) -> CoreParts:
    return CoreParts(
        engine=rt.engine,
        quotas=rt.quotas,
        jobs=rt.jobs,
        provider=rt.provider,
        downloader=rt.downloader,
        clock=rt.clock,
        image_executor=rt.image_executor,
    )

"""Admin alerts in a terminal (`bot.core.ports.AdminAlerts`): the person at the console
runs the bot, so every alert is one line where they read (the conversation, or
`generate`'s stderr); throttling is the core's. The log has it too (`LogAlerts`): where
the log writes text to a terminal, `drop_alert_log_lines` leaves its copy out, so the
alert shows once; a log in JSON or going to a file keeps it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from bot.core.alerts import ALERT_RECORD, alert_text
from bot.core.models import AdminAlert
from bot.logging_setup import JsonFormatter


class ConsoleAlerts:
    def __init__(self, write_line: Callable[[str], None]) -> None:
        self._write_line = write_line

    async def alert(self, alert: AdminAlert) -> bool:
        where = f" (server {alert.guild_id})" if alert.guild_id else ""
        self._write_line(f"{alert_text(alert)}{where}")
        return True


def _not_an_alert(record: logging.LogRecord) -> bool:
    return not getattr(record, ALERT_RECORD, False)


def drop_alert_log_lines(handlers: Iterable[logging.Handler]) -> None:
    """Alerts stay out of text logs written to a terminal: ConsoleAlerts shows them."""
    for handler in handlers:
        stream = getattr(handler, "stream", None)
        on_terminal = stream is not None and hasattr(stream, "isatty") and stream.isatty()
        if on_terminal and not isinstance(handler.formatter, JsonFormatter):
            handler.addFilter(_not_an_alert)

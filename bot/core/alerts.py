"""Admin alerts: facts for the people who can fix them, at most once per cause, server
and hour.

The engine raises `AdminAlert` facts (billing/key/setup trouble, a provider outage over
5 minutes, a server budget used up) through the `AdminAlerts` port. `AlertThrottle`
sends each (cause, server) pair once per window (by the injected clock) and remembers
whether a person was told, so a user's failure card says "admins have been told" only
when it is true. Front ends supply the sinks (a Discord channel or the owner's DMs,
the console); `LogAlerts` writes every alert sent to the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from bot.core.clock import Clock
from bot.core.models import AdminAlert, AlertCause
from bot.core.ports import AdminAlerts

log = logging.getLogger(__name__)

ALERT_WINDOW = 3600.0  # at most one message per cause and server this often
OUTAGE_ALERT_AFTER = 300.0  # a provider failing this long is worth an admin's attention
# Set on the log record of each alert, so a terminal that prints the alert itself can
# leave the log's copy out (bot.console.runtime) and show it once.
ALERT_RECORD = "wanbot_admin_alert"

TITLES = {
    AlertCause.PROVIDER_SETUP: "image service billing, key or setup",
    AlertCause.BOT_REQUEST: "a request the bot built was refused",
    AlertCause.PROVIDER_OUTAGE: "image service outage",
    AlertCause.BUDGET_EXHAUSTED: "server budget used up",
}


def alert_text(alert: AdminAlert) -> str:
    """One line for any front end: what kind of trouble, then the detail."""
    return f"wanbot alert ({TITLES[alert.cause]}): {alert.detail}"


@dataclass
class _Sent:
    at: float  # clock.monotonic()
    outcome: asyncio.Future[bool]


class AlertThrottle:
    """`AdminAlerts` that passes one alert per (cause, server) per `window` to `sink`;
    the others get the first one's outcome (waiting for it while it is being sent)."""

    def __init__(self, sink: AdminAlerts, clock: Clock, window: float = ALERT_WINDOW) -> None:
        self._sink = sink
        self._clock = clock
        self._window = window
        self._sent: dict[tuple[AlertCause, str | None, str | None], _Sent] = {}

    async def alert(self, alert: AdminAlert) -> bool:
        now = self._clock.monotonic()
        key = (alert.cause, alert.platform, alert.guild_id)
        sent = self._sent.get(key)
        if sent is not None and now - sent.at < self._window:
            log.debug("alert %s for %s already sent this hour", alert.cause.value, key[2])
            # shield: one waiter being cancelled must not cancel the others' answer.
            return await asyncio.shield(sent.outcome)
        self._forget_before(now - self._window)
        outcome: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._sent[key] = _Sent(now, outcome)
        told = False
        try:
            told = await self._sink.alert(alert)
        except Exception:
            log.warning("admin alert %s could not be sent", alert.cause.value, exc_info=True)
        finally:
            outcome.set_result(told)  # also when cancelled: waiters get False
        return told

    def _forget_before(self, cutoff: float) -> None:
        for key in [k for k, s in self._sent.items() if s.at < cutoff]:
            del self._sent[key]


class LogAlerts:
    """Writes every alert to the log (ERROR). Tells no person by itself."""

    async def alert(self, alert: AdminAlert) -> bool:
        log.error(
            "%s (server %s)",
            alert_text(alert),
            alert.guild_id or "none",
            extra={ALERT_RECORD: True},
        )
        return False


class FanOut:
    """Sends to every sink; a person was told if any sink told one."""

    def __init__(self, sinks: Sequence[AdminAlerts] = ()) -> None:
        self._sinks = list(sinks)

    def add(self, sink: AdminAlerts) -> None:
        """A front end joins (the composition root builds this before the front ends)."""
        self._sinks.append(sink)

    async def alert(self, alert: AdminAlert) -> bool:
        told = False
        for sink in self._sinks:
            try:
                told = await sink.alert(alert) or told
            except Exception:
                log.warning("an admin alert sink failed", exc_info=True)
        return told

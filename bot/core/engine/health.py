"""Provider health as the engine sees it: outages and setup trouble, told to the
admins of the servers affected once per outage, not once per job."""

from __future__ import annotations

import logging
import math

from bot.core.alerts import OUTAGE_ALERT_AFTER
from bot.core.engine.context import Context
from bot.core.engine.deadline import within
from bot.core.models import AdminAlert as AlertFact
from bot.core.models import AlertCause, FailureCategory, UserError

log = logging.getLogger(__name__)


class Health:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._config_outage = False
        self._outage_since: float | None = None  # monotonic: first failure of a streak
        self._outage_alerted_at = -math.inf
        self._setup_detail: str | None = None

    @property
    def _name(self) -> str:
        return self._ctx.provider.name

    def alert_config(self, code: str, message: str) -> None:
        """Billing/key/setup trouble: tell the admins once per outage, not once per job.
        It has no server of its own: every server with a job in flight is affected (the
        failing job's own server too; later ones hear of it when their jobs fail)."""
        if self._config_outage:
            return
        self._config_outage = True
        text = self._setup_detail = self._setup_text(code, message)
        # The alert port logs the text itself (LogAlerts), once per server and hour.
        self._alert_affected(AlertCause.PROVIDER_SETUP, text)

    def admin_detail(self, error: UserError) -> str:
        if error.category is FailureCategory.REQUEST:
            return (
                f"The image provider {self._name} could not accept a request the bot "
                f"built ({error.code}). This is the bot's side, not the user's prompt or the "
                "provider account: check the bot's settings (provider, model, sizes) and the "
                "log, and report it if it goes on. The user was not charged."
            )
        return self._setup_detail or self._setup_text(error.code or "", "")

    def _setup_text(self, code: str, message: str) -> str:
        return (
            f"The image provider {self._name} refuses the bot's requests "
            f"({code}{': ' + message if message else ''}). Check the API key, balance "
            "and access; users are told the service is unavailable and are not charged."
        )

    def provider_failed(self, category: FailureCategory) -> None:
        """A failed provider call: an outage that lasts over OUTAGE_ALERT_AFTER is told
        to the servers with jobs in flight (the alert port throttles per server)."""
        if category is not FailureCategory.TRANSIENT:
            return
        now = self._ctx.clock.monotonic()
        if self._outage_since is None:
            self._outage_since = now
            return
        lasted = now - self._outage_since
        if lasted < OUTAGE_ALERT_AFTER or now - self._outage_alerted_at < 60.0:
            return
        self._outage_alerted_at = now
        minutes = round(lasted / 60)
        self._alert_affected(
            AlertCause.PROVIDER_OUTAGE,
            f"The image provider {self._name} has been failing or overloaded for "
            f"{minutes} minutes. Jobs are retried, then failed and refunded; nothing is "
            "needed from you unless it lasts (check the provider's status page).",
        )

    def provider_ok(self) -> None:
        self._ctx.metrics.provider_ok(self._name)
        self._outage_since = None
        if self._config_outage:
            self._config_outage = False
            log.warning("the image provider %s accepts requests again", self._name)

    def alert_budget(self, guild_id: str | None, left: int | None, platform: str) -> None:
        if guild_id is None:
            return
        what = "is used up" if not left else f"has only {left} image(s) left"
        self._send_alert(
            AlertFact(
                cause=AlertCause.BUDGET_EXHAUSTED,
                guild_id=guild_id,
                platform=platform,
                detail=(
                    f"The server's monthly image budget {what}: requests are refused until "
                    "the 1st of next month (UTC). Raise it with /quota budget."
                ),
            )
        )

    def _alert_affected(self, cause: AlertCause, detail: str) -> None:
        places = {
            (a.job.requester.platform, a.job.requester.guild_id) for a in self._ctx.active.values()
        }
        for platform, guild_id in sorted(places, key=lambda p: (p[0], p[1] or "")):
            fact = AlertFact(cause=cause, guild_id=guild_id, platform=platform, detail=detail)
            self._send_alert(fact)

    def _send_alert(self, fact: AlertFact) -> None:
        ctx = self._ctx
        if ctx.alerts is not None and not ctx.closing:
            ctx.tasks.create_task(self.tell_admins(fact), name=f"alert-{fact.cause.value}")

    async def tell_admins(self, fact: AlertFact) -> bool:
        """True when a person has been told. Bounded: a user's failure card waits for
        this, and must not wait on a hung chat service."""
        ctx = self._ctx
        if ctx.alerts is None:
            return False
        try:
            return await within(
                ctx.clock, ctx.config.deliver_attempt_timeout, ctx.alerts.alert(fact)
            )
        except Exception:
            log.warning("admin alert %s failed", fact.cause.value, exc_info=True)
            return False

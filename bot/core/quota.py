"""Quota rules: periods, which limit applies, and whether a request may go ahead.

Pure functions over facts that storage reads (counts, overrides); no SQL here.
The unit is one generated image. A user's usage in a period is every image
reserved in it minus what was refunded, so jobs still in flight count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING

from bot.core.errors import QuotaDenied, QuotaReason, RefusalFacts
from bot.core.models import DIRECT_SPACE, Period, UsageReport

if TYPE_CHECKING:
    from bot.settings import Settings

# The quota scope of requests made outside any server (console, direct messages):
# they get the settings' defaults unless an admin configures this scope by name.
DIRECT_SCOPE = DIRECT_SPACE


def quota_scope(guild_id: str | None) -> str:
    return guild_id or DIRECT_SCOPE


@dataclass(frozen=True)
class QuotaDefaults:
    """What applies where a server configured nothing (from settings)."""

    default_limit: int = 25
    period: Period = Period.DAY
    max_running: int = 2
    max_queued: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> QuotaDefaults:
        return cls(
            default_limit=settings.default_user_limit,
            period=Period(settings.default_quota_period),
            max_running=settings.max_running_jobs_per_user,
            max_queued=settings.max_queued_jobs_per_user,
        )


@dataclass(frozen=True)
class Window:
    """One quota period: [start, end) in wall-clock seconds, UTC-aligned."""

    period: Period
    start: float
    end: float


def period_window(period: Period, now: float) -> Window:
    """The UTC day, ISO week (Monday to Monday) or calendar month containing `now`."""
    return _window(period, int(now // _DAY_SECONDS))


_DAY_SECONDS = 86400


@lru_cache(maxsize=64)
def _window(period: Period, day_number: int) -> Window:
    # Cached per UTC day: quota checks run thousands of times a second.
    day = datetime.fromtimestamp(day_number * _DAY_SECONDS, tz=UTC)
    if period is Period.DAY:
        start, end = day, day + timedelta(days=1)
    elif period is Period.WEEK:
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
    return Window(period, start.timestamp(), end.timestamp())


class LimitSource(StrEnum):
    USER = "user"  # a per-user override
    ROLE = "role"  # a per-role override
    SERVER = "server"  # the server's default
    DEFAULT = "default"  # the bot's settings


@dataclass(frozen=True)
class LimitRule:
    """An override or server default as configured. `period` None: the server's period."""

    limit: int
    period: Period | None = None


@dataclass(frozen=True)
class EffectiveLimit:
    limit: int
    period: Period
    source: LimitSource


# Only to compare generosity across periods (30 days stands for any month).
_PERIOD_DAYS = {Period.DAY: 1, Period.WEEK: 7, Period.MONTH: 30}


def _generosity(rule: EffectiveLimit) -> tuple[float, int]:
    return (rule.limit / _PERIOD_DAYS[rule.period], rule.limit)


def effective_limit(
    defaults: QuotaDefaults,
    *,
    server: LimitRule | None = None,
    user: LimitRule | None = None,
    roles: Iterable[LimitRule] = (),
) -> EffectiveLimit:
    """The limit that applies to one user.

    If the user has a user override or any role override, the most generous of those
    applies (images per day; a tie goes to the larger number, then to the user override),
    even when it is lower than the server default: overrides exist to set a user or role
    apart. Otherwise the server default applies, else the settings' default. An override
    without a period uses the server's period.
    """
    base_period = server.period if server and server.period else defaults.period
    candidates = [
        EffectiveLimit(rule.limit, rule.period or base_period, source)
        for source, rule in [(LimitSource.USER, user)]
        + [(LimitSource.ROLE, role) for role in roles]
        if rule is not None
    ]
    if candidates:
        return max(candidates, key=_generosity)  # max() keeps the first of equals
    if server is not None:
        return EffectiveLimit(server.limit, base_period, LimitSource.SERVER)
    return EffectiveLimit(defaults.default_limit, defaults.period, LimitSource.DEFAULT)


@dataclass(frozen=True)
class QuotaFacts:
    """What storage read for one user in one scope, at one instant.

    `used` and `bonus` hold, for each period, the images used (reserved minus refunded)
    and granted in the window of that period containing now; storage reads all three
    because which period applies is only known once the overrides are.
    """

    blocked: bool = False
    running: int = 0  # jobs submitting, running or delivering (any server)
    queued: int = 0  # jobs waiting to be submitted (any server)
    admin_exempt: bool = False  # the server exempts its admins from the user limit
    user_limit: LimitRule | None = None
    role_limits: tuple[LimitRule, ...] = ()
    server_default: LimitRule | None = None
    used: Mapping[Period, int] = field(default_factory=dict)
    bonus: Mapping[Period, int] = field(default_factory=dict)
    server_budget: int | None = None  # images per calendar month, whole server
    server_used: int = 0  # used by the whole server this calendar month


@dataclass(frozen=True)
class QuotaStatus:
    """A user's quota position, evaluated."""

    limit: EffectiveLimit
    window: Window
    used: int
    bonus: int
    exempt: bool
    blocked: bool

    @property
    def allowance(self) -> int | None:
        """Images allowed this period (limit plus grants); None when exempt."""
        return None if self.exempt else self.limit.limit + self.bonus

    @property
    def remaining(self) -> int | None:
        allowance = self.allowance
        return None if allowance is None else max(0, allowance - self.used)


def assess(
    facts: QuotaFacts, defaults: QuotaDefaults, *, is_admin: bool, now: float
) -> QuotaStatus:
    limit = effective_limit(
        defaults, server=facts.server_default, user=facts.user_limit, roles=facts.role_limits
    )
    return QuotaStatus(
        limit=limit,
        window=period_window(limit.period, now),
        used=facts.used.get(limit.period, 0),
        bonus=facts.bonus.get(limit.period, 0),
        exempt=facts.admin_exempt and is_admin,
        blocked=facts.blocked,
    )


def decide(
    facts: QuotaFacts, defaults: QuotaDefaults, *, images: int, is_admin: bool, now: float
) -> QuotaDenied | None:
    """None if `images` more may be generated now, else the reason (to raise).

    Checked in this order: blocked, the user's unfinished jobs, the user's limit
    (skipped for exempt admins), the server's monthly budget (applies to everyone:
    it is the owner's spending cap).
    """
    status = assess(facts, defaults, is_admin=is_admin, now=now)
    if status.blocked:
        return QuotaDenied(QuotaReason.BLOCKED, "blocked")
    denied = _check_jobs(facts, defaults)
    if denied is not None:
        return denied
    remaining = status.remaining
    if remaining is not None and images > remaining:
        return _user_limit_denied(status, images)
    budget = facts.server_budget
    if budget is not None and facts.server_used + images > budget:
        left = max(0, budget - facts.server_used)
        month_end = period_window(Period.MONTH, now).end
        return QuotaDenied(
            QuotaReason.SERVER_BUDGET,
            f"budget {budget}, {left} left, needs {images}",
            remaining=left,
            resets_at=month_end,
            facts=RefusalFacts(needed=images, budget=budget),
        )
    return None


def _check_jobs(facts: QuotaFacts, defaults: QuotaDefaults) -> QuotaDenied | None:
    # A user may have max_running jobs at the provider and max_queued more waiting
    # behind them; a new job waits first, so the cap is on the total.
    if facts.running + facts.queued < defaults.max_running + defaults.max_queued:
        return None
    shown = RefusalFacts(running=facts.running, queued=facts.queued)
    if facts.queued == 0:
        return QuotaDenied(QuotaReason.RUNNING_LIMIT, f"{facts.running} jobs running", facts=shown)
    return QuotaDenied(
        QuotaReason.QUEUED_LIMIT,
        f"{facts.running} jobs running, {facts.queued} waiting",
        facts=shown,
    )


def _user_limit_denied(status: QuotaStatus, images: int) -> QuotaDenied:
    allowance = status.allowance or 0
    remaining = status.remaining or 0
    return QuotaDenied(
        QuotaReason.USER_LIMIT,
        f"needs {images}, {remaining} of {allowance} left per {status.limit.period.value}",
        remaining=remaining,
        resets_at=status.window.end,
        facts=RefusalFacts(
            needed=images, allowance=allowance, used=status.used, period=status.limit.period
        ),
    )


def usage_report(
    facts: QuotaFacts,
    defaults: QuotaDefaults,
    *,
    guild_id: str,
    user_id: str,
    is_admin: bool,
    now: float,
    in_flight: int,
) -> UsageReport:
    """What /usage shows. `in_flight`: images reserved this period by unfinished jobs."""
    status = assess(facts, defaults, is_admin=is_admin, now=now)
    return UsageReport(
        guild_id=guild_id,
        user_id=user_id,
        period=status.limit.period,
        used=status.used,
        in_flight=in_flight,
        limit=status.allowance,
        bonus=status.bonus,
        remaining=status.remaining,
        resets_at=status.window.end,
        blocked=status.blocked,
        exempt=status.exempt,
        server_budget=facts.server_budget,
        server_used=facts.server_used,
    )


def format_duration(seconds: float) -> str:
    """'3 h 12 min', '2 d 5 h', '45 min' (rounded up to the minute, at least 1 min)."""
    minutes = max(1, math.ceil(seconds / 60))
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min"

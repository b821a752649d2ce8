"""The pure quota rules (bot/core/quota.py): periods, precedence, decisions, messages."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.chat.style import PlainStyle
from bot.chat.wording import quota_refusal
from bot.core.errors import QuotaDenied, QuotaReason
from bot.core.models import Period
from bot.core.quota import (
    DIRECT_SCOPE,
    LimitRule,
    LimitSource,
    QuotaDefaults,
    QuotaFacts,
    decide,
    effective_limit,
    format_duration,
    period_window,
    quota_scope,
    usage_report,
)
from bot.settings import Settings


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


# 2023-11-14 22:13:20 UTC, a Tuesday (FakeClock's default start).
NOW = 1_700_000_000.0
DEFAULTS = QuotaDefaults(default_limit=25, period=Period.DAY, max_running=2, max_queued=5)


def facts(**kwargs: object) -> QuotaFacts:
    return QuotaFacts(**kwargs)


def test_windows_are_utc_day_iso_week_and_calendar_month() -> None:
    day = period_window(Period.DAY, NOW)
    assert (day.start, day.end) == (ts(2023, 11, 14), ts(2023, 11, 15))
    week = period_window(Period.WEEK, NOW)
    assert (week.start, week.end) == (ts(2023, 11, 13), ts(2023, 11, 20))  # Monday to Monday
    month = period_window(Period.MONTH, NOW)
    assert (month.start, month.end) == (ts(2023, 11, 1), ts(2023, 12, 1))


def test_window_edges() -> None:
    # Midnight belongs to the new window; December rolls into the next year.
    assert period_window(Period.DAY, ts(2023, 11, 15)).start == ts(2023, 11, 15)
    assert period_window(Period.DAY, ts(2023, 11, 15) - 0.001).end == ts(2023, 11, 15)
    december = period_window(Period.MONTH, ts(2023, 12, 31, 23, 59))
    assert (december.start, december.end) == (ts(2023, 12, 1), ts(2024, 1, 1))
    sunday = period_window(Period.WEEK, ts(2023, 11, 19, 23, 0))
    assert sunday.start == ts(2023, 11, 13)
    monday = period_window(Period.WEEK, ts(2023, 11, 20))
    assert monday.start == ts(2023, 11, 20)
    leap = period_window(Period.MONTH, ts(2024, 2, 29, 12))
    assert leap.end == ts(2024, 3, 1)


def test_limit_precedence() -> None:
    default = effective_limit(DEFAULTS)
    assert (default.limit, default.period, default.source) == (25, Period.DAY, LimitSource.DEFAULT)

    server = LimitRule(10, Period.WEEK)
    assert effective_limit(DEFAULTS, server=server).source is LimitSource.SERVER

    # An override applies even when lower than the server default ...
    low_user = effective_limit(DEFAULTS, server=server, user=LimitRule(3))
    assert (low_user.limit, low_user.period, low_user.source) == (3, Period.WEEK, LimitSource.USER)
    # ... and among overrides the most generous wins.
    chosen = effective_limit(
        DEFAULTS, server=server, user=LimitRule(3), roles=[LimitRule(8), LimitRule(5)]
    )
    assert (chosen.limit, chosen.source) == (8, LimitSource.ROLE)
    chosen = effective_limit(DEFAULTS, user=LimitRule(9), roles=[LimitRule(8)])
    assert (chosen.limit, chosen.source) == (9, LimitSource.USER)
    # A tie goes to the user override.
    tie = effective_limit(DEFAULTS, user=LimitRule(8), roles=[LimitRule(8)])
    assert tie.source is LimitSource.USER


def test_generosity_compares_across_periods() -> None:
    # 5 a day (~150 a month) beats 100 a month; 10 a week (~1.4 a day) loses to 2 a day.
    chosen = effective_limit(
        DEFAULTS, user=LimitRule(5, Period.DAY), roles=[LimitRule(100, Period.MONTH)]
    )
    assert (chosen.limit, chosen.period) == (5, Period.DAY)
    chosen = effective_limit(
        DEFAULTS, user=LimitRule(10, Period.WEEK), roles=[LimitRule(2, Period.DAY)]
    )
    assert (chosen.limit, chosen.period) == (2, Period.DAY)
    # An override without a period takes the server's, else the settings'.
    assert effective_limit(DEFAULTS, user=LimitRule(4)).period is Period.DAY
    inherited = effective_limit(DEFAULTS, server=LimitRule(1, Period.MONTH), roles=[LimitRule(4)])
    assert inherited.period is Period.MONTH


def said(denied: QuotaDenied) -> str:
    """The refusal as users read it (one wording, bot/chat/wording.py)."""
    return quota_refusal(denied, PlainStyle(), NOW)


def test_decide_allows_within_limits() -> None:
    ok = decide(facts(used={Period.DAY: 24}), DEFAULTS, images=1, is_admin=False, now=NOW)
    assert ok is None


def test_user_limit_message_and_reset() -> None:
    denied = decide(facts(used={Period.DAY: 25}), DEFAULTS, images=1, is_admin=False, now=NOW)
    assert denied is not None
    assert denied.reason is QuotaReason.USER_LIMIT
    # 22:13:20 -> midnight is 1 h 46 min 40 s away, shown rounded up.
    assert said(denied) == "You have used 25 of 25 images today; more in 1 h 47 min."
    assert denied.remaining == 0
    assert denied.resets_at == ts(2023, 11, 15)


def test_user_limit_counts_the_whole_request_and_grants() -> None:
    denied = decide(facts(used={Period.DAY: 23}), DEFAULTS, images=4, is_admin=False, now=NOW)
    assert denied is not None and denied.reason is QuotaReason.USER_LIMIT
    assert said(denied).startswith("This needs 4 images but you have 2 of 25 left today; more in")
    assert denied.remaining == 2
    granted = facts(used={Period.DAY: 23}, bonus={Period.DAY: 2})
    assert decide(granted, DEFAULTS, images=4, is_admin=False, now=NOW) is None


def test_zero_limit_asks_for_a_grant() -> None:
    weekly_zero = facts(server_default=LimitRule(0, Period.WEEK))
    denied = decide(weekly_zero, DEFAULTS, images=1, is_admin=False, now=NOW)
    assert denied is not None
    assert said(denied) == "Your image limit here is 0 per week; an admin can grant you more."


def test_usage_is_counted_in_the_period_that_applies() -> None:
    monthly = facts(
        server_default=LimitRule(30, Period.MONTH),
        used={Period.DAY: 0, Period.WEEK: 5, Period.MONTH: 30},
    )
    denied = decide(monthly, DEFAULTS, images=1, is_admin=False, now=NOW)
    assert denied is not None
    assert said(denied).startswith("You have used 30 of 30 images this month; more in 16 d")


def test_blocked_comes_first() -> None:
    blocked = facts(blocked=True, running=9, used={Period.DAY: 99})
    denied = decide(blocked, DEFAULTS, images=1, is_admin=True, now=NOW)
    assert denied is not None and denied.reason is QuotaReason.BLOCKED
    assert said(denied) == "You are blocked from generating images here."


def test_running_and_queued_limits() -> None:
    no_queue = QuotaDefaults(max_running=2, max_queued=0)
    denied = decide(facts(running=2), no_queue, images=1, is_admin=False, now=NOW)
    assert denied is not None and denied.reason is QuotaReason.RUNNING_LIMIT
    assert said(denied) == "You already have 2 jobs running; wait for one to finish."
    assert decide(facts(running=1), no_queue, images=1, is_admin=False, now=NOW) is None

    # Two may run and five wait behind them: seven unfinished jobs at most.
    assert decide(facts(running=2, queued=4), DEFAULTS, images=1, is_admin=False, now=NOW) is None
    denied = decide(facts(running=2, queued=5), DEFAULTS, images=1, is_admin=False, now=NOW)
    assert denied is not None and denied.reason is QuotaReason.QUEUED_LIMIT
    assert said(denied) == "You already have 2 jobs running and 5 waiting; wait for one to finish."


def test_admin_exemption_skips_the_user_limit_only() -> None:
    spent = facts(admin_exempt=True, used={Period.DAY: 25})
    assert decide(spent, DEFAULTS, images=4, is_admin=True, now=NOW) is None
    assert decide(spent, DEFAULTS, images=1, is_admin=False, now=NOW) is not None
    not_exempt = facts(admin_exempt=False, used={Period.DAY: 25})
    assert decide(not_exempt, DEFAULTS, images=1, is_admin=True, now=NOW) is not None
    # The server budget is the owner's cap: it binds admins too.
    over_budget = facts(admin_exempt=True, server_budget=10, server_used=10)
    denied = decide(over_budget, DEFAULTS, images=1, is_admin=True, now=NOW)
    assert denied is not None and denied.reason is QuotaReason.SERVER_BUDGET


def test_server_budget_messages() -> None:
    denied = decide(
        facts(server_budget=100, server_used=100), DEFAULTS, images=1, is_admin=False, now=NOW
    )
    assert denied is not None and denied.reason is QuotaReason.SERVER_BUDGET
    assert said(denied).startswith(
        "This server's monthly image budget of 100 images is used up; more in"
    )
    assert denied.resets_at == ts(2023, 12, 1)
    denied = decide(
        facts(server_budget=100, server_used=98), DEFAULTS, images=4, is_admin=False, now=NOW
    )
    assert denied is not None and denied.remaining == 2
    assert "only 2 images left and this needs 4" in said(denied)
    ok = decide(
        facts(server_budget=100, server_used=96), DEFAULTS, images=4, is_admin=False, now=NOW
    )
    assert ok is None


def test_usage_report() -> None:
    report = usage_report(
        facts(
            user_limit=LimitRule(10, Period.WEEK),
            used={Period.WEEK: 7},
            bonus={Period.WEEK: 2},
            server_budget=500,
            server_used=120,
        ),
        DEFAULTS,
        guild_id="g",
        user_id="u",
        is_admin=False,
        now=NOW,
        in_flight=3,
    )
    assert report.period is Period.WEEK
    assert (report.used, report.in_flight, report.limit, report.bonus) == (7, 3, 12, 2)
    assert report.remaining == 5
    assert report.resets_at == ts(2023, 11, 20)
    assert (report.server_budget, report.server_used) == (500, 120)
    exempt = usage_report(
        facts(admin_exempt=True),
        DEFAULTS,
        guild_id="g",
        user_id="u",
        is_admin=True,
        now=NOW,
        in_flight=0,
    )
    assert exempt.exempt and exempt.limit is None and exempt.remaining is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "1 min"),
        (59, "1 min"),
        (61, "2 min"),
        (3600, "1 h"),
        (11_520, "3 h 12 min"),
        (86_400, "1 d"),
        (2 * 86_400 + 5 * 3600, "2 d 5 h"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_scope_and_defaults_from_settings() -> None:
    assert quota_scope(None) == DIRECT_SCOPE == "direct"
    assert quota_scope("123") == "123"
    settings = Settings(
        _env_file=None,
        default_user_limit=7,
        default_quota_period="week",
        max_running_jobs_per_user=3,
        max_queued_jobs_per_user=1,
    )
    assert QuotaDefaults.from_settings(settings) == QuotaDefaults(7, Period.WEEK, 3, 1)

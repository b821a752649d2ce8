"""Reads everything a quota decision needs in one SELECT.

Synchronous: it runs inside `Database.atomic()` units, on the connection's thread.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from bot.core.models import Period
from bot.core.quota import LimitRule, QuotaFacts, period_window

_PERIODS = (Period.DAY, Period.WEEK, Period.MONTH)
_RUNNING = "('submitting', 'running', 'delivering')"

# Scalar subqueries, each answered from a primary key or index. Usage and grants
# are summed for the day, week and month windows at once, since which period
# applies is only known from the overrides read alongside.
_FACTS_SQL = f"""
SELECT
    EXISTS (SELECT 1 FROM blocks WHERE guild_id = :g AND user_id = :u) AS blocked,
    (SELECT json_array(
            COALESCE(SUM(state IN {_RUNNING}), 0), COALESCE(SUM(state = 'queued'), 0))
        FROM jobs
        WHERE :count_jobs AND user_id = :u AND platform = :p
            AND state IN ('queued', 'submitting', 'running', 'delivering')) AS jobs,
    (SELECT json_extract(config, '$.admin_exempt') FROM guild_config WHERE guild_id = :g)
        AS admin_exempt,
    (SELECT json_group_array(json_array(scope, images_limit, period))
        FROM quota_limits
        WHERE guild_id = :g AND (
            (scope = 'server' AND subject_id = '')
            OR (scope = 'user' AND subject_id = :u)
            OR (scope = 'role' AND subject_id IN (SELECT value FROM json_each(:roles))))
    ) AS limits,
    (SELECT json_array(
            COALESCE(SUM(CASE WHEN day >= :d0 AND day < :d1 THEN used END), 0),
            COALESCE(SUM(CASE WHEN day >= :w0 AND day < :w1 THEN used END), 0),
            COALESCE(SUM(CASE WHEN day >= :m0 AND day < :m1 THEN used END), 0))
        FROM usage_daily
        WHERE guild_id = :g AND user_id = :u AND day >= :lo AND day < :hi) AS used,
    (SELECT json_array(
            COALESCE(SUM(CASE WHEN granted_at >= :d0 AND granted_at < :d1 THEN images END), 0),
            COALESCE(SUM(CASE WHEN granted_at >= :w0 AND granted_at < :w1 THEN images END), 0),
            COALESCE(SUM(CASE WHEN granted_at >= :m0 AND granted_at < :m1 THEN images END), 0))
        FROM grants
        WHERE guild_id = :g AND user_id = :u AND granted_at >= :lo AND granted_at < :hi)
        AS bonus,
    (SELECT monthly_images FROM server_budgets WHERE guild_id = :g) AS budget,
    (SELECT COALESCE(SUM(used), 0) FROM guild_daily
        WHERE guild_id = :g AND day >= :m0 AND day < :m1) AS server_used
"""


def read_facts(
    conn: sqlite3.Connection,
    *,
    scope: str,
    user_id: str,
    role_ids: Sequence[str],
    now: float,
    platform: str | None = None,
) -> QuotaFacts:
    """The facts for `user_id` in `scope`. Job counts only when `platform` is given
    (a user's running and queued jobs are counted across servers)."""
    windows = [period_window(period, now) for period in _PERIODS]
    day, week, month = windows
    params = {
        "g": scope,
        "u": user_id,
        "p": platform or "",
        "count_jobs": platform is not None,
        "roles": json.dumps(list(role_ids)),
        "d0": day.start,
        "d1": day.end,
        "w0": week.start,
        "w1": week.end,
        "m0": month.start,
        "m1": month.end,
        "lo": min(w.start for w in windows),
        "hi": max(w.end for w in windows),
    }
    row = conn.execute(_FACTS_SQL, params).fetchone()
    running, queued = json.loads(row["jobs"])
    user_limit: LimitRule | None = None
    server_default: LimitRule | None = None
    role_limits: list[LimitRule] = []
    for scope_kind, limit, period in json.loads(row["limits"]):
        rule = LimitRule(int(limit), Period(period) if period else None)
        if scope_kind == "user":
            user_limit = rule
        elif scope_kind == "role":
            role_limits.append(rule)
        else:
            server_default = rule
    return QuotaFacts(
        blocked=bool(row["blocked"]),
        running=int(running),
        queued=int(queued),
        admin_exempt=bool(row["admin_exempt"]),
        user_limit=user_limit,
        role_limits=tuple(role_limits),
        server_default=server_default,
        used=dict(zip(_PERIODS, map(int, json.loads(row["used"])), strict=True)),
        bonus=dict(zip(_PERIODS, map(int, json.loads(row["bonus"])), strict=True)),
        server_budget=None if row["budget"] is None else int(row["budget"]),
        server_used=int(row["server_used"]),
    )

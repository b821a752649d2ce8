"""Reads everything a quota decision needs in one SELECT (PostgreSQL dialect of
storage/quota_facts.py; the decision itself is bot/core/quota.py's, shared)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import asyncpg

from bot.core.models import Period
from bot.core.quota import LimitRule, QuotaFacts, period_window

_PERIODS = (Period.DAY, Period.WEEK, Period.MONTH)
_RUNNING = "('submitting', 'running', 'delivering')"

# $1 scope, $2 user, $3 platform (NULL: do not count jobs), $4 role ids,
# $5..$10 day/week/month window bounds, $11/$12 the span of all three.
_FACTS_SQL = f"""
SELECT
    EXISTS (SELECT 1 FROM blocks WHERE guild_id = $1 AND user_id = $2) AS blocked,
    (SELECT ARRAY[
            COUNT(*) FILTER (WHERE state IN {_RUNNING}),
            COUNT(*) FILTER (WHERE state = 'queued')]
        FROM jobs
        WHERE $3::text IS NOT NULL AND user_id = $2 AND platform = $3
            AND state IN ('queued', 'submitting', 'running', 'delivering')) AS jobs,
    (SELECT (config::jsonb ->> 'admin_exempt')::boolean FROM guild_config WHERE guild_id = $1)
        AS admin_exempt,
    (SELECT COALESCE(json_agg(json_build_array(scope, images_limit, period)), '[]')
        FROM quota_limits
        WHERE guild_id = $1 AND (
            (scope = 'server' AND subject_id = '')
            OR (scope = 'user' AND subject_id = $2)
            OR (scope = 'role' AND subject_id = ANY($4::text[])))
    ) AS limits,
    (SELECT ARRAY[
            COALESCE(SUM(used) FILTER (WHERE day >= $5 AND day < $6), 0),
            COALESCE(SUM(used) FILTER (WHERE day >= $7 AND day < $8), 0),
            COALESCE(SUM(used) FILTER (WHERE day >= $9 AND day < $10), 0)]
        FROM usage_daily
        WHERE guild_id = $1 AND user_id = $2 AND day >= $11 AND day < $12) AS used,
    (SELECT ARRAY[
            COALESCE(SUM(images) FILTER (WHERE granted_at >= $5 AND granted_at < $6), 0),
            COALESCE(SUM(images) FILTER (WHERE granted_at >= $7 AND granted_at < $8), 0),
            COALESCE(SUM(images) FILTER (WHERE granted_at >= $9 AND granted_at < $10), 0)]
        FROM grants
        WHERE guild_id = $1 AND user_id = $2 AND granted_at >= $11 AND granted_at < $12)
        AS bonus,
    (SELECT monthly_images FROM server_budgets WHERE guild_id = $1) AS budget,
    (SELECT COALESCE(SUM(used), 0) FROM guild_daily
        WHERE guild_id = $1 AND day >= $9 AND day < $10) AS server_used
"""


async def read_facts(
    conn: asyncpg.Connection,
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
    bounds: list[int] = []
    for window in windows:
        bounds += [int(window.start), int(window.end)]  # UTC midnights: whole seconds
    row = await conn.fetchrow(
        _FACTS_SQL,
        scope,
        user_id,
        platform,
        list(role_ids),
        *bounds,
        min(bounds[0::2]),
        max(bounds[1::2]),
    )
    assert row is not None
    running, queued = row["jobs"]
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
        used=dict(zip(_PERIODS, map(int, row["used"]), strict=True)),
        bonus=dict(zip(_PERIODS, map(int, row["bonus"]), strict=True)),
        server_budget=None if row["budget"] is None else int(row["budget"]),
        server_used=int(row["server_used"]),
    )

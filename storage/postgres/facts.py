"""Reads everything a quota decision needs in one SELECT (PostgreSQL dialect of
storage/sqlite/quota_facts.py; the decision itself is bot/core/quota.py's, shared)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import asyncpg

from bot.core.models import Space
from bot.core.quota import QuotaFacts, period_window
from storage.quota_rows import PERIODS, RUNNING_SQL, quota_facts

# $1 space id, $2 user, $3 the space's platform, $4 role ids, $5..$10 day/week/month
# window bounds, $11/$12 the span of all three, $13 whether to count the user's jobs.
_FACTS_SQL = f"""
SELECT
    EXISTS (SELECT 1 FROM blocks WHERE platform = $3 AND guild_id = $1 AND user_id = $2)
        AS blocked,
    (SELECT ARRAY[
            COUNT(*) FILTER (WHERE state IN {RUNNING_SQL}),
            COUNT(*) FILTER (WHERE state = 'queued')]
        FROM jobs
        WHERE $13::boolean AND user_id = $2 AND platform = $3
            AND state IN ('queued', 'submitting', 'running', 'delivering')) AS jobs,
    (SELECT (config::jsonb ->> 'admin_exempt')::boolean FROM guild_config
        WHERE platform = $3 AND guild_id = $1)
        AS admin_exempt,
    (SELECT COALESCE(json_agg(json_build_array(scope, images_limit, period)), '[]')
        FROM quota_limits
        WHERE platform = $3 AND guild_id = $1 AND (
            (scope = 'server' AND subject_id = '')
            OR (scope = 'user' AND subject_id = $2)
            OR (scope = 'role' AND subject_id = ANY($4::text[])))
    ) AS limits,
    (SELECT ARRAY[
            COALESCE(SUM(used) FILTER (WHERE day >= $5 AND day < $6), 0),
            COALESCE(SUM(used) FILTER (WHERE day >= $7 AND day < $8), 0),
            COALESCE(SUM(used) FILTER (WHERE day >= $9 AND day < $10), 0)]
        FROM usage_daily
        WHERE platform = $3 AND guild_id = $1 AND user_id = $2 AND day >= $11 AND day < $12)
        AS used,
    (SELECT ARRAY[
            COALESCE(SUM(images) FILTER (WHERE granted_at >= $5 AND granted_at < $6), 0),
            COALESCE(SUM(images) FILTER (WHERE granted_at >= $7 AND granted_at < $8), 0),
            COALESCE(SUM(images) FILTER (WHERE granted_at >= $9 AND granted_at < $10), 0)]
        FROM grants
        WHERE platform = $3 AND guild_id = $1 AND user_id = $2
            AND granted_at >= $11 AND granted_at < $12)
        AS bonus,
    (SELECT monthly_images FROM server_budgets WHERE platform = $3 AND guild_id = $1)
        AS budget,
    (SELECT COALESCE(SUM(used), 0) FROM guild_daily
        WHERE platform = $3 AND guild_id = $1 AND day >= $9 AND day < $10) AS server_used
"""


async def read_facts(
    conn: asyncpg.Connection,
    *,
    space: Space,
    user_id: str,
    role_ids: Sequence[str],
    now: float,
    count_jobs: bool = False,
) -> QuotaFacts:
    """The facts for `user_id` in `space`. Job counts only with `count_jobs` (a user's
    running and queued jobs are counted across the servers of the space's platform)."""
    windows = [period_window(period, now) for period in PERIODS]
    bounds: list[int] = []
    for window in windows:
        bounds += [int(window.start), int(window.end)]  # UTC midnights: whole seconds
    row = await conn.fetchrow(
        _FACTS_SQL,
        space.id,
        user_id,
        space.platform,
        list(role_ids),
        *bounds,
        min(bounds[0::2]),
        max(bounds[1::2]),
        count_jobs,
    )
    assert row is not None
    return quota_facts(
        blocked=row["blocked"],
        jobs=row["jobs"],
        admin_exempt=row["admin_exempt"],
        limits=json.loads(row["limits"]),
        used=row["used"],
        bonus=row["bonus"],
        budget=row["budget"],
        server_used=row["server_used"],
    )

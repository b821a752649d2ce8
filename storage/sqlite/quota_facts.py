"""Reads everything a quota decision needs in one SELECT.

Synchronous: it runs inside `Database.atomic()` units, on the connection's thread.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from bot.core.models import Space
from bot.core.quota import QuotaFacts, period_window
from storage.quota_rows import PERIODS, RUNNING_SQL, quota_facts

# Scalar subqueries, each answered from a primary key or index. Usage and grants
# are summed for the day, week and month windows at once, since which period
# applies is only known from the overrides read alongside.
_FACTS_SQL = f"""
SELECT
    EXISTS (SELECT 1 FROM blocks WHERE platform = :p AND guild_id = :g AND user_id = :u)
        AS blocked,
    (SELECT json_array(
            COALESCE(SUM(state IN {RUNNING_SQL}), 0), COALESCE(SUM(state = 'queued'), 0))
        FROM jobs
        WHERE :count_jobs AND user_id = :u AND platform = :p
            AND state IN ('queued', 'submitting', 'running', 'delivering')) AS jobs,
    (SELECT json_extract(config, '$.admin_exempt') FROM guild_config
        WHERE platform = :p AND guild_id = :g)
        AS admin_exempt,
    (SELECT json_group_array(json_array(scope, images_limit, period))
        FROM quota_limits
        WHERE platform = :p AND guild_id = :g AND (
            (scope = 'server' AND subject_id = '')
            OR (scope = 'user' AND subject_id = :u)
            OR (scope = 'role' AND subject_id IN (SELECT value FROM json_each(:roles))))
    ) AS limits,
    (SELECT json_array(
            COALESCE(SUM(CASE WHEN day >= :d0 AND day < :d1 THEN used END), 0),
            COALESCE(SUM(CASE WHEN day >= :w0 AND day < :w1 THEN used END), 0),
            COALESCE(SUM(CASE WHEN day >= :m0 AND day < :m1 THEN used END), 0))
        FROM usage_daily
        WHERE platform = :p AND guild_id = :g AND user_id = :u AND day >= :lo AND day < :hi)
        AS used,
    (SELECT json_array(
            COALESCE(SUM(CASE WHEN granted_at >= :d0 AND granted_at < :d1 THEN images END), 0),
            COALESCE(SUM(CASE WHEN granted_at >= :w0 AND granted_at < :w1 THEN images END), 0),
            COALESCE(SUM(CASE WHEN granted_at >= :m0 AND granted_at < :m1 THEN images END), 0))
        FROM grants
        WHERE platform = :p AND guild_id = :g AND user_id = :u
            AND granted_at >= :lo AND granted_at < :hi)
        AS bonus,
    (SELECT monthly_images FROM server_budgets WHERE platform = :p AND guild_id = :g) AS budget,
    (SELECT COALESCE(SUM(used), 0) FROM guild_daily
        WHERE platform = :p AND guild_id = :g AND day >= :m0 AND day < :m1) AS server_used
"""


def read_facts(
    conn: sqlite3.Connection,
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
    day, week, month = windows
    params = {
        "g": space.id,
        "u": user_id,
        "p": space.platform,
        "count_jobs": count_jobs,
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
    return quota_facts(
        blocked=row["blocked"],
        jobs=json.loads(row["jobs"]),
        admin_exempt=row["admin_exempt"],
        limits=json.loads(row["limits"]),
        used=json.loads(row["used"]),
        bonus=json.loads(row["bonus"]),
        budget=row["budget"],
        server_used=row["server_used"],
    )

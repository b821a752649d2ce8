"""Quota settings and reports as rows, the same for every backend: argument checks,
the facts of a quota decision from what a store read, and the server report from its
per-user and per-day sums. Pure: no connection, no SQL dialect (the SQL is in each
backend's adapter; the rules themselves are bot/core/quota.py's).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from bot.core.errors import ValidationFailed
from bot.core.models import DayUsage, GuildConfig, Period, ServerReport, Space, UsageRow
from bot.core.quota import LimitRule, QuotaFacts

# The windows a facts query sums usage and grants over, in this order.
PERIODS = (Period.DAY, Period.WEEK, Period.MONTH)
# The states that count as running (beside 'queued') in a user's job counts.
RUNNING_SQL = "('submitting', 'running', 'delivering')"
SERVER_SUBJECT = ""  # quota_limits.subject_id of a server default


def check_count(what: str, value: int) -> None:
    if value < 0:
        raise ValidationFailed([f"{what} cannot be negative (got {value})"])


def check_grant(images: int) -> None:
    if images < 1:
        raise ValidationFailed(["a grant must be at least 1 image"])


def period_value(period: Period | None) -> str | None:
    """quota_limits.period: None where the limit follows the server's period."""
    return Period(period).value if period else None


def guild_config(space: Space, stored: str | None) -> GuildConfig:
    """A space's config from guild_config.config (JSON), or the defaults. The row's key
    says whose it is (JSON written before migration 0007 has no platform)."""
    if stored is None:
        return GuildConfig(guild_id=space.id, platform=space.platform)
    config = GuildConfig.model_validate_json(stored)
    return config.model_copy(update={"guild_id": space.id, "platform": space.platform})


def quota_facts(
    *,
    blocked: Any,
    jobs: Sequence[Any],
    admin_exempt: Any,
    limits: Iterable[Sequence[Any]],
    used: Iterable[Any],
    bonus: Iterable[Any],
    budget: Any,
    server_used: Any,
) -> QuotaFacts:
    """QuotaFacts from the decoded columns of a facts query: `jobs` is (running,
    queued); `limits` (scope, images_limit, period) rows; `used` and `bonus` one sum
    per PERIODS window."""
    running, queued = jobs
    user_limit: LimitRule | None = None
    server_default: LimitRule | None = None
    role_limits: list[LimitRule] = []
    for scope_kind, limit, period in limits:
        rule = LimitRule(int(limit), Period(period) if period else None)
        if scope_kind == "user":
            user_limit = rule
        elif scope_kind == "role":
            role_limits.append(rule)
        else:
            server_default = rule
    return QuotaFacts(
        blocked=bool(blocked),
        running=int(running),
        queued=int(queued),
        admin_exempt=bool(admin_exempt),
        user_limit=user_limit,
        role_limits=tuple(role_limits),
        server_default=server_default,
        used=dict(zip(PERIODS, map(int, used), strict=True)),
        bonus=dict(zip(PERIODS, map(int, bonus), strict=True)),
        server_budget=None if budget is None else int(budget),
        server_used=int(server_used),
    )


def server_report(
    guild_id: str,
    *,
    period_start: float,
    users: Iterable[Any],
    days: Iterable[Any],
    budget: int | None,
    price_per_image_usd: float,
) -> ServerReport:
    """The report from the ledger's sums per user (user_id, images, priced, unpriced)
    and per UTC day (day, images, priced, unpriced): `priced` at the prices stored
    with each charge, `unpriced` images costed at `price_per_image_usd`. Rows are
    read by column name (sqlite3.Row and asyncpg.Record alike)."""

    def cost(row: Any) -> float:
        return float(row["priced"]) + int(row["unpriced"]) * price_per_image_usd

    user_rows = list(users)
    costs = {row["user_id"]: cost(row) for row in user_rows}
    usage = [
        UsageRow(
            user_id=row["user_id"],
            images=int(row["images"]),
            cost_usd=round(costs[row["user_id"]], 4),
        )
        for row in user_rows
    ]
    return ServerReport(
        guild_id=guild_id,
        period_start=period_start,
        images=sum(user.images for user in usage),
        cost_usd=round(sum(costs.values()), 4),
        budget=budget,
        users=usage,
        days=[
            DayUsage(day=float(row["day"]), images=int(row["images"]), cost_usd=round(cost(row), 4))
            for row in days
        ],
    )


class LimitShortcuts:
    """The QuotaAdmin limit commands, each one row of quota_limits: a backend
    implements `_set_limit` and `_clear_limit`."""

    async def _set_limit(
        self, space: Space, scope: str, subject_id: str, limit: int, period: Period | None
    ) -> None:
        raise NotImplementedError

    async def _clear_limit(self, space: Space, scope: str, subject_id: str) -> None:
        raise NotImplementedError

    async def set_user_limit(
        self, space: Space, user_id: str, limit: int, period: Period | None = None
    ) -> None:
        await self._set_limit(space, "user", user_id, limit, period)

    async def clear_user_limit(self, space: Space, user_id: str) -> None:
        await self._clear_limit(space, "user", user_id)

    async def set_role_limit(
        self, space: Space, role_id: str, limit: int, period: Period | None = None
    ) -> None:
        await self._set_limit(space, "role", role_id, limit, period)

    async def clear_role_limit(self, space: Space, role_id: str) -> None:
        await self._clear_limit(space, "role", role_id)

    async def set_server_default(self, space: Space, limit: int, period: Period) -> None:
        await self._set_limit(space, "server", SERVER_SUBJECT, limit, period)

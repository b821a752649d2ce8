"""Quota administration in SQLite (implements `bot.core.ports.QuotaAdmin`).

The rules themselves are in bot/core/quota.py; this module stores settings and
reads usage. A user's job history is `JobStore.user_jobs`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from bot.core.clock import Clock
from bot.core.models import (
    ACTIVE_STATES,
    GuildConfig,
    Period,
    ServerReport,
    Space,
    UsageReport,
)
from bot.core.quota import QuotaDefaults, assess, period_window, usage_report
from storage.quota_rows import (
    LimitShortcuts,
    check_count,
    check_grant,
    guild_config,
    period_value,
    server_report,
)
from storage.sqlite.db import Database
from storage.sqlite.quota_facts import read_facts

_ACTIVE = ", ".join(repr(state.value) for state in ACTIVE_STATES)


class SqliteQuotaAdmin(LimitShortcuts):
    def __init__(
        self,
        db: Database,
        clock: Clock,
        defaults: QuotaDefaults,
        price_per_image_usd: float,
    ) -> None:
        self._db = db
        self._clock = clock
        self._defaults = defaults
        self._price = price_per_image_usd

    async def usage(
        self, space: Space, user_id: str, role_ids: Sequence[str] = (), is_admin: bool = False
    ) -> UsageReport:
        now = self._clock.now()

        # One unit, so that `used` and `in_flight` agree with each other.
        def read(conn: sqlite3.Connection) -> UsageReport:
            facts = read_facts(conn, space=space, user_id=user_id, role_ids=role_ids, now=now)
            window = assess(facts, self._defaults, is_admin=is_admin, now=now).window
            in_flight = conn.execute(
                "SELECT COALESCE(SUM(reserved), 0) FROM jobs "
                f"WHERE user_id = ? AND platform = ? AND scope_id = ? AND state IN ({_ACTIVE}) "
                "AND admitted_at >= ? AND admitted_at < ?",
                (user_id, space.platform, space.id, window.start, window.end),
            ).fetchone()[0]
            return usage_report(
                facts,
                self._defaults,
                guild_id=space.id,
                user_id=user_id,
                is_admin=is_admin,
                now=now,
                in_flight=int(in_flight),
            )

        return await self._db.atomic(read)

    async def set_server_budget(self, space: Space, monthly_images: int | None) -> None:
        """Images per calendar month for the whole server; None removes the budget."""
        if monthly_images is None:
            await self._db.fetchall(
                "DELETE FROM server_budgets WHERE platform = ? AND guild_id = ?",
                (space.platform, space.id),
            )
            return
        check_count("the monthly budget", monthly_images)
        await self._db.fetchall(
            "INSERT INTO server_budgets (platform, guild_id, monthly_images, updated_at) "
            "VALUES (?, ?, ?, ?) "
            "ON CONFLICT (platform, guild_id) DO UPDATE SET "
            "monthly_images = excluded.monthly_images, updated_at = excluded.updated_at",
            (space.platform, space.id, monthly_images, self._clock.now()),
        )

    async def grant(self, space: Space, user_id: str, images: int, granted_by: str) -> None:
        """Extra images for the user's current period (whatever period applies when
        they are used: a grant counts in the window containing the moment it was made)."""
        check_grant(images)
        await self._db.fetchall(
            "INSERT INTO grants (platform, guild_id, user_id, images, granted_by, granted_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (space.platform, space.id, user_id, images, granted_by, self._clock.now()),
        )

    async def block(self, space: Space, user_id: str, reason: str | None = None) -> None:
        await self._db.fetchall(
            "INSERT INTO blocks (platform, guild_id, user_id, reason, blocked_at) "
            "VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (platform, guild_id, user_id) DO UPDATE SET reason = excluded.reason",
            (space.platform, space.id, user_id, reason, self._clock.now()),
        )

    async def unblock(self, space: Space, user_id: str) -> None:
        await self._db.fetchall(
            "DELETE FROM blocks WHERE platform = ? AND guild_id = ? AND user_id = ?",
            (space.platform, space.id, user_id),
        )

    async def server_report(self, space: Space) -> ServerReport:
        """Images charged (delivered) this calendar month, per user, with their cost.
        Images of jobs still in flight are not in it until they are delivered.

        Costs are the prices stored with each charge (migration 0003), so a price change
        never rewrites the past; charges settled before that migration have no stored
        price and are costed at the configured one."""
        month = period_window(Period.MONTH, self._clock.now())
        rows = await self._db.fetchall(
            "SELECT user_id, SUM(images) AS images, "
            "COALESCE(SUM(images * unit_price_usd), 0) AS priced, "
            "COALESCE(SUM(CASE WHEN unit_price_usd IS NULL THEN images END), 0) AS unpriced "
            "FROM ledger WHERE platform = ? AND guild_id = ? AND kind = 'charge' "
            "AND period_ts >= ? AND period_ts < ? "
            "GROUP BY user_id HAVING SUM(images) > 0 ORDER BY images DESC, user_id",
            (space.platform, space.id, month.start, month.end),
        )
        by_day = await self._db.fetchall(
            # UTC days, as quota periods count them; the same stored prices as above.
            "SELECT CAST(period_ts / 86400 AS INTEGER) * 86400 AS day, SUM(images) AS images, "
            "COALESCE(SUM(images * unit_price_usd), 0) AS priced, "
            "COALESCE(SUM(CASE WHEN unit_price_usd IS NULL THEN images END), 0) AS unpriced "
            "FROM ledger WHERE platform = ? AND guild_id = ? AND kind = 'charge' "
            "AND period_ts >= ? AND period_ts < ? "
            "GROUP BY day HAVING SUM(images) > 0 ORDER BY day",
            (space.platform, space.id, month.start, month.end),
        )
        budget = await self._db.fetchone(
            "SELECT monthly_images FROM server_budgets WHERE platform = ? AND guild_id = ?",
            (space.platform, space.id),
        )
        return server_report(
            space.id,
            period_start=month.start,
            users=rows,
            days=by_day,
            budget=budget[0] if budget else None,
            price_per_image_usd=self._price,
        )

    async def guild_config(self, space: Space) -> GuildConfig:
        row = await self._db.fetchone(
            "SELECT config FROM guild_config WHERE platform = ? AND guild_id = ?",
            (space.platform, space.id),
        )
        return guild_config(space, row[0] if row else None)

    async def set_guild_config(self, config: GuildConfig) -> None:
        await self._db.fetchall(
            "INSERT INTO guild_config (platform, guild_id, config, updated_at) "
            "VALUES (?, ?, ?, ?) "
            "ON CONFLICT (platform, guild_id) DO UPDATE SET config = excluded.config, "
            "updated_at = excluded.updated_at",
            (config.platform, config.guild_id, config.model_dump_json(), self._clock.now()),
        )

    async def _set_limit(
        self, space: Space, scope: str, subject_id: str, limit: int, period: Period | None
    ) -> None:
        check_count("a limit", limit)
        await self._db.fetchall(
            "INSERT INTO quota_limits (platform, guild_id, scope, subject_id, images_limit, "
            "period, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (platform, guild_id, scope, subject_id) DO UPDATE SET "
            "images_limit = excluded.images_limit, period = excluded.period, "
            "updated_at = excluded.updated_at",
            (
                space.platform,
                space.id,
                scope,
                subject_id,
                limit,
                period_value(period),
                self._clock.now(),
            ),
        )

    async def _clear_limit(self, space: Space, scope: str, subject_id: str) -> None:
        await self._db.fetchall(
            "DELETE FROM quota_limits "
            "WHERE platform = ? AND guild_id = ? AND scope = ? AND subject_id = ?",
            (space.platform, space.id, scope, subject_id),
        )

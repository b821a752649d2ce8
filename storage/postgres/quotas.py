"""Quota administration in PostgreSQL (implements `bot.core.ports.QuotaAdmin`).

The PostgreSQL twin of storage/sqlite/quotas.py: the rules are bot/core/quota.py's, this
module stores settings and reads usage.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.core.clock import Clock
from bot.core.models import (
    GuildConfig,
    Period,
    ServerReport,
    Space,
    UsageReport,
)
from bot.core.quota import QuotaDefaults, assess, period_window, usage_report
from storage.job_rows import ACTIVE_STATES_SQL
from storage.postgres.db import PgDatabase
from storage.postgres.facts import read_facts
from storage.postgres.jobs import SCOPE_LOCK, space_key
from storage.quota_rows import (
    LimitShortcuts,
    check_count,
    check_grant,
    guild_config,
    period_value,
    server_report,
)


class PostgresQuotaAdmin(LimitShortcuts):
    def __init__(
        self,
        db: PgDatabase,
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
        # One snapshot for both reads, so that `used` and `in_flight` agree.
        async with self._db.transaction(isolation="repeatable_read", readonly=True) as conn:
            facts = await read_facts(conn, space=space, user_id=user_id, role_ids=role_ids, now=now)
            window = assess(facts, self._defaults, is_admin=is_admin, now=now).window
            in_flight = await conn.fetchval(
                # The literal state list: the partial index jobs_user_state (0006).
                "SELECT COALESCE(SUM(reserved), 0) FROM jobs "
                f"WHERE user_id = $1 AND platform = $2 AND scope_id = $3 "
                f"AND state IN {ACTIVE_STATES_SQL} AND admitted_at >= $4 AND admitted_at < $5",
                user_id,
                space.platform,
                space.id,
                window.start,
                window.end,
            )
        return usage_report(
            facts,
            self._defaults,
            guild_id=space.id,
            user_id=user_id,
            is_admin=is_admin,
            now=now,
            in_flight=int(in_flight),
        )

    async def set_server_budget(self, space: Space, monthly_images: int | None) -> None:
        """Images per calendar month for the whole server; None removes the budget.

        Holds the server's quota lock exclusively (see storage/postgres/jobs.py): admits
        that saw no budget share that lock, so they commit before a new budget does."""
        if monthly_images is not None:
            check_count("the monthly budget", monthly_images)
        async with self._db.transaction() as conn:
            await conn.execute(SCOPE_LOCK, space_key(space))
            if monthly_images is None:
                await conn.execute(
                    "DELETE FROM server_budgets WHERE platform = $1 AND guild_id = $2",
                    space.platform,
                    space.id,
                )
                return
            await conn.execute(
                "INSERT INTO server_budgets (platform, guild_id, monthly_images, updated_at) "
                "VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (platform, guild_id) DO UPDATE SET "
                "monthly_images = excluded.monthly_images, updated_at = excluded.updated_at",
                space.platform,
                space.id,
                monthly_images,
                self._clock.now(),
            )

    async def grant(self, space: Space, user_id: str, images: int, granted_by: str) -> None:
        """Extra images for the user's current period (a grant counts in the window
        containing the moment it was made)."""
        check_grant(images)
        await self._db.execute(
            "INSERT INTO grants (platform, guild_id, user_id, images, granted_by, granted_at) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            space.platform,
            space.id,
            user_id,
            images,
            granted_by,
            self._clock.now(),
        )

    async def block(self, space: Space, user_id: str, reason: str | None = None) -> None:
        await self._db.execute(
            "INSERT INTO blocks (platform, guild_id, user_id, reason, blocked_at) "
            "VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (platform, guild_id, user_id) DO UPDATE SET reason = excluded.reason",
            space.platform,
            space.id,
            user_id,
            reason,
            self._clock.now(),
        )

    async def unblock(self, space: Space, user_id: str) -> None:
        await self._db.execute(
            "DELETE FROM blocks WHERE platform = $1 AND guild_id = $2 AND user_id = $3",
            space.platform,
            space.id,
            user_id,
        )

    async def server_report(self, space: Space) -> ServerReport:
        """Images charged (delivered) this calendar month, per user and per UTC day, with
        their cost: the prices stored with each charge (migration 0003); charges without
        a stored price are costed at the configured one. In-flight jobs are not in it."""
        month = period_window(Period.MONTH, self._clock.now())
        sums = (
            "SUM(images) AS images, "
            "COALESCE(SUM(images * unit_price_usd), 0) AS priced, "
            "COALESCE(SUM(images) FILTER (WHERE unit_price_usd IS NULL), 0) AS unpriced "
            "FROM ledger WHERE platform = $1 AND guild_id = $2 AND kind = 'charge' "
            "AND period_ts >= $3 AND period_ts < $4"
        )
        rows = await self._db.fetch(
            f"SELECT user_id, {sums} "
            "GROUP BY user_id HAVING SUM(images) > 0 ORDER BY images DESC, user_id",
            space.platform,
            space.id,
            month.start,
            month.end,
        )
        by_day = await self._db.fetch(
            f"SELECT floor(period_ts / 86400)::bigint * 86400 AS day, {sums} "
            "GROUP BY day HAVING SUM(images) > 0 ORDER BY day",
            space.platform,
            space.id,
            month.start,
            month.end,
        )
        budget = await self._db.fetchval(
            "SELECT monthly_images FROM server_budgets WHERE platform = $1 AND guild_id = $2",
            space.platform,
            space.id,
        )
        return server_report(
            space.id,
            period_start=month.start,
            users=rows,
            days=by_day,
            budget=budget,
            price_per_image_usd=self._price,
        )

    async def guild_config(self, space: Space) -> GuildConfig:
        config = await self._db.fetchval(
            "SELECT config FROM guild_config WHERE platform = $1 AND guild_id = $2",
            space.platform,
            space.id,
        )
        return guild_config(space, config)

    async def set_guild_config(self, config: GuildConfig) -> None:
        await self._db.execute(
            "INSERT INTO guild_config (platform, guild_id, config, updated_at) "
            "VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (platform, guild_id) DO UPDATE SET config = excluded.config, "
            "updated_at = excluded.updated_at",
            config.platform,
            config.guild_id,
            config.model_dump_json(),
            self._clock.now(),
        )

    async def _set_limit(
        self, space: Space, scope: str, subject_id: str, limit: int, period: Period | None
    ) -> None:
        check_count("a limit", limit)
        await self._db.execute(
            "INSERT INTO quota_limits (platform, guild_id, scope, subject_id, images_limit, "
            "period, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) "
            "ON CONFLICT (platform, guild_id, scope, subject_id) DO UPDATE SET "
            "images_limit = excluded.images_limit, period = excluded.period, "
            "updated_at = excluded.updated_at",
            space.platform,
            space.id,
            scope,
            subject_id,
            limit,
            period_value(period),
            self._clock.now(),
        )

    async def _clear_limit(self, space: Space, scope: str, subject_id: str) -> None:
        await self._db.execute(
            "DELETE FROM quota_limits "
            "WHERE platform = $1 AND guild_id = $2 AND scope = $3 AND subject_id = $4",
            space.platform,
            space.id,
            scope,
            subject_id,
        )

"""`wanbot doctor`'s database check when DATABASE_URL selects PostgreSQL.

Reads only, as for SQLite: one connection, never migrated, the one-bot lock not taken.
The URL is shown without its password.
"""

from __future__ import annotations

import asyncpg

from bot.ops.doctor.checks import Check, fail, ok
from storage.postgres.db import SCHEMA_TABLE, load_pg_migrations, redact_url
from storage.postgres.ops import bot_holding

_TIMEOUT = 10.0
_WORKERS_VERSION = 9  # the migration that added the workers table


async def check_postgres(url: str) -> Check:
    shown = redact_url(url)
    latest = len(load_pg_migrations())
    try:
        conn = await asyncpg.connect(url, timeout=_TIMEOUT)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return fail(
            "database",
            f"cannot connect to {shown}: {exc}",
            "check DATABASE_URL (host, port, database, user, password) and that the "
            "PostgreSQL server is running and accepts this host",
        )
    try:
        migrated = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", SCHEMA_TABLE)
        version = 0
        if migrated:
            version = int(
                await conn.fetchval(f"SELECT COALESCE(MAX(version), 0) FROM {SCHEMA_TABLE}")
            )
        if version > latest:
            return fail(
                "database",
                f"{shown} has schema version {version}, newer than this wanbot knows ({latest})",
                "upgrade wanbot, or point DATABASE_URL at another database",
            )
        # A start migrates (needs CREATE) and then writes jobs.
        can_write = await conn.fetchval(
            "SELECT CASE WHEN to_regclass('jobs') IS NULL "
            "THEN has_database_privilege(current_database(), 'CREATE') "
            "ELSE has_table_privilege('jobs', 'INSERT, UPDATE') END"
        )
        if not can_write:
            return fail(
                "database",
                f"{shown} can be read but this user may not write wanbot's tables",
                "connect as the database's owner (createdb -O USER), or grant the user "
                "CREATE on the database",
            )
        holder = await bot_holding(conn)
        workers: list[str] = []
        if version >= _WORKERS_VERSION:
            # Processes sharing the work that gave a heartbeat lately (their lease's
            # third; two minutes covers any LEASE_SECONDS up to six).
            rows = await conn.fetch(
                "SELECT host, pid FROM workers "
                "WHERE seen_at > extract(epoch FROM clock_timestamp()) - 120 "
                "ORDER BY started_at"
            )
            workers = [f"{r[0]}:{r[1]}" for r in rows]
    except asyncpg.PostgresError as exc:
        return fail("database", f"cannot use {shown}: {exc}", "check the user's privileges")
    finally:
        await conn.close()
    in_use = ""
    if len(workers) > 1:
        shown_workers = ", ".join(workers[:5]) + (", ..." if len(workers) > 5 else "")
        in_use = f"; {len(workers)} bot processes share it ({shown_workers})"
    elif holder is not None:
        in_use = f"; in use by wanbot (PID {holder})" if holder else "; in use"
    schema = "current" if version == latest else f"the next start upgrades it to {latest}"
    return ok("database", f"PostgreSQL {shown}, schema version {version} ({schema}){in_use}")

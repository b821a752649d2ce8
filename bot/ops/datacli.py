"""`wanbot backup PATH` and `wanbot db prune`: the data commands, kept out of cli.py."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from bot.core.clock import SystemClock
from bot.settings import Settings


def add_data_commands(sub: Any) -> None:
    """Register the subcommands on the `wanbot` parser's subparsers."""
    backup = sub.add_parser(
        "backup", help="copy the database safely while the bot runs (SQLite online backup)"
    )
    backup.add_argument("path", help="the new file (or an existing folder) to write")
    db = sub.add_parser("db", help="database upkeep")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    from bot.dbcli import add_db_commands

    add_db_commands(db_sub)  # migrate, copy
    prune = db_sub.add_parser(
        "prune", help="delete finished jobs older than JOB_RETENTION_DAYS (the ledger stays)"
    )
    prune.add_argument(
        "--days", type=int, default=None, help="retention in days (default: JOB_RETENTION_DAYS)"
    )
    prune.add_argument(
        "--vacuum",
        action="store_true",
        help="then compact the file (the bot must be stopped; needs free disk space)",
    )


def run_data_command(command: str, args: argparse.Namespace, settings: Settings) -> int:
    if command == "backup":
        return run_backup(settings, args.path)
    from bot.dbcli import COMMANDS, run_db_command

    if args.db_command in COMMANDS:
        return run_db_command(args, settings)
    return run_prune(settings, args.days, vacuum=args.vacuum)


def _database_url(settings: Settings) -> str | None:
    # DATABASE_URL selects the PostgreSQL store; absent: SQLite at DATABASE_PATH.
    url = settings.database_url
    return url.get_secret_value() if url is not None else None


def run_backup(settings: Settings, path: str) -> int:
    url = _database_url(settings)
    if url is not None:
        from storage.postgres.dump import pg_dump_command

        print("DATABASE_URL is PostgreSQL: back it up with pg_dump (password from PGPASSWORD):")
        print(f"  {pg_dump_command(url, path)}")
        print("restore with: pg_restore --clean --if-exists --dbname=<DATABASE_URL> " + path)
        return 0
    from storage.sqlite.backup import BackupError, backup_sqlite

    try:
        # The online backup blocks: run it in a thread, off the event loop.
        result = asyncio.run(asyncio.to_thread(backup_sqlite, settings.database_path, path))
    except BackupError as exc:
        print(f"wanbot: {exc}", file=sys.stderr)
        return 1
    print(
        f"backed up {settings.database_path} to {result.path}: {result.size_bytes:,} bytes, "
        f"schema {result.schema_version}, {result.jobs:,} jobs, {result.ledger_rows:,} ledger rows"
    )
    return 0


def run_prune(settings: Settings, days: int | None, *, vacuum: bool = False) -> int:
    postgres = _database_url(settings) is not None
    if vacuum and postgres:
        print("wanbot: --vacuum is for SQLite; PostgreSQL's autovacuum does that", file=sys.stderr)
        return 2
    if not postgres and not settings.database_path.is_file():
        print(f"wanbot: no database at {settings.database_path}", file=sys.stderr)
        return 1
    retention = settings.job_retention_days if days is None else days
    if retention < 0:
        print("wanbot: --days must be 0 or more", file=sys.stderr)
        return 2
    if retention == 0 and not vacuum:
        print("retention is 0 days: every job is kept, nothing pruned")
        return 0
    return asyncio.run(_prune(settings, retention, vacuum))


async def _prune(settings: Settings, retention: int, vacuum: bool) -> int:
    from bot.core.quota import QuotaDefaults
    from storage.errors import DatabaseInUse
    from storage.factory import build_store
    from storage.sqlite.prune import vacuum_sqlite

    # The store of the running bot (SQLite or PostgreSQL), with its one-bot lock.
    store = build_store(
        settings,
        clock=SystemClock(),
        defaults=QuotaDefaults.from_settings(settings),
        price_per_image_usd=0.0,  # nothing is admitted or priced here
    )
    try:
        await store.open()
    except DatabaseInUse as exc:
        # Not DatabaseInUse's own advice ("or set DATABASE_PATH to another file"):
        # pruning another file would not help.
        holder = f"wanbot (PID {exc.pid})" if exc.pid is not None else "another wanbot process"
        print(
            f"wanbot: the database {exc.database} is in use by {holder}, which prunes it "
            "by itself once a day; to prune now (or --vacuum), stop it first",
            file=sys.stderr,
        )
        return 1
    try:
        if retention > 0:
            deleted = await store.prune_jobs(now=time.time(), retention_days=retention)
            print(f"pruned {deleted:,} finished job(s) older than {retention} days; ledger kept")
        if vacuum:
            # VACUUM wants the file to itself: our connection closes, the lock stays held.
            await store.db.close()
            before, after = await asyncio.to_thread(vacuum_sqlite, str(settings.database_path))
            print(f"compacted the database: {before:,} -> {after:,} bytes")
    finally:
        await store.close()
    return 0

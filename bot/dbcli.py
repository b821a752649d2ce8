"""`wanbot db migrate` and `wanbot db copy`: schema and backend moves, kept out of cli.py.

Never prints a database password: PostgreSQL URLs are shown redacted.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
from pathlib import Path
from typing import Any

from bot.settings import Settings

COMMANDS = ("migrate", "copy")


def add_db_commands(db_sub: Any) -> None:
    """Register the subcommands on the `wanbot db` parser's subparsers."""
    db_sub.add_parser("migrate", help="apply pending schema migrations to the configured database")
    copy = db_sub.add_parser(
        "copy", help="copy the SQLite database (DATABASE_PATH) into an empty PostgreSQL one"
    )
    copy.add_argument(
        "--to",
        default=None,
        metavar="postgresql://...",
        help="the target (default: DATABASE_URL; prefer it or PGPASSWORD to a password here)",
    )
    copy.add_argument(
        "--from", dest="source", default=None, help="the SQLite file (default: DATABASE_PATH)"
    )


def run_db_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.db_command == "migrate":
        return asyncio.run(_migrate(settings))
    source = Path(args.source) if args.source else settings.database_path
    target = args.to or _configured_url(settings)
    if target is None:
        print("wanbot: db copy needs --to postgresql://... (or DATABASE_URL)", file=sys.stderr)
        return 2
    return asyncio.run(_copy(source, target))


def _configured_url(settings: Settings) -> str | None:
    secret = settings.database_url
    return secret.get_secret_value() if secret is not None else None


async def _migrate(settings: Settings) -> int:
    from storage.postgres.db import PgDatabase

    url = _configured_url(settings)
    if url is not None:
        pg = PgDatabase(url)
        await pg.open(migrate=False)  # DatabaseUnavailable: one line, from bot/cli.py
        try:
            applied = await pg.migrate()
            version = await pg.schema_version()
        finally:
            await pg.close()
        _report("PostgreSQL", pg.display, applied, version)
        return 0
    return await _migrate_sqlite(settings.database_path)


async def _migrate_sqlite(path: Path) -> int:
    from storage.sqlite.db import Database, load_migrations

    before = await asyncio.to_thread(_sqlite_version, path)
    db = Database(path)
    await db.open()  # applies what is pending
    try:
        after = await db.user_version()
    finally:
        await db.close()
    applied = [name for version, name, _ in load_migrations() if before < version <= after]
    _report("SQLite", str(path), applied, after)
    return 0


def _sqlite_version(path: Path) -> int:
    if not path.is_file():
        return 0
    from storage.sqlite.backup import read_only_uri

    conn = sqlite3.connect(read_only_uri(path), uri=True)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def _report(backend: str, where: str, applied: list[str], version: int) -> None:
    if applied:
        print(f"{backend} {where}: applied {', '.join(applied)}; schema version {version}")
    else:
        print(f"{backend} {where}: up to date, schema version {version}; nothing applied")


async def _copy(source: Path, target: str) -> int:
    import asyncpg

    from storage.postgres.copy import CopyError, copy_sqlite_to_postgres
    from storage.postgres.db import is_postgres_url, redact_url

    if not is_postgres_url(target):
        print("wanbot: --to must be a postgresql://... URL", file=sys.stderr)
        return 2
    shown = redact_url(target)
    print(f"copying {source} to {shown} ...")
    try:
        counts = await copy_sqlite_to_postgres(source, target)
    except CopyError as exc:
        print(f"wanbot: {exc}", file=sys.stderr)
        return 1
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        print(f"wanbot: cannot copy to {shown}: {exc}", file=sys.stderr)
        return 1
    width = max(len(c.table) for c in counts)
    print(f"{'table':<{width}}  {'SQLite':>10}  {'PostgreSQL':>10}")
    for c in counts:
        print(f"{c.table:<{width}}  {c.source:>10,}  {c.target:>10,}")
    print(
        f"copied {len(counts)} tables; every count and the ledger's sums match. "
        "Set DATABASE_URL to the target and start the bot; keep the SQLite file as a backup."
    )
    return 0

from __future__ import annotations

from pathlib import Path

from storage.sqlite.db import Database, load_migrations


async def test_migrations_apply_to_empty_db_and_second_start_is_noop(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "w.sqlite3"
    latest = len(load_migrations())
    first = Database(path)
    await first.open()
    assert path.exists()  # folder created on first run
    assert await first.user_version() == latest
    tables = {
        r[0] for r in await first.fetchall("SELECT name FROM sqlite_master WHERE type='table'")
    }
    await first.close()

    second = Database(path)
    await second.open()
    try:
        assert await second.migrate() == []
        assert await second.user_version() == latest
        again = {
            r[0] for r in await second.fetchall("SELECT name FROM sqlite_master WHERE type='table'")
        }
        assert again == tables
        mode = await second.fetchone("PRAGMA journal_mode")
        assert mode is not None and mode[0] == "wal"
        fk = await second.fetchone("PRAGMA foreign_keys")
        assert fk is not None and fk[0] == 1
    finally:
        await second.close()


async def test_failed_transaction_rolls_back(db: Database) -> None:
    await db.conn.execute("CREATE TABLE t (x INTEGER)")
    try:
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO t VALUES (1)")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    row = await db.fetchone("SELECT COUNT(*) FROM t")
    assert row is not None and row[0] == 0
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO t VALUES (2)")
    row = await db.fetchone("SELECT COUNT(*) FROM t")
    assert row is not None and row[0] == 1

"""A throwaway PostgreSQL cluster for the test session (fixtures, imported by conftest).

`initdb` + `pg_ctl` in a temporary folder, listening on a unix socket only
(listen_addresses=''), durability off (fsync) since it is thrown away. When the suite
runs as root, the server runs as the `postgres` user through `runuser` (PostgreSQL
refuses to run as root), with the folder chowned to it.

Each test gets its own database, copied from a template that already has the
migrations applied (CREATE DATABASE ... TEMPLATE is a file copy: fast).

Without PostgreSQL binaries the PostgreSQL tests skip, except under CI=true, where
they fail: CI must prove both backends (.ci/run installs the server).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from storage.postgres.db import PgDatabase

TEMPLATE = "wanbot_template"
_PORT = 5432  # names the socket file only: the folder is private to this run
_databases = itertools.count(1)


def find_pg_bin() -> Path | None:
    """The folder holding initdb and pg_ctl: from PATH, else Debian's layout."""
    found = shutil.which("pg_ctl")
    if found:
        folder = Path(found).resolve().parent
        if (folder / "initdb").exists():
            return folder
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return versions[-1].parent if versions else None


class PgUnavailable(RuntimeError):
    """No PostgreSQL server can be started here (the reason says why)."""


def missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is required under CI=true: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")


@dataclass
class PgCluster:
    bin: Path
    root: Path

    @property
    def socket_dir(self) -> Path:
        return self.root

    def url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port={_PORT}"

    async def create_database(self, name: str, template: str = TEMPLATE) -> str:
        conn = await asyncpg.connect(self.url("postgres"))
        try:
            # FILE_COPY (PostgreSQL 15+) copies a small template ~4x faster than WAL_LOG.
            fast = " STRATEGY FILE_COPY" if conn.get_server_version().major >= 15 else ""
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"{fast}')
        finally:
            await conn.close()
        return self.url(name)

    async def drop_database(self, name: str) -> None:
        conn = await asyncpg.connect(self.url("postgres"))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def _as_postgres(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def _run(command: list[str]) -> None:
    proc = subprocess.run(_as_postgres(command), capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({proc.returncode}): {proc.stderr.strip()}")


def start_cluster(*, durable: bool = False) -> PgCluster:
    """A new cluster in a temporary folder. `durable`: PostgreSQL's default fsync and
    commit settings (for benchmarks); else those are off (tests throw it away).
    Raises PgUnavailable."""
    folder = find_pg_bin()
    if folder is None:
        raise PgUnavailable("no pg_ctl on PATH nor in /usr/lib/postgresql/*/bin")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        raise PgUnavailable("running as root needs runuser")
    root = Path(tempfile.mkdtemp(prefix="wanbot-pg-"))
    if os.geteuid() == 0:
        try:
            shutil.chown(root, user="postgres", group="postgres")
        except (LookupError, PermissionError) as exc:
            shutil.rmtree(root, ignore_errors=True)
            raise PgUnavailable(f"running as root needs a 'postgres' user ({exc})") from exc
    data = root / "data"
    try:
        _run(
            [
                str(folder / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ]
        )
        settings = (
            "\nlisten_addresses = ''\n"
            f"unix_socket_directories = '{root}'\n"
            f"port = {_PORT}\n"
            "max_connections = 200\n"
        )
        if not durable:
            settings += "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
        conf = data / "postgresql.conf"
        conf.write_text(conf.read_text() + settings)
        _run([str(folder / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "start"])
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise PgUnavailable(str(exc)) from exc
    return PgCluster(folder, root)


def stop_cluster(cluster: PgCluster) -> None:
    try:
        _run(
            [
                str(cluster.bin / "pg_ctl"),
                "-D",
                str(cluster.root / "data"),
                "-m",
                "immediate",
                "stop",
            ]
        )
    finally:
        shutil.rmtree(cluster.root, ignore_errors=True)


async def _make_template(cluster: PgCluster) -> None:
    await cluster.create_database(TEMPLATE, template="template0")
    async with PgDatabase(cluster.url(TEMPLATE)):
        pass  # opening applies the migrations


def fresh_name(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{next(_databases)}"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    try:
        cluster = start_cluster()
    except PgUnavailable as exc:
        missing(str(exc))
        raise  # not reached: missing() fails or skips
    try:
        # Its own loop, on its own thread: this may be set up from inside a test's
        # running loop (getfixturevalue in an async fixture), and it outlives that loop.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, _make_template(cluster)).result()
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest.fixture
async def pg_url(pg_cluster: PgCluster) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    name = fresh_name("test")
    url = await pg_cluster.create_database(name)
    try:
        yield url
    finally:
        await pg_cluster.drop_database(name)


@pytest.fixture
async def pg_empty_url(pg_cluster: PgCluster) -> AsyncIterator[str]:
    """A fresh database without the schema, for migration tests."""
    name = fresh_name("empty")
    url = await pg_cluster.create_database(name, template="template0")
    try:
        yield url
    finally:
        await pg_cluster.drop_database(name)

"""SeenEvents on both backends: the first caller wins, once, whatever the concurrency,
across a restart and across processes; rows older than a day go."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.core.clock import FakeClock
from bot.core.ports import SeenEvents
from bot.core.quota import QuotaDefaults
from bot.settings import load_settings
from storage.factory import build_store
from storage.postgres.db import PgDatabase
from storage.postgres.events import PostgresSeenEvents
from storage.seen_rows import KEEP_SECONDS, PRUNE_EVERY_SECONDS
from storage.sqlite.events import SqliteSeenEvents
from tests.store_backends import Backend


def seen(backend: Backend, clock: FakeClock) -> SeenEvents:
    if isinstance(backend.db, PgDatabase):
        return PostgresSeenEvents(backend.db, clock)
    return SqliteSeenEvents(backend.db, clock)


async def rows(backend: Backend) -> list[tuple[str, str, float]]:
    found = await backend.fetchall(
        "SELECT platform, event_id, seen_at FROM seen_events ORDER BY platform, event_id"
    )
    return [(r[0], r[1], float(r[2])) for r in found]


async def test_the_first_caller_wins_and_only_it(backend: Backend, clock: FakeClock) -> None:
    events = seen(backend, clock)
    assert await events.first_time("slack", "C1:1.0") is True
    assert await events.first_time("slack", "C1:1.0") is False
    # The key is (platform, event id): the same id elsewhere is another event.
    assert await events.first_time("discord", "C1:1.0") is True
    assert await events.first_time("slack", "C1:2.0") is True
    assert await rows(backend) == [
        ("discord", "C1:1.0", clock.now()),
        ("slack", "C1:1.0", clock.now()),
        ("slack", "C1:2.0", clock.now()),
    ]


async def test_many_at_once_one_winner(backend: Backend, clock: FakeClock) -> None:
    events = seen(backend, clock)
    answers = await asyncio.gather(*(events.first_time("slack", "C1:9.9") for _ in range(40)))
    assert answers.count(True) == 1


async def test_remembered_across_a_restart(backend: Backend, clock: FakeClock) -> None:
    assert await seen(backend, clock).first_time("slack", "C1:1.0") is True
    await backend.reopen()
    assert await seen(backend, clock).first_time("slack", "C1:1.0") is False


async def test_rows_older_than_a_day_go(backend: Backend, clock: FakeClock) -> None:
    events = seen(backend, clock)
    assert await events.first_time("slack", "old") is True
    start = clock.now()
    await clock.advance(KEEP_SECONDS - 1)
    assert await events.first_time("slack", "young") is True  # prunes nothing yet
    assert [r[1] for r in await rows(backend)] == ["old", "young"]
    await clock.advance(PRUNE_EVERY_SECONDS)
    assert await events.first_time("slack", "new") is True  # the hourly prune is due
    assert [(r[1], r[2] - start) for r in await rows(backend)] == [
        ("new", KEEP_SECONDS - 1 + PRUNE_EVERY_SECONDS),
        ("young", KEEP_SECONDS - 1),
    ]
    assert await events.first_time("slack", "young") is False


async def test_two_processes_on_postgresql_one_winner_each_time(
    pg_url: str, clock: FakeClock
) -> None:
    # Two pools stand for two processes: every key is won by exactly one of them.
    async with PgDatabase(pg_url) as one, PgDatabase(pg_url) as two:
        a, b = PostgresSeenEvents(one, clock), PostgresSeenEvents(two, clock)
        keys = [f"C1:{i}.0" for i in range(30)]
        won = await asyncio.gather(
            *(a.first_time("slack", k) for k in keys), *(b.first_time("slack", k) for k in keys)
        )
        by_a, by_b = won[: len(keys)], won[len(keys) :]
        assert all(x != y for x, y in zip(by_a, by_b, strict=True))


def test_the_store_builds_the_backends_own(tmp_path: Path, clock: FakeClock) -> None:
    def built(**settings: object) -> SeenEvents:
        return build_store(
            load_settings(env_file=None, **settings),
            clock=clock,
            defaults=QuotaDefaults(),
            price_per_image_usd=0.03,
        ).seen_events

    assert isinstance(built(database_path=tmp_path / "w.sqlite3"), SqliteSeenEvents)
    assert isinstance(built(database_url="postgresql://bot@db.example/wanbot"), PostgresSeenEvents)

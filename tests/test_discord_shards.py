"""Discord sharding across processes: SHARD_COUNT / SHARD_IDS, the fake gateway's
shard routing, IDENTIFY paced through the IdentifyGate (in memory, and through
PostgreSQL across pools), and deliveries over REST from a process that does not hold
the job's guild."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import discord
import pytest

from bot.core.clock import FakeClock
from bot.core.models import ErrorKind, GenerationRequest, Job, Requester, ResultImage, UserError
from bot.core.ports import IdentifyGate
from bot.discord.bot import WanBot
from bot.discord.runner import (
    ReconnectLine,
    _gateway_exit,
    first_connect_failed,
    gateway_connected,
)
from bot.discord.shards import ShardedWanBot, build_bot
from bot.settings import SettingsError, load_settings
from storage.postgres.db import PgDatabase
from storage.postgres.identify import PgIdentifyGate
from storage.sqlite.identify import LocalIdentifyGate
from tests.engine_doubles import eventually
from tests.fakes.discord import FakeChannel, FakeDiscord, FakeUser
from tests.fakes.discord.harness import Running, running_bot
from tests.fakes.discord.payloads import FakeGuild, shard_of
from tests.image_corpus import solid

SPACING = 5.0


# ------------------------------------------------------------------------- settings
def test_sharding_is_off_by_default() -> None:
    settings = load_settings(env_file=None)
    assert settings.shard_count is None and settings.shard_ids is None


def test_shard_ids_are_read_from_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARD_COUNT", "4")
    monkeypatch.setenv("SHARD_IDS", " 3, 1")
    settings = load_settings(env_file=None)
    assert settings.shard_count == 4 and settings.shard_ids == [3, 1]
    monkeypatch.setenv("SHARD_IDS", "")
    assert load_settings(env_file=None).shard_ids is None  # all four here


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"SHARD_IDS": "0,2"}, "SHARD_IDS needs SHARD_COUNT"),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "0,2,5"}, "SHARD_IDS: shards 2, 5 are outside 0..1"),
        ({"SHARD_COUNT": "3", "SHARD_IDS": "1,1"}, "SHARD_IDS: shard 1 is listed twice"),
        ({"SHARD_COUNT": "3", "SHARD_IDS": "one"}, "SHARD_IDS: must be shard numbers"),
        ({"SHARD_COUNT": "0"}, "SHARD_COUNT: Input should be greater than or equal to 1"),
    ],
)
def test_bad_shard_settings_get_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], line: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=None)
    [only] = info.value.lines
    assert only.startswith(line)


def test_a_sharded_bot_needs_a_gate() -> None:
    rt: Any = object()  # refused before the runtime is touched
    with pytest.raises(ValueError, match="IdentifyGate"):
        build_bot(rt, shard_count=2, shard_ids=None, gate=None)


def test_a_shards_lost_connection_is_one_line() -> None:
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except ConnectionResetError:
        info = sys.exc_info()
    message = "Attempting a reconnect for shard ID %s in %.2fs"
    record = logging.LogRecord("discord.shard", logging.ERROR, "x", 1, message, (3, 1.5), info)
    assert ReconnectLine(cast(WanBot, SimpleNamespace(ws=None))).filter(record)
    assert record.getMessage() == (
        "Discord gateway connection lost for shard 3; reconnecting in 1.50s "
        "(ConnectionResetError: [Errno 104] Connection reset by peer)"
    )
    assert (record.exc_info, record.levelname) == (None, "WARNING")


# ---------------------------------------------------------------------- the gates
async def test_local_gate_spaces_one_bucket_and_lets_others_go(clock: FakeClock) -> None:
    gate = LocalIdentifyGate(clock)
    start = clock.now()
    assert [gate.reserve(0, SPACING) for _ in range(3)] == [start, start + 5, start + 10]
    assert gate.reserve(1, SPACING) == start  # another bucket: at once
    await clock.advance(60)
    assert gate.reserve(0, SPACING) == clock.now()  # a quiet bucket: no wait


async def _waits(gate: IdentifyGate, clock: FakeClock, bucket: int) -> asyncio.Task[None]:
    sleeping = clock.sleepers
    task = asyncio.create_task(gate.wait_turn(bucket, SPACING))
    await eventually(lambda: task.done() or clock.sleepers > sleeping, what="the gate's answer")
    return task


async def test_pg_gate_paces_one_bucket_across_pools(pg_url: str, clock: FakeClock) -> None:
    first, second = PgDatabase(pg_url), PgDatabase(pg_url)  # two processes' pools
    await first.open()
    await second.open()
    try:
        one, two = PgIdentifyGate(first, clock), PgIdentifyGate(second, clock)
        start = clock.now()
        # 12 racing reservations of one bucket from both pools: all distinct, 5 s apart.
        slots = await asyncio.gather(*(g.reserve(0, SPACING) for g in [one, two] * 6))
        assert sorted(slots) == [start + SPACING * i for i in range(12)]
        # Different buckets identify together.
        assert await one.reserve(1, SPACING) == start
        assert await two.reserve(2, SPACING) == start

        await clock.advance(1000)  # every bucket quiet again
        goes = await _waits(one, clock, 0)
        assert goes.done()  # first in its bucket: at once
        waits = await _waits(two, clock, 0)  # the other process, same bucket
        other_bucket = await _waits(two, clock, 3)
        assert other_bucket.done() and not waits.done()
        await clock.advance(SPACING - 0.1)
        assert not waits.done()
        await clock.advance(0.1)
        await eventually(waits.done, what="the second IDENTIFY's turn")
    finally:
        await first.close()
        await second.close()


# ------------------------------------------------------------ the fake's gateway
async def _identify(fake: FakeDiscord, shard: list[int] | None) -> int | None:
    """A raw gateway session: IDENTIFY, then the close code (None: it got READY)."""
    async with aiohttp.ClientSession() as http, http.ws_connect(fake.gateway_url) as ws:
        await ws.receive_json()  # HELLO
        data: dict[str, Any] = {"token": "t", "intents": 1, "properties": {}}
        if shard is not None:
            data["shard"] = shard
        await ws.send_json({"op": 2, "d": data})
        message = await ws.receive()
        if message.type is aiohttp.WSMsgType.TEXT:
            assert json.loads(message.data)["t"] == "READY"
            return None
        return ws.close_code


async def test_fake_refuses_bad_shards_with_discords_close_codes(fake: FakeDiscord) -> None:
    assert await _identify(fake, [2, 2]) == 4010  # out of range
    assert await _identify(fake, [0, 0]) == 4010
    fake.sharding_required = True
    assert await _identify(fake, None) == 4011
    assert [r.close_code for r in fake.identify_log] == [4010, 4010, 4011]


async def test_gateway_bot_says_shards_and_max_concurrency(fake: FakeDiscord) -> None:
    fake.recommended_shards, fake.max_concurrency = 4, 16
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": "Bot t"}
        async with http.get(f"{fake.api_base}/gateway/bot", headers=headers) as response:
            body = await response.json()
    assert body["shards"] == 4 and body["session_start_limit"]["max_concurrency"] == 16


# ------------------------------------------------------- two processes, two shards
def sharded(
    shard_ids: list[int], gate: IdentifyGate, *, count: int = 2
) -> functools.partial[WanBot]:
    return functools.partial(build_bot, shard_count=count, shard_ids=shard_ids, gate=gate)


@contextlib.asynccontextmanager
async def two_processes(
    fake: FakeDiscord, tmp_path: Path, clock: FakeClock, gates: tuple[IdentifyGate, IdentifyGate]
) -> AsyncIterator[tuple[Running, Running]]:
    """Shard 0 and shard 1 of 2, each over its own runtime and database (as two
    processes would be); the second connects while the first is up."""
    async with (
        running_bot(fake, tmp_path / "a.sqlite3", clock, make_bot=sharded([0], gates[0])) as first,
        running_bot(
            fake, tmp_path / "b.sqlite3", clock, make_bot=sharded([1], gates[1]), wait_ready=False
        ) as second,
    ):
        await drive_until_ready(second, clock)
        yield first, second


async def drive_until_ready(run: Running, clock: FakeClock) -> None:
    """Advance fake time (the gate's waits) until the bot is ready."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 10.0
    while not run.bot.is_ready():
        assert loop.time() < give_up, "the second process never became ready"
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.bot.wait_until_ready(), timeout=0.05)
        if not run.bot.is_ready():
            await clock.advance(0.5)


def guilds_on(fake: FakeDiscord, shard: int) -> set[int]:
    return {int(g) for g in fake.guilds if shard_of(g, 2) == shard}


def listen(bot: discord.Client, event: str) -> list[Any]:
    seen: list[Any] = []

    async def record(*args: Any) -> None:
        seen.append(args)

    bot.add_listener(record, f"on_{event}")
    return seen


@pytest.fixture
def worlds(fake: FakeDiscord) -> tuple[FakeGuild, FakeGuild]:
    return fake.add_guild("zero", shard=(0, 2)), fake.add_guild("one", shard=(1, 2))


async def test_each_process_gets_only_its_shards_guilds_and_events(
    fake: FakeDiscord,
    tmp_path: Path,
    clock: FakeClock,
    alice: FakeUser,
    worlds: tuple[FakeGuild, FakeGuild],
) -> None:
    zero, one = worlds
    gate = LocalIdentifyGate(clock)
    async with two_processes(fake, tmp_path, clock, (gate, gate)) as (first, second):
        assert isinstance(first.bot, ShardedWanBot) and isinstance(second.bot, ShardedWanBot)
        assert {g.id for g in first.bot.guilds} == guilds_on(fake, 0)
        assert {g.id for g in second.bot.guilds} == guilds_on(fake, 1)
        assert int(zero.id) in guilds_on(fake, 0) and int(one.id) in guilds_on(fake, 1)
        assert fake.shards_connected == [(0, 2), (1, 2)]
        assert gateway_connected(first.bot) and gateway_connected(second.bot)
        # A sharded client retries its shards itself: the runner does not.
        assert first_connect_failed(first.bot, OSError("down")) is None

        heard = listen(first.bot, "interaction"), listen(second.bot, "interaction")
        channel = one.general
        assert isinstance(channel, FakeChannel)
        interaction = await fake.slash("imagine", alice, {"prompt": "a harbour"}, channel=channel)
        await fake.wait_callback(interaction)
        [message] = await second.wait_results()
        assert fake.guild_of(message["channel_id"]) == one.id
        assert len(heard[1]) == 1 and heard[0] == []
        job = await second.latest_job()
        assert job.requester.guild_id == one.id
        rows = await first.rt.db.fetchall("SELECT COUNT(*) FROM jobs")  # type: ignore[union-attr]
        assert rows[0][0] == 0
    assert fake.errors == []


async def test_identify_is_paced_through_postgres_across_processes(
    fake: FakeDiscord, tmp_path: Path, clock: FakeClock, pg_url: str
) -> None:
    pools = PgDatabase(pg_url), PgDatabase(pg_url)
    for pool in pools:
        await pool.open()
    try:
        gates = PgIdentifyGate(pools[0], clock), PgIdentifyGate(pools[1], clock)
        async with two_processes(fake, tmp_path, clock, gates):
            pass
    finally:
        for pool in pools:
            await pool.close()
    first, second = [r for r in fake.identify_log if r.close_code is None]
    assert (first.shard, second.shard) == ((0, 2), (1, 2))
    assert first.bucket == second.bucket == 0  # max_concurrency 1: one bucket
    assert second.clock_at - first.clock_at >= SPACING
    # discord.py's own 5 s sleep is replaced, not added (fake time: 0.5 s steps).
    assert second.clock_at - first.clock_at < SPACING + 1.0


async def test_buckets_of_max_concurrency_identify_together(
    fake: FakeDiscord, tmp_path: Path, clock: FakeClock
) -> None:
    fake.max_concurrency = 2  # shards 0 and 1 are in buckets 0 and 1
    gate = LocalIdentifyGate(clock)
    async with running_bot(
        fake, tmp_path / "a.sqlite3", clock, make_bot=sharded([0, 1], gate)
    ) as run:
        assert isinstance(run.bot, ShardedWanBot)
        assert await run.bot.max_concurrency() == 2
    records = [r for r in fake.identify_log if r.close_code is None]
    assert [(r.shard, r.bucket) for r in records] == [((0, 2), 0), ((1, 2), 1)]
    assert records[0].clock_at == records[1].clock_at  # no fake time passed between


async def test_a_shard_already_connected_is_refused(
    fake: FakeDiscord, tmp_path: Path, clock: FakeClock
) -> None:
    gate = LocalIdentifyGate(clock)
    async with running_bot(fake, tmp_path / "a.sqlite3", clock, make_bot=sharded([0], gate)):
        assert await _identify(fake, [0, 2]) == 4010
        assert await _identify(fake, [1, 2]) is None  # a free shard is fine


# ---------------------------------------------- deliveries from the other process
def png(index: int) -> ResultImage:
    return ResultImage(
        index=index, data=solid((64, 64)), content_type="image/png", filename=f"r{index}.png"
    )


def job_in(fake: FakeDiscord, guild: FakeGuild, user: FakeUser, status_id: str) -> Job:
    assert guild.general is not None
    requester = Requester(
        platform="discord", user_id=user.id, guild_id=guild.id, channel_id=guild.general.id
    )
    now = 1_700_000_000.0
    return Job(
        id="shardjob01",
        requester=requester,
        provider="mock",
        request=GenerationRequest(prompt="a lighthouse", count=2),
        status_message_id=status_id,
        created_at=now,
        updated_at=now,
    )


async def test_the_other_shards_process_delivers_over_rest(
    fake: FakeDiscord,
    tmp_path: Path,
    clock: FakeClock,
    alice: FakeUser,
    worlds: tuple[FakeGuild, FakeGuild],
) -> None:
    zero, _ = worlds
    assert zero.general is not None
    gate = LocalIdentifyGate(clock)
    async with two_processes(fake, tmp_path, clock, (gate, gate)) as (_, second):
        assert second.bot.get_guild(int(zero.id)) is None  # not in this process's cache
        status = fake._new_message(zero.general, fake.bot, content="working on it")
        job = job_in(fake, zero, alice, status["id"])
        delivery = second.bot.delivery

        data = await delivery.deliver(job, [png(0), png(1)], 0)
        [message] = second.result_messages(job.id)
        thread = fake.channels[message["channel_id"]]
        assert thread.is_thread and thread.id == status["id"] and thread.guild_id == zero.id
        assert len(message["attachments"]) == 2 and data["result_message_ids"] == [message["id"]]
        assert status["embeds"] and status["edited_timestamp"]  # the done card

        # Fresh attachment URLs (fetched by id), as /jobs and edits need them.
        posted = job.model_copy(update={"delivery": data})
        urls = await second.bot.surface.result_urls(posted)
        assert urls == [a["url"] for a in message["attachments"]]

        # A restart's look-up (history) finds the post from this process too.
        stored = job.model_copy(update={"delivery": {}})
        found = await delivery.find_posted(stored)
        assert found is not None and found.images == 2

        # A failure card for another job of that guild, posted over REST as well.
        failed = job.model_copy(update={"id": "shardjob02", "status_message_id": None})
        error = UserError(kind=ErrorKind.INTERNAL, code="x", message="the service failed")
        await delivery.fail(failed, error)
        cards = [m for m in fake.messages_in(zero.general) if m.get("nonce") == "wbshardjob029"]
        assert len(cards) == 1 and cards[0]["content"] == f"<@{alice.id}>"
    assert fake.errors == []


class BrokenGate:
    """A gate whose database is down."""

    async def wait_turn(self, bucket: int, spacing: float) -> None:
        raise OSError("connection refused")


async def test_a_failing_gate_or_gateway_info_does_not_stop_the_shards(
    fake: FakeDiscord, tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    fake.max_concurrency = 4
    fake.fail_next("GET", "/gateway/bot", 404)  # max_concurrency unknown at first: 1
    async with running_bot(
        fake, tmp_path / "a.sqlite3", clock, make_bot=sharded([1], BrokenGate()), wait_ready=False
    ) as run:
        await drive_until_ready(run, clock)
        assert isinstance(run.bot, ShardedWanBot)
        assert await run.bot.max_concurrency() == 4  # asked again, not stuck at 1
    [record] = fake.identify_log
    assert record.shard == (1, 2) and record.clock_at >= SPACING  # waited one spacing
    assert "IDENTIFY pacing through the database failed (connection refused)" in caplog.text
    assert "could not read Discord's max_concurrency" in caplog.text


async def test_a_bot_whose_shard_is_taken_stops_with_4010(
    fake: FakeDiscord, tmp_path: Path, clock: FakeClock
) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(fake.gateway_url) as holder:
        await holder.receive_json()  # HELLO
        identify = {"token": "t", "intents": 1, "properties": {}, "shard": [0, 2]}
        await holder.send_json({"op": 2, "d": identify})
        await fake.wait_until(lambda: fake.shards_connected == [(0, 2)])
        gate = LocalIdentifyGate(clock)
        async with running_bot(
            fake, tmp_path / "a.sqlite3", clock, make_bot=sharded([0], gate), wait_ready=False
        ) as run:
            assert run.connect is not None
            await asyncio.wait_for(asyncio.wait({run.connect}), timeout=5.0)
            error = run.connect.exception()
            assert isinstance(error, discord.ConnectionClosed) and error.code == 4010
            assert _gateway_exit(run.connect) == 1  # one log line, exit code 1
    assert [r.close_code for r in fake.identify_log] == [None, 4010]

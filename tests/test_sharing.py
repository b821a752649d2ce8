"""Several engines ("processes", each with its own connection pool) sharing one
PostgreSQL database: claims within limits counted over all of them, leases taken over
when a holder stops, the fencing token before posting, wake-ups between them.

Time is the fake clock (leases, deadlines and polls all follow it), so a 30 s lease
runs out in milliseconds; the database and its LISTEN/NOTIFY are real. The real bot
processes against the fakes are in test_multiprocess.py.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import asyncpg
import pytest

from bot.core.clock import FakeClock
from bot.core.engine import EngineConfig, JobEngine
from bot.core.models import Job, JobState
from bot.core.ports import JobStore, WorkShare
from bot.core.quota import QuotaDefaults
from bot.ops.doctor.pg import check_postgres
from storage.postgres.db import IDLE_TRANSACTION_SECONDS, PgDatabase
from storage.postgres.jobs import PostgresJobStore
from storage.postgres.share import LOCK_DISPATCH, PgWorkShare, pick_fairly
from tests.engine_doubles import (
    PLATFORM,
    RecordingPort,
    Script,
    ScriptedProvider,
    eventually,
    eventually_async,
    request,
    requester,
)
from tests.fakes.discord.harness import Busy, Counting
from tests.test_job_store import make_job

LEASE = 30.0
DEFAULTS = QuotaDefaults(default_limit=1000, max_running=100, max_queued=100)


class Proc:
    """One bot process's engine: its own pool, store, share and delivery port."""

    def __init__(
        self,
        name: str,
        url: str,
        clock: FakeClock,
        provider: ScriptedProvider,
        tally: Busy,
        idle_transaction_seconds: float = IDLE_TRANSACTION_SECONDS,
    ) -> None:
        self.name = name
        self.db = PgDatabase(url, pool_size=4, idle_transaction_seconds=idle_transaction_seconds)
        self.store = PostgresJobStore(self.db, clock, DEFAULTS)
        self.share = PgWorkShare(
            self.db, clock, lease_seconds=LEASE, worker_id=name, reconnect_delay=0.05
        )
        self.port = RecordingPort()
        self.engine = JobEngine(
            cast(JobStore, Counting(self.store, tally)),
            provider,
            clock=clock,
            config=EngineConfig(
                provider_concurrency=2,
                max_running_per_user=1,
                status_rps=1000.0,
                status_burst=1000,
                callback_base_url="https://bot.example",
            ),
            share=cast(WorkShare, Counting(self.share, tally)),
        )
        self.port.clock = clock
        self.engine.register_delivery(PLATFORM, self.port)
        self.crashed = False

    async def start(self) -> None:
        await self.db.open()
        await self.engine.start()

    async def close(self) -> None:
        if not self.crashed:
            await self.engine.close()
            await self.db.close()

    async def crash(self) -> None:
        """Stop dead, as after a SIGKILL: no lease given back, no grace period."""
        self.crashed = True
        ctx = self.engine._ctx
        ctx.closing = True
        await ctx.tasks.close()
        await self.share._tasks.close()
        if self.share._listener is not None:
            self.share._listener.terminate()
        self.db.pool.terminate()

    def held(self) -> set[str]:
        return {job_id for job_id, a in self.engine._ctx.active.items() if a.lease is not None}


class World:
    def __init__(self, url: str, clock: FakeClock, provider: ScriptedProvider) -> None:
        self.url = url
        self.clock = clock
        self.provider = provider
        self.tally = Busy()  # every process's database calls in flight
        self.procs: list[Proc] = []
        self.db = PgDatabase(url, pool_size=2)  # the test's own look at the database
        self.store = PostgresJobStore(self.db, clock, DEFAULTS)

    async def add(self, name: str) -> Proc:
        proc = Proc(name, self.url, self.clock, self.provider, self.tally)
        await proc.start()
        self.procs.append(proc)
        return proc

    async def settle(self) -> None:
        """Until no database call has been in flight for a while (real time)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + 10
        calm = 0
        while calm < 50:
            await asyncio.sleep(0)
            calm = calm + 1 if self.tally.count == 0 else 0
            assert loop.time() < end, "database calls still in flight"

    async def advance_until(
        self, predicate: Callable[[], bool | Awaitable[bool]], limit: float = 600
    ) -> None:
        """Move fake time timer by timer until `predicate()` holds (checked each time
        every process's database work has finished)."""
        start = self.clock.monotonic()
        while True:
            await self.settle()
            held = predicate()
            if held if isinstance(held, bool) else await held:
                return
            delay = self.clock.next_deadline()
            assert delay is not None and self.clock.monotonic() - start < limit, "stuck"
            await self.clock.advance(max(delay, 0.0))

    async def jobs(self) -> list[Job]:
        return [j for j in [await self.store.get(i) for i in await self.ids()] if j]

    async def ids(self) -> list[str]:
        return [r[0] for r in await self.db.fetch("SELECT id FROM jobs ORDER BY id")]

    async def all_final(self) -> bool:
        return all(job.state.final for job in await self.jobs())

    async def ledger(self) -> dict[str, dict[str, int]]:
        rows = await self.db.fetch("SELECT job_id, kind, images FROM ledger")
        found: dict[str, dict[str, int]] = {}
        for job_id, kind, images in rows:
            assert kind not in found.setdefault(job_id, {}), f"two {kind} rows for {job_id}"
            found[job_id][kind] = images
        return found

    def delivered(self, job_id: str) -> list[str]:
        """The processes that posted the job's results."""
        return [p.name for p in self.procs for _ in p.port.delivered(job_id)]


@pytest.fixture
async def world(pg_url: str, clock: FakeClock) -> AsyncIterator[World]:
    provider = ScriptedProvider(clock, Script(duration=30.0), supports_callback=True)
    w = World(pg_url, clock, provider)
    await w.db.open()
    try:
        yield w
    finally:
        for proc in w.procs:
            await proc.close()
        await w.db.close()


async def run_all(world: World) -> None:
    await world.advance_until(world.all_final)


async def test_limits_hold_across_processes_and_every_job_is_delivered_once(
    world: World,
) -> None:
    a, b, c = [await world.add(name) for name in ("a", "b", "c")]
    # Three users, two jobs each, admitted at three processes; two provider slots in all
    # and one running job per user.
    jobs = []
    for i, proc in enumerate((a, b, c, a, b, c)):
        jobs.append(await proc.engine.submit(requester(f"u{i % 3}"), request(count=1 + i % 2)))
    await world.settle()
    await eventually(lambda: len(world.provider.tasks) == 2, what="two tasks started")
    await world.settle()
    assert len(world.provider.tasks) == 2  # the provider's concurrency, over all three
    running = await world.db.fetch(
        "SELECT user_id FROM jobs WHERE state IN ('submitting', 'running', 'delivering')"
    )
    assert len(running) == 2 and len({r[0] for r in running}) == 2  # one per user

    peak = 0

    def watch() -> bool:
        nonlocal peak
        live = [t for t in world.provider.tasks.values() if t.seen_done_at is None]
        peak = max(peak, len(live))
        return False

    await run_all(world)
    watch()
    assert peak <= 2
    ledger = await world.ledger()
    for job in jobs:
        stored = await world.store.get(job.id)
        assert stored is not None and stored.state is JobState.DONE
        assert len(world.delivered(job.id)) == 1
        assert ledger[job.id] == {"reserve": job.request.count, "charge": job.request.count}
    # Leases go with the jobs.
    assert await world.db.fetchval("SELECT count(*) FROM job_leases") == 0


async def test_a_dead_holder_s_jobs_are_taken_over_after_its_lease(world: World) -> None:
    a = await world.add("a")
    b = await world.add("b")
    job = await a.engine.submit(requester("u1"), request(count=2))
    await world.advance_until(lambda: bool(a.held() | b.held()))
    holder, other = (a, b) if a.held() else (b, a)
    await world.advance_until(lambda: bool(world.provider.tasks))
    stored = await world.store.get(job.id)
    assert stored is not None and stored.state is JobState.RUNNING
    await holder.crash()
    # Nothing happens before the lease runs out; then the other process polls the task
    # it finds running (never submitting it again) and delivers.
    await world.clock.advance(LEASE / 2)
    await world.settle()
    assert not other.held()
    await run_all(world)
    final = await world.store.get(job.id)
    assert final is not None and final.state is JobState.DONE
    assert world.delivered(job.id) == [other.name]
    assert world.provider.submit_calls == 1
    assert (await world.ledger())[job.id] == {"reserve": 2, "charge": 2}


async def test_a_claim_that_waited_for_the_dispatch_lock_leases_from_when_it_got_it(
    world: World,
) -> None:
    """The wait for the dispatch lock can be long (behind a holder paused inside its
    claim, until the server ends that transaction): a lease counted from before the
    wait would run out early, and another process would take the job over at once."""
    share = PgWorkShare(world.db, world.clock, lease_seconds=LEASE, worker_id="a")
    job = await world.store.admit(make_job(world.clock, platform=PLATFORM))
    async with world.db.pool.acquire() as conn:
        lock = "SELECT pg_advisory_lock($1, hashtext($2))"
        await conn.execute(lock, LOCK_DISPATCH, job.provider)
        claim = asyncio.create_task(
            share.claim(job.provider, [PLATFORM], concurrency=1, per_user=1, own=[job.id])
        )

        async def waiting() -> bool:
            sql = (
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory' "
                "AND query LIKE '%pg_advisory_xact_lock%'"
            )
            return int(await conn.fetchval(sql)) == 1

        await eventually_async(waiting, what="the claim to wait for the dispatch lock")
        await world.clock.advance(LEASE)  # a long wait
        unlock = "SELECT pg_advisory_unlock($1, hashtext($2))"
        await conn.execute(unlock, LOCK_DISPATCH, job.provider)
    [claimed] = await asyncio.wait_for(claim, 10)
    assert claimed.job.id == job.id
    until = await world.db.fetchval("SELECT until FROM job_leases WHERE job_id = $1", job.id)
    assert until == world.clock.now() + LEASE


async def test_a_paused_holder_past_its_lease_does_not_post(world: World) -> None:
    a = await world.add("a")
    job = await a.engine.submit(requester("u1"), request())
    # The download is held at a: a stands for a process paused during its delivery.
    gate = asyncio.Event()
    real_download = world.provider.download_result
    held: list[str] = []

    async def download(url: str, index: int) -> Any:
        if not gate.is_set() and not held:
            held.append(url)
            await gate.wait()
        return await real_download(url, index)

    world.provider.download_result = download  # type: ignore[method-assign]
    await world.advance_until(lambda: bool(held))
    # a cannot renew while paused: its timers stop.
    assert a.engine._driver is not None
    a.engine._driver.cancel()
    b = await world.add("b")
    await world.clock.advance(LEASE + 1)
    await world.advance_until(lambda: bool(b.port.delivered(job.id)))
    gate.set()  # a wakes up and reaches its post: the fencing token stops it
    await world.settle()
    await eventually(lambda: job.id not in a.engine._ctx.active, what="a lets go")
    assert world.delivered(job.id) == ["b"]
    assert a.port.deliver_started == []  # stopped before posting, not by the nonce
    final = await world.store.get(job.id)
    assert final is not None and final.state is JobState.DONE and final.delivered == 1
    assert (await world.ledger())[job.id] == {"reserve": 1, "charge": 1}


class _HeldInTransaction:
    """A connection whose first `UPDATE jobs ... RETURNING id` (the move to delivering
    that stores result URLs, in a transaction) waits on a gate once answered: its
    process stands paused inside the transaction, holding the job row's lock."""

    def __init__(self, conn: asyncpg.Connection, gate: asyncio.Event, held: list[str]) -> None:
        self._conn = conn
        self._gate = gate
        self._held = held

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        row = await self._conn.fetchrow(sql, *args)
        if sql.startswith("UPDATE jobs") and sql.endswith("RETURNING id") and not self._held:
            self._held.append(str(args[0]))
            await self._gate.wait()
        return row

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _HeldStatus:
    """The shared provider, but status queries wait on a gate (one process's view)."""

    def __init__(self, inner: ScriptedProvider, gate: asyncio.Event) -> None:
        self._inner = inner
        self._gate = gate
        self.waiting = 0

    async def status(self, task_id: str) -> Any:
        self.waiting += 1
        await self._gate.wait()
        return await self._inner.status(task_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_a_holder_paused_inside_a_transaction_does_not_block_the_takeover(
    pg_url: str, world: World
) -> None:
    """Paused between two statements of a transaction, a process holds the job row's
    lock, and claims skip locked rows: the server must end that transaction (and its
    session) so another process takes the job over. Awake, the paused one finds its
    transaction gone: it lets the job go, not failing it under the new holder."""
    # a's calls are not counted with the others': one of them stays in flight.
    a_calls = Busy()
    a = Proc("a", pg_url, world.clock, world.provider, a_calls, idle_transaction_seconds=0.5)
    await a.start()
    world.procs.append(a)
    paused, held = asyncio.Event(), []
    real_transaction = a.db.transaction

    @asynccontextmanager
    async def transaction(**options: Any) -> AsyncIterator[Any]:
        async with real_transaction(**options) as conn:
            yield _HeldInTransaction(conn, paused, held)

    a.db.transaction = transaction  # type: ignore[method-assign]
    job = await a.engine.submit(requester("u1"), request())
    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    while not held:  # timer by timer, each once a's database calls are answered
        calm = 0
        while calm < 50 and not held:
            await asyncio.sleep(0)
            calm = calm + 1 if a_calls.count == 0 else 0
            assert loop.time() < end, "a never stored the results"
        delay = world.clock.next_deadline()
        if not held and delay is not None:
            await world.clock.advance(max(delay, 0.0))
    assert held == [job.id]
    assert a.engine._driver is not None
    a.engine._driver.cancel()  # paused: no renewals either

    async def row_free() -> bool:
        # Autocommit: the lock is let go as soon as it is taken.
        sql = "SELECT id FROM jobs WHERE id = $1 FOR UPDATE SKIP LOCKED"
        return await world.db.fetchrow(sql, job.id) is not None

    await eventually_async(row_free, timeout=15, what="the server to end the paused transaction")
    # b takes the job over, still running; its status query waits.
    answer = asyncio.Event()
    b_provider = _HeldStatus(world.provider, answer)
    b = Proc("b", pg_url, world.clock, cast(ScriptedProvider, b_provider), world.tally)
    await b.start()
    world.procs.append(b)
    await world.clock.advance(LEASE + 1)
    await world.advance_until(lambda: b_provider.waiting > 0)
    assert b.held() == {job.id}
    paused.set()  # a wakes up: its transaction is gone, and its lease with it
    await eventually(lambda: job.id not in a.engine._ctx.active, what="a lets go")
    stored = await world.store.get(job.id)
    assert stored is not None and stored.state is JobState.RUNNING  # not failed by a
    answer.set()
    await world.advance_until(lambda: bool(b.port.delivered(job.id)))
    await run_all(world)
    assert world.delivered(job.id) == ["b"]
    assert a.port.deliver_started == []
    final = await world.store.get(job.id)
    assert final is not None and final.state is JobState.DONE and final.delivered == 1
    assert (await world.ledger())[job.id] == {"reserve": 1, "charge": 1}
    assert await world.db.fetchval("SELECT count(*) FROM job_results") == 0


async def test_a_callback_at_another_process_wakes_the_holder(world: World) -> None:
    a = await world.add("a")
    b = await world.add("b")
    job = await a.engine.submit(requester("u1"), request())
    await world.advance_until(lambda: bool(world.provider.tasks) and bool(a.held() | b.held()))
    holder, other = (a, b) if a.held() else (b, a)
    stored = await world.store.get(job.id)
    assert stored is not None and stored.callback_token
    [task] = world.provider.tasks.values()
    task.script = Script(duration=0.0)  # finished: the callback says so
    polls = len(world.provider.status_calls)
    # A forged token is refused; the real one reaches the holder through the database.
    assert not await other.engine.on_callback_request(world.provider.name, job.id, "forged")
    assert await other.engine.on_callback_request(
        world.provider.name, job.id, stored.callback_token
    )
    await eventually(
        lambda: bool(holder.port.delivered(job.id)), timeout=10, what="the holder's delivery"
    )
    assert len(world.provider.status_calls) == polls + 1  # no fake time passed: woken
    assert world.delivered(job.id) == [holder.name]


async def test_a_cancel_at_another_process_stops_the_holder(world: World) -> None:
    a = await world.add("a")
    b = await world.add("b")
    job = await a.engine.submit(requester("u1"), request())
    await world.advance_until(lambda: bool(world.provider.tasks) and bool(a.held() | b.held()))
    holder, other = (a, b) if a.held() else (b, a)
    cancelled = await other.engine.cancel(job.id, requester("u1"))
    assert cancelled.state is JobState.CANCELLED
    await eventually(
        lambda: job.id not in holder.engine._ctx.active, timeout=10, what="holder lets go"
    )
    assert world.provider.cancelled == [next(iter(world.provider.tasks))]
    assert (await world.ledger())[job.id] == {"reserve": 1, "charge": 0, "refund": 1}


async def test_the_listen_connection_comes_back_and_work_goes_on(world: World) -> None:
    a = await world.add("a")
    b = await world.add("b")
    admin = await asyncpg.connect(world.url)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name LIKE 'wanbot listen%'"
        )
        assert killed == 2
        await eventually(
            lambda: not a.share.listening and not b.share.listening,
            timeout=10,
            what="both see it drop",
        )
        # Meanwhile a job still runs (scans and polls need no wake-up)...
        job = await b.engine.submit(requester("u1"), request())
        await run_all(world)
        assert len(world.delivered(job.id)) == 1
        # ...and the connections come back by themselves.
        await eventually(
            lambda: a.share.listening and b.share.listening, timeout=10, what="reconnected"
        )
        back = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'wanbot listen%'"
        )
        assert back == 2
    finally:
        await admin.close()


async def test_the_status_rate_is_shared_by_the_live_processes(world: World) -> None:
    a = await world.add("a")
    assert a.engine._ctx.limiter._interval == pytest.approx(1 / 1000)
    b = await world.add("b")
    assert b.engine._ctx.limiter._interval == pytest.approx(2 / 1000)
    await world.clock.advance(LEASE / 3)  # a's next heartbeat sees b
    await world.settle()
    assert a.engine._ctx.limiter._interval == pytest.approx(2 / 1000)


async def test_a_clean_stop_hands_the_jobs_over_at_once(world: World) -> None:
    a = await world.add("a")
    b = await world.add("b")
    job = await a.engine.submit(requester("u1"), request())
    await world.advance_until(lambda: bool(world.provider.tasks) and bool(a.held() | b.held()))
    holder, other = (a, b) if a.held() else (b, a)
    await holder.close()
    world.procs.remove(holder)
    # No lease to wait out: the other process is woken and takes the job over.
    await eventually(lambda: job.id in other.held(), timeout=10, what="taken over")
    await run_all(world)
    assert len(other.port.delivered(job.id)) == 1


def test_fair_picking_goes_user_by_user_within_limits() -> None:
    candidates = [("j1", "u1"), ("j2", "u1"), ("j3", "u1"), ("j4", "u2"), ("j5", "u3")]
    assert pick_fairly(candidates, {}, 3, None) == ["j1", "j4", "j5"]
    assert pick_fairly(candidates, {"u2": 1}, 4, None) == ["j1", "j5", "j2", "j4"]
    assert pick_fairly(candidates, {"u1": 2}, 5, 2) == ["j4", "j5"]


async def test_doctor_names_the_processes_sharing_the_database(pg_url: str) -> None:
    # The doctor reads heartbeats with the server's clock: a fake one near it here.
    clock = FakeClock(start=time.time())
    world = World(pg_url, clock, ScriptedProvider(clock))
    await world.db.open()
    try:
        await world.add("a")
        await world.add("b")
        check = await check_postgres(pg_url)
    finally:
        for proc in world.procs:
            await proc.close()
        await world.db.close()
    assert check.status == "OK"
    assert f"2 bot processes share it ({socket.gethostname()}:{os.getpid()}" in check.detail

"""Stop the engine mid-flight in every state, start a new one on the same database:
every job ends exactly once, delivered at most once, charged exactly what was delivered."""

from __future__ import annotations

import asyncio

import pytest

from bot.chat.wording import failure_text
from bot.core.clock import FakeClock
from bot.core.engine import JobEngine
from bot.core.errors import ShuttingDown
from bot.core.models import ErrorKind, Job, JobState
from storage.sqlite.db import Database
from tests.engine_doubles import (
    RecordingPort,
    Script,
    ScriptedProvider,
    TrackedStore,
    advance_until,
    eventually,
    ledger,
    make_engine,
    make_store,
    quiesce,
    request,
    requester,
    run_until_final,
)


async def _state(store: TrackedStore, job_id: str) -> JobState:
    job = await store.get(job_id)
    assert job is not None
    return job.state


async def _restart(
    old: JobEngine, store: TrackedStore, provider: ScriptedProvider, clock: FakeClock
) -> tuple[JobEngine, RecordingPort]:
    """Stop `old` as a crash would (tasks cancelled wherever they are) and start a new
    engine with a fresh front end on the same database and provider account."""
    await old.close()
    port = RecordingPort()
    engine = make_engine(store, provider, clock, port, provider_concurrency=1)
    await engine.start()
    return engine, port


async def _money_matches(db: Database, job: Job, delivered: int) -> None:
    assert job.delivered == delivered
    assert await ledger(db, job.id) == {
        "reserve": job.reserved,
        "charge": delivered,
        "refund": job.reserved - delivered,
    }


async def test_queued_and_running_jobs_resume(db: Database, clock: FakeClock) -> None:
    store = make_store(db, clock)
    provider = ScriptedProvider(clock, Script(duration=40.0))
    first_port = RecordingPort()
    first = make_engine(store, provider, clock, first_port, provider_concurrency=1)
    await first.start()
    running = await first.submit(requester("a"), request(count=2))
    queued = await first.submit(requester("b"), request(count=1))
    await advance_until(clock, store, lambda: len(provider.status_calls) >= 1)
    assert await _state(store, running.id) is JobState.RUNNING
    assert await _state(store, queued.id) is JobState.QUEUED

    engine, port = await _restart(first, store, provider, clock)
    try:
        assert engine.queue_position(queued.id) == 1
        done_running = await run_until_final(clock, store, running.id)
        done_queued = await run_until_final(clock, store, queued.id)
        assert done_running.state is done_queued.state is JobState.DONE
        assert done_running.task_id == "task-1"  # resumed, not resubmitted
        assert provider.submit_calls == 2
        assert len(port.delivered(running.id)) == len(port.delivered(queued.id)) == 1
        assert first_port.deliveries == []
        await _money_matches(db, done_running, 2)
        await _money_matches(db, done_queued, 1)
    finally:
        await engine.close()


async def test_a_job_caught_submitting_fails_with_a_refund_and_is_not_resent(
    db: Database, clock: FakeClock
) -> None:
    store = make_store(db, clock)
    provider = ScriptedProvider(clock)
    provider.submit_gate = asyncio.Event()  # the submit never returns: the bot dies here
    first = make_engine(store, provider, clock, RecordingPort())
    await first.start()
    job = await first.submit(requester(), request(count=3))
    await eventually(lambda: provider.submit_calls == 1, what="the submit")
    await quiesce(store)
    assert await _state(store, job.id) is JobState.SUBMITTING

    provider.submit_gate = None
    engine, port = await _restart(first, store, provider, clock)
    try:
        final = await run_until_final(clock, store, job.id)
        assert final.state is JobState.FAILED and final.error_code == "submit_interrupted"
        assert final.error_kind is ErrorKind.PROVIDER_OUTAGE
        await eventually(lambda: bool(port.failed(job.id)), what="the failure message")
        assert "not sent again" in failure_text(port.failed(job.id)[0])
        assert provider.submit_calls == 1
        await _money_matches(db, final, 0)
    finally:
        await engine.close()


async def test_a_job_caught_delivering_is_delivered_once(db: Database, clock: FakeClock) -> None:
    store = make_store(db, clock)
    provider = ScriptedProvider(clock, Script(duration=25.0))
    first_port = RecordingPort()
    first_port.deliver_gate = asyncio.Event()  # posting hangs: the bot dies here
    first = make_engine(store, provider, clock, first_port, close_grace_seconds=0.0)
    await first.start()
    job = await first.submit(requester(), request(count=2))
    await advance_until(clock, store, lambda: bool(first_port.deliver_started))
    assert await _state(store, job.id) is JobState.DELIVERING

    engine, port = await _restart(first, store, provider, clock)
    try:
        final = await run_until_final(clock, store, job.id)
        assert final.state is JobState.DONE
        assert first_port.deliveries == [] and len(port.delivered(job.id)) == 1
        assert provider.submit_calls == 1
        await _money_matches(db, final, 2)
    finally:
        await engine.close()


async def test_a_second_start_and_a_second_settle_change_nothing(
    db: Database, clock: FakeClock
) -> None:
    store = make_store(db, clock)
    provider = ScriptedProvider(clock, Script(duration=20.0))
    port = RecordingPort()
    engine = make_engine(store, provider, clock, port)
    await engine.start()
    try:
        job = await engine.submit(requester(), request(count=2))
        final = await run_until_final(clock, store, job.id)
        await engine.start()  # idempotent: no second recovery
        again = await store.finish(job.id, JobState.DONE, delivered=2)
        assert again.state is JobState.DONE
        assert len(port.delivered(job.id)) == 1
        await _money_matches(db, final, 2)
    finally:
        await engine.close()

    later, later_port = await _restart(engine, store, provider, clock)
    try:
        await quiesce(store)
        assert later.active_count == 0 and later_port.updates == []
    finally:
        await later.close()


async def test_close_lets_a_delivery_under_way_finish(db: Database, clock: FakeClock) -> None:
    # A SIGTERM while results are being posted: the post completes and is recorded
    # (DONE, charged) instead of being cut off half-way.
    store = make_store(db, clock)
    provider = ScriptedProvider(clock, Script(duration=30.0))
    port = RecordingPort()
    port.deliver_gate = asyncio.Event()
    engine = make_engine(store, provider, clock, port)
    await engine.start()
    job = await engine.submit(requester(), request(count=1))
    await advance_until(clock, store, lambda: job.id in port.deliver_started)
    closing = asyncio.create_task(engine.close())
    for _ in range(50):  # plenty of loop turns for close() to have cancelled everything
        await asyncio.sleep(0)
    assert not closing.done()
    port.deliver_gate.set()
    await closing
    final = await store.get(job.id)
    assert final is not None and final.state is JobState.DONE and final.delivered == 1


async def test_a_request_during_shutdown_is_refused_without_a_charge(
    db: Database, clock: FakeClock
) -> None:
    store = make_store(db, clock)
    provider = ScriptedProvider(clock, Script(duration=30.0))
    port = RecordingPort()
    port.deliver_gate = asyncio.Event()  # a delivery holds close() in its grace period
    engine = make_engine(store, provider, clock, port)
    await engine.start()
    first = await engine.submit(requester(), request(count=1))
    await advance_until(clock, store, lambda: first.id in port.deliver_started)
    closing = asyncio.create_task(engine.close())
    for _ in range(20):
        await asyncio.sleep(0)
    with pytest.raises(ShuttingDown):
        await engine.submit(requester(), request(count=1))
    port.deliver_gate.set()
    await closing
    assert [job.id for job in await store.active_jobs()] == []  # nothing else stored


async def test_a_restart_after_the_deadline_still_delivers_a_finished_task(
    db: Database, clock: FakeClock
) -> None:
    # The bot was down longer than the job's deadline; its task finished meanwhile
    # (and was paid for): the result is delivered, not thrown away as timed out.
    store = make_store(db, clock)
    provider = ScriptedProvider(clock, Script(duration=60.0))
    first = make_engine(store, provider, clock, RecordingPort(), deadline_seconds=900.0)
    await first.start()
    job = await first.submit(requester(), request(count=1))
    await advance_until(clock, store, lambda: bool(provider.tasks))
    await first.close()
    await clock.advance(1000.0)  # downtime beyond the 900 s deadline
    engine, port = await _restart(first, store, provider, clock)
    try:
        final = await run_until_final(clock, store, job.id)
        assert final.state is JobState.DONE and len(port.delivered(job.id)) == 1
        await _money_matches(db, final, 1)
    finally:
        await engine.close()


async def test_a_clean_stop_starts_no_new_submit(db: Database, clock: FakeClock) -> None:
    # One running slot per user: the second job waits. A stop while the first is
    # being delivered must not send the second (it would be cut off mid-submit).
    store = make_store(db, clock)
    provider = ScriptedProvider(clock, Script(duration=30.0))
    port = RecordingPort()
    port.deliver_gate = asyncio.Event()
    engine = make_engine(store, provider, clock, port, max_running_per_user=1)
    await engine.start()
    first = await engine.submit(requester(), request(count=1))
    second = await engine.submit(requester(), request(count=1))
    await advance_until(clock, store, lambda: first.id in port.deliver_started)
    closing = asyncio.create_task(engine.close())
    for _ in range(20):
        await asyncio.sleep(0)
    port.deliver_gate.set()  # the first delivery ends inside the grace period
    await closing
    assert provider.submit_calls == 1
    assert await _state(store, first.id) is JobState.DONE
    assert await _state(store, second.id) is JobState.QUEUED  # sent after the restart

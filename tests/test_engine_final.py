"""`JobEngine.wait_final` and `on_final`: front ends hear of a job's end from the engine
that settles it (woken, never polling the store), once per job."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

import pytest

from bot.core.clock import FakeClock
from bot.core.engine import EngineConfig, JobEngine
from bot.core.engine.context import Context
from bot.core.engine.settle import Settle
from bot.core.errors import NotAllowed, NotFound
from bot.core.metrics import NO_METRICS
from bot.core.models import Job, JobState
from tests.engine_doubles import (
    RecordingPort,
    Script,
    ScriptedProvider,
    TrackedStore,
    advance_until,
    eventually,
    make_engine,
    quiesce,
    request,
    requester,
    run_until_final,
)


class CountingStore:
    """Counts reads, to show a waiter reads the store once and then only waits."""

    def __init__(self, inner: TrackedStore) -> None:
        self.inner = inner
        self.gets = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def get(self, job_id: str) -> Job | None:
        self.gets += 1
        job: Job | None = await self.inner.get(job_id)
        return job


async def test_wait_final_wakes_when_the_job_finishes_later(
    engine: JobEngine, store: TrackedStore, clock: FakeClock, port: RecordingPort
) -> None:
    counting = CountingStore(store)
    engine.store = counting  # type: ignore[assignment]
    job = await engine.submit(requester(), request(count=2))
    waiter = asyncio.ensure_future(engine.wait_final(job.id))
    await advance_until(clock, store, lambda: engine.active_count == 1 and counting.gets > 0)
    reads = counting.gets
    await clock.advance(10.0)  # polls happen; the waiter does not read again
    await quiesce(store)
    assert not waiter.done() and counting.gets == reads

    final = await run_until_final(clock, store, job.id)
    done = await asyncio.wait_for(waiter, 5)
    assert final.state is JobState.DONE
    assert done.state is JobState.DONE and done.delivered == 2 == len(port.delivered(job.id)[0][1])
    assert counting.gets == reads  # woken by the engine, not by reading the store again


async def test_wait_final_returns_a_job_already_final_at_once(
    engine: JobEngine, store: TrackedStore
) -> None:
    job = await engine.submit(requester(), request())
    await engine.cancel(job.id, requester())
    # No fake time passes: it must not wait for anything.
    done = await asyncio.wait_for(engine.wait_final(job.id.upper(), timeout=1.0), 5)
    assert done.id == job.id and done.state is JobState.CANCELLED
    with pytest.raises(NotFound):
        await engine.wait_final("zzzzzzzzzz")


async def test_wait_final_times_out_on_the_engine_clock(
    engine: JobEngine, store: TrackedStore, provider: ScriptedProvider, clock: FakeClock
) -> None:
    provider.script = Script(duration=600.0)
    job = await engine.submit(requester(), request())
    waiter = asyncio.ensure_future(engine.wait_final(job.id, timeout=20.0))
    await quiesce(store)
    await clock.advance(19.0)
    await quiesce(store)
    assert not waiter.done()
    await clock.advance(1.0)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(waiter, 5)
    current = await engine.get(job.id)
    assert current is not None and not current.state.final  # the job itself goes on


async def test_a_listener_hears_of_each_job_once_even_when_settling_races(
    engine: JobEngine, store: TrackedStore, clock: FakeClock, provider: ScriptedProvider
) -> None:
    heard: list[tuple[str, JobState]] = []

    async def listener(job: Job) -> None:
        heard.append((job.id, job.state))

    engine.on_final(listener)
    provider.script = Script(duration=600.0)
    cancelled = await engine.submit(requester(), request())
    await advance_until(clock, store, lambda: bool(provider.tasks))
    # Two cancels and the deadline all try to settle the same job: one wins.
    results = await asyncio.gather(
        engine.cancel(cancelled.id, requester()),
        engine.cancel(cancelled.id, requester("boss", admin=True)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Job) for r in results) == 1
    assert all(isinstance(r, Job | NotAllowed) for r in results)
    await eventually(lambda: len(heard) == 1, what="the listener")

    provider.script = Script(duration=10.0)
    delivered = await engine.submit(requester(), request())
    final = await run_until_final(clock, store, delivered.id)
    await eventually(lambda: len(heard) == 2, what="the listener")
    with contextlib.suppress(NotAllowed):
        await engine.cancel(delivered.id, requester())
    await clock.advance(3600.0)  # past every deadline
    await quiesce(store)
    assert final.state is JobState.DONE
    assert heard == [(cancelled.id, JobState.CANCELLED), (delivered.id, JobState.DONE)]


async def test_a_failing_listener_is_logged_and_breaks_nothing(
    engine: JobEngine,
    store: TrackedStore,
    clock: FakeClock,
    port: RecordingPort,
    caplog: pytest.LogCaptureFixture,
) -> None:
    heard: list[str] = []

    async def broken(job: Job) -> None:
        raise RuntimeError("listener bug")

    async def fine(job: Job) -> None:
        heard.append(job.id)

    engine.on_final(broken)
    engine.on_final(fine)
    caplog.set_level(logging.ERROR)
    first = await engine.submit(requester(), request())
    assert (await run_until_final(clock, store, first.id)).state is JobState.DONE
    await eventually(lambda: heard == [first.id], what="the other listener")
    await eventually(
        lambda: any("final-state listener failed" in r.getMessage() for r in caplog.records),
        what="the log line",
    )
    second = await engine.submit(requester(), request())
    assert (await run_until_final(clock, store, second.id)).state is JobState.DONE
    await eventually(lambda: heard == [first.id, second.id], what="the next job")
    assert len(port.deliveries) == 2


async def test_a_listener_still_running_is_cancelled_on_close(
    store: TrackedStore, provider: ScriptedProvider, clock: FakeClock, port: RecordingPort
) -> None:
    engine = make_engine(store, provider, clock, port, close_grace_seconds=0.0)
    await engine.start()
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow(job: Job) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    engine.on_final(slow)
    job = await engine.submit(requester(), request())
    await engine.cancel(job.id, requester())
    await asyncio.wait_for(started.wait(), 5)
    await engine.close()
    assert cancelled.is_set()


async def test_settling_the_same_job_again_is_not_news(
    store: TrackedStore, provider: ScriptedProvider, clock: FakeClock
) -> None:
    """The part alone: a second report of one job's end (however it came) wakes and
    calls nobody again."""
    ctx = Context(store, provider, clock, EngineConfig(), NO_METRICS, random.Random(0))  # type: ignore[arg-type]
    settle = Settle(ctx)
    heard: list[str] = []

    async def listener(job: Job) -> None:
        heard.append(job.id)

    settle.on_final(listener)
    job = Job(
        id="a1b2c3d4e5",
        requester=requester(),
        provider=provider.name,
        request=request(),
        state=JobState.DONE,
        created_at=clock.now(),
        updated_at=clock.now(),
    )
    settle.settled(job)
    settle.settled(job)
    settle.settled(job.model_copy(update={"state": JobState.FAILED}))
    await eventually(lambda: heard == [job.id], what="the listener")
    await ctx.tasks.close()
    assert heard == [job.id] and len(ctx.tasks) == 0

"""The job engine end to end on a real SQLite store, the fake clock and a scripted
provider: delivery, money, every failure class, deadline, cancel, fairness, limits."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging

import pytest

from bot.chat.wording import ADMINS_TOLD, failure_text, partial_note
from bot.core.alerts import AlertThrottle, FanOut, LogAlerts
from bot.core.clock import FakeClock
from bot.core.engine import JobEngine
from bot.core.errors import (
    NotAllowed,
    NotFound,
    ProviderError,
    SubmitUncertain,
    ValidationFailed,
)
from bot.core.models import (
    AdminAlert,
    AlertCause,
    ErrorKind,
    FailureCategory,
    JobState,
    ProviderFailure,
)
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
    quiesce,
    request,
    requester,
    run_until_final,
)

# --- the whole flow ------------------------------------------------------------------


async def test_whole_flow_delivers_and_charges_what_was_delivered(
    engine: JobEngine, store: TrackedStore, port: RecordingPort, db: Database, clock: FakeClock
) -> None:
    job = await engine.submit(requester(), request(count=2), delivery={"channel": "c1"})
    assert job.state is JobState.QUEUED and job.reserved == 2
    final = await run_until_final(clock, store, job.id)
    assert final.state is JobState.DONE
    assert final.delivered == 2
    assert final.delivery["channel"] == "c1"  # the front end's data is kept
    assert final.delivery["message_id"] == f"msg-{job.id}"
    [(_, images, failed)] = port.delivered(job.id)
    assert [image.index for image in images] == [0, 1] and failed == 0
    assert await ledger(db, job.id) == {"reserve": 2, "charge": 2, "refund": 0}

    updates = port.updates_for(job.id)
    assert updates[0][0].state in (JobState.QUEUED, JobState.SUBMITTING)  # the first, at once
    assert updates[-1][0].state is JobState.DELIVERING  # the last before the results
    assert any(u.state is JobState.RUNNING and u.progress for u, _ in updates)
    # At most one update per interval; only the final one may come sooner.
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(updates[:-1])]
    assert gaps and all(gap >= engine.config.progress_interval - 1e-9 for gap in gaps)


async def test_partial_success_charges_k_of_n_and_says_so(
    engine: JobEngine,
    store: TrackedStore,
    provider: ScriptedProvider,
    port: RecordingPort,
    db: Database,
    clock: FakeClock,
) -> None:
    provider.script = Script(duration=20.0, results=2)
    job = await engine.submit(requester(), request(count=4))
    final = await run_until_final(clock, store, job.id)

    assert final.state is JobState.DONE and final.delivered == 2
    [(_, images, failed)] = port.delivered(job.id)
    assert len(images) == 2 and failed == 2
    assert partial_note(failed, 4) == "2 of 4 images failed; you were not charged for them."
    assert await ledger(db, job.id) == {"reserve": 4, "charge": 2, "refund": 2}


async def test_a_result_that_cannot_be_downloaded_is_not_charged(
    engine: JobEngine,
    store: TrackedStore,
    provider: ScriptedProvider,
    port: RecordingPort,
    db: Database,
    clock: FakeClock,
) -> None:
    job = await engine.submit(requester(), request(count=3))
    await advance_until(clock, store, lambda: bool(provider.tasks))
    [task_id] = provider.tasks
    provider.broken_urls.add(provider.result_url(task_id, 1))
    final = await run_until_final(clock, store, job.id)

    assert final.delivered == 2
    [(_, images, failed)] = port.delivered(job.id)
    assert [image.index for image in images] == [0, 2] and failed == 1
    assert await ledger(db, job.id) == {"reserve": 3, "charge": 2, "refund": 1}


# --- failures tell the true cause, and refund ------------------------------------------


async def _failed_with(
    engine: JobEngine,
    store: TrackedStore,
    port: RecordingPort,
    db: Database,
    clock: FakeClock,
    count: int = 2,
) -> tuple[str, ErrorKind, str]:
    job = await engine.submit(requester(), request(count=count))
    final = await run_until_final(clock, store, job.id)
    assert final.state is JobState.FAILED
    assert final.delivered == 0
    assert await ledger(db, job.id) == {"reserve": count, "charge": 0, "refund": count}
    await quiesce_port(port, job.id)
    [error] = port.failed(job.id)
    assert error.kind is final.error_kind and error.job_id == job.id
    assert port.delivered(job.id) == []
    return job.id, error.kind, failure_text(error)


class AlertRecorder:
    """An `AdminAlerts` sink that tells a person and remembers what it was told."""

    def __init__(self) -> None:
        self.sent: list[AdminAlert] = []

    async def alert(self, alert: AdminAlert) -> bool:
        self.sent.append(alert)
        return True


async def quiesce_port(port: RecordingPort, job_id: str) -> None:
    await eventually(lambda: bool(port.failed(job_id)), what="the failure message")


async def test_refused_prompt_is_the_users_to_fix(
    engine: JobEngine,
    store: TrackedStore,
    provider: ScriptedProvider,
    port: RecordingPort,
    db: Database,
    clock: FakeClock,
) -> None:
    provider.script = Script(
        duration=10.0,
        failure=ProviderFailure(
            code="content_policy_violation",
            message="prompt flagged",
            category=FailureCategory.USER,
        ),
    )
    alerts = AlertRecorder()
    engine.alerts = AlertThrottle(alerts, clock)
    _, kind, message = await _failed_with(engine, store, port, db, clock)
    assert kind is ErrorKind.USER_INPUT
    assert "prompt flagged" in message and "change the prompt or image" in message
    assert alerts.sent == []
    assert ADMINS_TOLD not in message
    assert provider.submit_calls == 1  # the user's fault is never retried


async def test_billing_trouble_blames_the_bot_and_alerts_admins_once(
    engine: JobEngine,
    store: TrackedStore,
    provider: ScriptedProvider,
    port: RecordingPort,
    db: Database,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # As the runtime composes it: the log and a person, one message per server an hour.
    alerts = AlertRecorder()
    engine.alerts = AlertThrottle(FanOut([LogAlerts(), alerts]), clock)
    for _ in range(2):
        provider.submit_errors.append(
            ProviderError(FailureCategory.CONFIG, "insufficient_quota", "no balance", status=402)
        )
    with caplog.at_level(logging.ERROR, logger="bot.core"):
        for _ in range(2):
            _, kind, message = await _failed_with(engine, store, port, db, clock)
            assert kind is ErrorKind.PROVIDER_CONFIG
            assert "account has a problem (billing, key or access)" in message
            assert "prompt" not in message
            assert ADMINS_TOLD in message
    await eventually(lambda: len(alerts.sent) == 1, what="the admin alert")
    assert alerts.sent[0].cause is AlertCause.PROVIDER_SETUP
    assert "insufficient_quota" in alerts.sent[0].detail
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1

    # The provider works again; an hour on, a new outage is worth a new alert.
    job = await engine.submit(requester(), request())
    assert (await run_until_final(clock, store, job.id)).state is JobState.DONE
    await clock.advance(3600)
    provider.submit_errors.append(ProviderError(FailureCategory.CONFIG, "unauthorized", status=401))
    await _failed_with(engine, store, port, db, clock)
    await eventually(lambda: len(alerts.sent) == 2, what="a second alert")
    assert "unauthorized" in alerts.sent[1].detail


async def test_transient_submit_errors_are_retried_then_reported_as_an_outage(
    engine: JobEngine,
    store: TrackedStore,
    provider: ScriptedProvider,
    port: RecordingPort,
    db: Database,
    clock: FakeClock,
) -> None:
    # Adapters raise a plain ProviderError from submit only with proof that no task
    # was made (a 429, a refused connection); anything uncertain is SubmitUncertain.
    provider.submit_errors.append(ProviderError(FailureCategory.TRANSIENT, "http_429", status=429))
    job = await engine.submit(requester(), request())
    assert (await run_until_final(clock, store, job.id)).state is JobState.DONE
    assert provider.submit_calls == 2  # refused once (never made), then accepted

    provider.submit_calls = 0
    for _ in range(5):
        provider.submit_errors.append(ProviderError(FailureCategory.TRANSIENT, "connect_failed"))
    _, kind, message = await _failed_with(engine, store, port, db, clock)
    assert kind is ErrorKind.PROVIDER_OUTAGE and "try again in a few minutes" in message
    assert provider.submit_calls == engine.config.submit_attempts


async def test_failing_status_queries_end_as_an_outage(
    engine: JobEngine,
    store: TrackedStore,
    provider: ScriptedProvider,
    port: RecordingPort,
    db: Database,
    clock: FakeClock,
) -> None:
    for _ in range(20):
        provider.status_errors.append(ProviderError(FailureCategory.TRANSIENT, "timeout"))
    _, kind, _ = await _failed_with(engine, store, port, db, clock)
    assert kind is ErrorKind.PROVIDER_OUTAGE
    assert len(provider.status_calls) == engine.config.status_error_limit


async def test_a_status_query_refused_as_bad_request_does_not_blame_the_user(
    engine: JobEngine,
    store: TrackedStore,
    provider: ScriptedProvider,
    port: RecordingPort,
    db: Database,
    clock: FakeClock,
) -> None:
    # The request was accepted at submit; a 400 on GET /tasks/{id} is not about it.
    provider.status_errors.append(
        ProviderError(FailureCategory.USER, "InvalidParameter", "bad task id", status=400)
    )
    _, kind, _ = await _failed_with(engine, store, port, db, clock)
    assert kind is ErrorKind.PROVIDER_OUTAGE


async def test_submit_uncertain_fails_with_a_refund_and_is_never_resent(
    engine: JobEngine,
    store: TrackedStore,
    provider: ScriptedProvider,
    port: RecordingPort,
    db: Database,
    clock: FakeClock,
) -> None:
    provider.submit_errors.append(SubmitUncertain("timed out after sending"))
    job_id, kind, message = await _failed_with(engine, store, port, db, clock)
    assert kind is ErrorKind.PROVIDER_OUTAGE
    assert "not sent again" in message and "not charged" in message
    assert provider.submit_calls == 1
    job = await store.get(job_id)
    assert job is not None and job.error_code == "submit_uncertain"


async def test_a_transient_task_failure_gets_one_fresh_task(
    engine: JobEngine,
    store: TrackedStore,
    provider: ScriptedProvider,
    port: RecordingPort,
    clock: FakeClock,
) -> None:
    provider.script = Script(
        duration=15.0,
        failure=ProviderFailure(code="service_error", category=FailureCategory.TRANSIENT),
    )
    job = await engine.submit(requester(), request())
    await advance_until(clock, store, lambda: provider.submit_calls == 2)
    provider.script = Script(duration=15.0)
    for task in provider.tasks.values():
        task.script = provider.script if task.id == "task-2" else task.script
    final = await run_until_final(clock, store, job.id)
    assert final.state is JobState.DONE and final.task_id == "task-2"
    assert len(port.delivered(job.id)) == 1


async def test_the_deadline_fails_refunds_and_cancels_at_the_provider(
    store: TrackedStore,
    provider: ScriptedProvider,
    port: RecordingPort,
    db: Database,
    clock: FakeClock,
) -> None:
    provider.script = Script(duration=5000.0)
    engine = make_engine(store, provider, clock, port, deadline_seconds=120.0)
    await engine.start()
    try:
        _, kind, message = await _failed_with(engine, store, port, db, clock)
        assert kind is ErrorKind.TIMEOUT and "2 minutes" in message
        assert clock.monotonic() == pytest.approx(120.0, abs=0.01)
        await eventually(lambda: provider.cancelled == ["task-1"], what="the provider cancel")
    finally:
        await engine.close()


async def test_an_unexpected_exception_is_internal_and_logged_with_the_job_id(
    engine: JobEngine,
    store: TrackedStore,
    provider: ScriptedProvider,
    port: RecordingPort,
    db: Database,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider.status_errors.append(KeyError("a bug in an adapter"))
    job_id, kind, message = await _failed_with(engine, store, port, db, clock)
    assert kind is ErrorKind.INTERNAL and job_id in message
    assert any(job_id in r.getMessage() and r.exc_info for r in caplog.records)


async def test_posting_that_keeps_failing_refunds_everything(
    engine: JobEngine,
    store: TrackedStore,
    port: RecordingPort,
    db: Database,
    clock: FakeClock,
) -> None:
    port.deliver_errors = 99
    _, kind, _ = await _failed_with(engine, store, port, db, clock)
    assert kind is ErrorKind.INTERNAL
    assert len(port.deliver_started) == engine.config.deliver_attempts


async def test_posting_that_fails_once_is_retried(
    engine: JobEngine, store: TrackedStore, port: RecordingPort, db: Database, clock: FakeClock
) -> None:
    port.deliver_errors = 1
    job = await engine.submit(requester(), request(count=2))
    final = await run_until_final(clock, store, job.id)
    assert final.state is JobState.DONE and len(port.delivered(job.id)) == 1
    assert await ledger(db, job.id) == {"reserve": 2, "charge": 2, "refund": 0}


# --- cancel --------------------------------------------------------------------------


async def test_cancel_a_queued_and_a_running_job(
    store: TrackedStore,
    provider: ScriptedProvider,
    port: RecordingPort,
    db: Database,
    clock: FakeClock,
) -> None:
    engine = make_engine(store, provider, clock, port, provider_concurrency=1)
    await engine.start()
    try:
        running = await engine.submit(requester("alice"), request(count=2))
        queued = await engine.submit(requester("alice"), request(count=3))
        await advance_until(clock, store, lambda: bool(provider.tasks))
        assert engine.queue_position(queued.id) == 1

        with pytest.raises(NotAllowed):
            await engine.cancel(queued.id, requester("mallory"))
        with pytest.raises(NotAllowed):  # an admin of another server is nobody here
            await engine.cancel(queued.id, requester("root", guild="g2", admin=True))
        with pytest.raises(NotFound):
            await engine.cancel("zzzzzzzzzz", requester("alice"))

        done = await engine.cancel(queued.id.upper(), requester("alice"))  # ids forgive case
        assert done.state is JobState.CANCELLED and done.error_kind is ErrorKind.CANCELLED
        assert engine.queue_position(queued.id) is None
        assert await ledger(db, queued.id) == {"reserve": 3, "charge": 0, "refund": 3}

        await engine.cancel(running.id, requester("boss", admin=True))  # same server's admin
        await eventually(lambda: provider.cancelled == ["task-1"], what="the provider cancel")
        assert await ledger(db, running.id) == {"reserve": 2, "charge": 0, "refund": 2}
        await eventually(lambda: len(port.failures) == 2, what="both cancel messages")
        assert "Cancelled by an admin" in failure_text(port.failed(running.id)[0])
        assert "Cancelled by you" in failure_text(port.failed(queued.id)[0])

        with pytest.raises(NotAllowed):  # already final
            await engine.cancel(running.id, requester("alice"))
        # Nothing happens afterwards: no more polls, no delivery, only one task ever.
        calls = len(provider.status_calls)
        await clock.advance(120)
        assert len(provider.status_calls) == calls
        assert provider.submit_calls == 1 and port.deliveries == []
    finally:
        await engine.close()


async def test_cancel_is_refused_once_results_are_being_posted(
    engine: JobEngine, store: TrackedStore, port: RecordingPort, db: Database, clock: FakeClock
) -> None:
    port.deliver_gate = asyncio.Event()
    job = await engine.submit(requester(), request(count=1))
    await advance_until(clock, store, lambda: bool(port.deliver_started))
    with pytest.raises(NotAllowed, match="being posted"):
        await engine.cancel(job.id, requester())
    port.deliver_gate.set()
    final = await run_until_final(clock, store, job.id)
    assert final.state is JobState.DONE
    assert await ledger(db, job.id) == {"reserve": 1, "charge": 1, "refund": 0}


async def test_cancel_racing_a_completion_has_one_winner(
    engine: JobEngine,
    store: TrackedStore,
    provider: ScriptedProvider,
    port: RecordingPort,
    db: Database,
    clock: FakeClock,
) -> None:
    provider.script = Script(duration=10.0, progress=False, hint=10.0)
    job = await engine.submit(requester(), request(count=2))
    await advance_until(clock, store, lambda: bool(provider.tasks))
    await clock.advance(10.0)  # finished at the provider; the poll is on its way
    with contextlib.suppress(NotAllowed):
        await engine.cancel(job.id, requester())
    final = await run_until_final(clock, store, job.id)
    charged = (await ledger(db, job.id))["charge"]
    assert charged == final.delivered == sum(len(d[1]) for d in port.delivered(job.id))
    assert final.state in (JobState.DONE, JobState.CANCELLED)


# --- fairness, positions, limits -------------------------------------------------------


async def test_queue_is_round_robin_across_users_and_shows_positions(
    store: TrackedStore,
    provider: ScriptedProvider,
    port: RecordingPort,
    clock: FakeClock,
) -> None:
    engine = make_engine(store, provider, clock, port, provider_concurrency=1)
    await engine.start()
    try:
        heavy = [await engine.submit(requester("heavy"), request()) for _ in range(4)]
        light = [await engine.submit(requester("light"), request()) for _ in range(2)]
        expected = [heavy[1], light[0], heavy[2], light[1], heavy[3]]
        assert [engine.queue_position(j.id) for j in expected] == [1, 2, 3, 4, 5]
        assert engine.queue_position(heavy[0].id) is None  # took the only slot

        await quiesce(store)
        # The light user's jobs moved some of heavy's back; within one progress
        # interval every job shows its current place.
        await clock.advance(engine.config.progress_interval)
        await quiesce(store)
        assert [shown_positions(port, j.id)[-1] for j in expected] == [1, 2, 3, 4, 5]
        seen = len(port.updates)

        finals = [await run_until_final(clock, store, j.id) for j in [heavy[0], *expected]]
        started = [provider.tasks[job.task_id or ""].started for job in finals]
        assert started == sorted(started)  # submitted in the fair order
        # From here on, places only ever went down as the queue drained.
        for job in expected:
            later = [u.queue_position for jid, u, _ in port.updates[seen:] if jid == job.id]
            places = [p for p in later if p is not None]
            assert places == sorted(places, reverse=True)
    finally:
        await engine.close()


def shown_positions(port: RecordingPort, job_id: str) -> list[int]:
    return [u.queue_position for u, _ in port.updates_for(job_id) if u.queue_position]


async def test_status_queries_respect_the_rate_and_back_off_on_429(
    store: TrackedStore,
    provider: ScriptedProvider,
    port: RecordingPort,
    clock: FakeClock,
) -> None:
    provider.script = Script(duration=20.0, progress=False, hint=20.0)
    engine = make_engine(store, provider, clock, port, status_rps=1.0, status_burst=1)
    await engine.start()
    try:
        jobs = [await engine.submit(requester(f"user{i}"), request()) for i in range(5)]
        await advance_until(clock, store, lambda: len(provider.status_calls) >= 5)
        provider.status_errors.append(
            ProviderError(FailureCategory.TRANSIENT, "rate_limited", status=429, retry_after=10.0)
        )
        for job in jobs:
            await run_until_final(clock, store, job.id)
        times = [t for _, t in provider.status_calls]
        assert all(b - a >= 1.0 - 1e-9 for a, b in itertools.pairwise(times))
        # Nothing at all was asked during the 10 s the provider asked for.
        assert times[6] - times[5] >= 10.0 - 1e-9
        assert all(len(port.delivered(job.id)) == 1 for job in jobs)
    finally:
        await engine.close()


async def test_a_request_the_adapter_refuses_is_the_users_to_fix(
    engine: JobEngine,
    store: TrackedStore,
    provider: ScriptedProvider,
    port: RecordingPort,
    db: Database,
    clock: FakeClock,
) -> None:
    provider.submit_errors.append(ValidationFailed(["at most 2 input images"]))
    _, kind, message = await _failed_with(engine, store, port, db, clock)
    assert kind is ErrorKind.USER_INPUT and "at most 2 input images" in message


async def test_a_user_never_has_more_than_their_running_limit_at_the_provider(
    store: TrackedStore,
    provider: ScriptedProvider,
    port: RecordingPort,
    clock: FakeClock,
) -> None:
    provider.script = Script(duration=30.0)
    engine = make_engine(
        store, provider, clock, port, provider_concurrency=8, max_running_per_user=2
    )
    await engine.start()
    try:
        eve = [await engine.submit(requester("eve"), request()) for _ in range(4)]
        bob = await engine.submit(requester("bob"), request())
        await advance_until(clock, store, lambda: len(provider.tasks) == 3)
        assert engine.queue_position(eve[2].id) == 1  # waits although slots are free
        assert engine.queue_position(bob.id) is None  # bob is not held up by eve

        started_at = {}
        for job in [*eve, bob]:
            final = await run_until_final(clock, store, job.id)
            started_at[job.id] = provider.tasks[final.task_id or ""].started
        # eve's third job started only when one of her first two had finished.
        assert started_at[eve[2].id] >= min(started_at[eve[0].id], started_at[eve[1].id]) + 30
        assert len(port.deliveries) == 5
    finally:
        await engine.close()

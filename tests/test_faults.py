"""Fault matrix: the provider and Discord misbehave in every documented way, and every
job still reaches a final state, the user is told the TRUE kind of cause, and only
delivered images are charged.

In-process: the real WanBot (discord.py) against the fake Discord, the production
Runtime with the APIXO adapter against the fake APIXO server, on a FakeClock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.core.alerts import alert_text
from bot.core.clock import FakeClock
from bot.core.models import AdminAlert, ErrorKind, JobState
from tests.fakes.providers import Fault
from tests.reliability.audit import (
    answer_text,
    check_money,
    failure_shown,
    kind_shown,
    result_messages,
    texts_of,
)
from tests.reliability.flows import everyone_told, imagine, job_for, settled_job
from tests.reliability.world import World, fast_apixo, open_world

RESULTS_POST = r"/channels/\d+/messages"  # results go to the job's thread
STATUS_EDIT = r"/webhooks/\d+/[^/]+/messages/\d+"  # status edits through the token

Step = Callable[[World], Awaitable[None]]


async def _nothing(world: World) -> None:
    return None


def provider_faults(route: str, *faults: Fault) -> Step:
    async def script(world: World) -> None:
        world.apixo.script_fault(route, *faults)

    return script


def discord_fault(method: str, pattern: str, status: int, **options: Any) -> Step:
    async def script(world: World) -> None:
        world.fake.fail_next(method, pattern, status, **options)

    return script


def on_task(act: Callable[[World, str], None]) -> Step:
    """Act on the provider task once the job has been submitted."""

    async def step(world: World) -> None:
        task = await world.apixo.next_task()
        act(world, task.id)

    return step


@dataclass(frozen=True)
class Case:
    id: str
    before: Step = _nothing  # scripted before the user asks
    during: Step = _nothing  # after the submit
    fails: ErrorKind | None = None  # None: delivered
    delivered: int = 1
    count: int = 1
    submits: int | None = None  # submit requests the provider must have seen
    fast: bool = False  # short real-time provider timeouts (the fake hangs)
    complete_after: int | None = 2
    settings: dict[str, Any] = field(default_factory=dict)


T, U, C = ErrorKind.TIMEOUT, ErrorKind.USER_INPUT, ErrorKind.PROVIDER_CONFIG
OUTAGE, BUG = ErrorKind.PROVIDER_OUTAGE, ErrorKind.INTERNAL
MANY = 60

CASES = [
    # --- provider: submit ---------------------------------------------------------------
    Case("submit-429-then-ok", provider_faults("submit", *[Fault.rate_limited(1)] * 2), submits=3),
    Case("submit-429-storm", provider_faults("submit", *[Fault.rate_limited(1)] * MANY),
         fails=OUTAGE, submits=3),
    # may have reached the provider: never sent twice (it would charge twice; issue 13)
    Case("submit-500-storm", provider_faults("submit", *[Fault.http(500)] * MANY),
         fails=OUTAGE, submits=1),
    Case("submit-502-html", provider_faults("submit", Fault.html(502)), fails=OUTAGE,
         submits=1),
    Case("submit-502-html-after-the-task-was-made",
         provider_faults("submit", Fault.html(502).after_task()), fails=OUTAGE, submits=1),
    Case("submit-504", provider_faults("submit", Fault.http(504)), fails=OUTAGE, submits=1),
    Case("submit-malformed-200", provider_faults("submit", Fault.malformed_json()),
         fails=OUTAGE, submits=1),
    Case("submit-timeout", provider_faults("submit", Fault.hang()), fails=OUTAGE, submits=1,
         fast=True),
    Case("submit-disconnect", provider_faults("submit", Fault.disconnect()), fails=OUTAGE,
         submits=1, fast=True),
    # the bot's provider account: never the user's fault
    Case("submit-401", provider_faults("submit", Fault.http(401)), fails=C, submits=1),
    Case("submit-402-billing", provider_faults("submit", Fault.http(402)), fails=C, submits=1),
    Case("submit-403", provider_faults("submit", Fault.http(403)), fails=C, submits=1),
    # APIXO's 400 is a malformed request: the bot's (the user's words were validated)
    Case("submit-400-refused", provider_faults("submit", Fault.http(400, message="bad prompt")),
         fails=C, submits=1),
    # --- provider: status ---------------------------------------------------------------
    Case("status-429-storm-then-ok", provider_faults("status", *[Fault.rate_limited(1)] * 10)),
    Case("status-500-storm", provider_faults("status", *[Fault.http(500)] * MANY), fails=OUTAGE,
         submits=1),
    Case("status-malformed-then-ok",
         provider_faults("status", Fault.malformed_json(), Fault.html(502),
                         Fault.malformed_json())),
    Case("status-timeouts-then-ok", provider_faults("status", Fault.hang(), Fault.hang()),
         fast=True),
    Case("status-401", provider_faults("status", *[Fault.http(401)] * MANY), fails=C),
    # --- provider: tasks ------------------------------------------------------------------
    Case("task-nsfw", during=on_task(lambda w, t: w.apixo.fail(t, "NSFW", "nsfw content")),
         fails=U, submits=1, complete_after=None),
    Case("task-transient-then-new-task-ok",
         during=on_task(lambda w, t: w.apixo.fail(t, "Timeout", "model timeout")), submits=2),
    # a vanished task may still be generating (and billing): never replaced
    Case("task-expired-not-replaced", during=on_task(lambda w, t: w.apixo.expire(t)),
         fails=OUTAGE, submits=1, complete_after=None),
    Case("task-never-finishes", fails=T, submits=1, complete_after=None,
         settings={"job_deadline_seconds": 600.0}),
    # --- provider: result files -----------------------------------------------------------
    Case("result-404", during=on_task(lambda w, t: w.apixo.break_result(t, 0)), fails=OUTAGE),
    Case("result-404-partial", during=on_task(lambda w, t: w.apixo.break_result(t, 1)),
         count=2, delivered=1),
    # --- Discord ------------------------------------------------------------------------
    Case("discord-429-via-retry-after",
         discord_fault("POST", RESULTS_POST, 429, retry_after=0.05, times=2)),
    Case("discord-429-global", discord_fault("POST", RESULTS_POST, 429, retry_after=0.05,
                                             is_global=True)),
    Case("discord-500-once", discord_fault("POST", RESULTS_POST, 500)),
    Case("discord-503-storm", discord_fault("POST", RESULTS_POST, 503, times=MANY), fails=BUG),
    Case("discord-413-once", discord_fault("POST", RESULTS_POST, 413, code=40005,
                                           message="Request entity too large")),
    Case("discord-413-always", discord_fault("POST", RESULTS_POST, 413, code=40005,
                                             message="Request entity too large", times=MANY),
         fails=BUG),
    Case("discord-50027-status-edits", discord_fault("PATCH", STATUS_EDIT, 401, code=50027,
                                                     message="Invalid Webhook Token", times=MANY)),
    Case("discord-10062-status-edits", discord_fault("PATCH", STATUS_EDIT, 404, code=10062,
                                                     message="Unknown interaction", times=MANY)),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_fault(case: Case, tmp_path: Path, clock: FakeClock) -> None:
    async with open_world(
        tmp_path,
        clock,
        complete_after=case.complete_after,
        provider=(lambda s, session: fast_apixo(s, clock, session)) if case.fast else None,
        **case.settings,
    ) as world:
        await case.before(world)
        interaction = await imagine(world, count=case.count)
        assert interaction.callback_type == 5  # acknowledged (deferred) within the window
        await world.settle()
        await case.during(world)
        job = await world.drive(lambda: settled_job(world, interaction))
        jobs = await world.jobs()
        assert [j.id for j in jobs] == [job.id]
        if case.submits is not None:
            assert len(world.apixo.requests_for("submit")) == case.submits
        if case.fails is None:
            assert job.state is JobState.DONE, (job.state, job.error_code, job.error_message)
            assert job.delivered == case.delivered
            [message] = result_messages(world.fake, job.id)
            status = world.fake.messages[interaction.original_message_id or ""]
            await world.drive(lambda: status["embeds"][0]["title"].startswith("✅"))
            if case.delivered < case.count:
                notes = "\n".join(texts_of(message))
                assert f"{case.count - case.delivered} of {case.count} images failed" in notes
        else:
            assert job.state is JobState.FAILED, (job.state, job.error_code)
            assert job.error_kind is case.fails, (job.error_kind, job.error_code)
            shown = failure_shown(world.fake, job)
            assert shown is not None
            assert kind_shown(shown) is case.fails, shown
            assert "charged" in shown  # and that they did not pay
            assert result_messages(world.fake, job.id) == []
        await check_money(world.rt.db, world.fake, jobs)


async def test_unknown_task_failures_are_the_services_fault(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Tasks failing with a code nobody knows: one fresh task is tried, then the job
    fails as the service's outage (not the user's input) and is refunded."""
    async with open_world(tmp_path, clock, complete_after=None) as world:
        interaction = await imagine(world)

        async def failing_every_task() -> object:
            for task in world.apixo.tasks.values():
                if task.state == "pending":
                    world.apixo.fail(task.id, "SomethingNew", "no idea")
            return await settled_job(world, interaction)

        job = await world.drive(failing_every_task)
        assert len(world.apixo.tasks) == 2  # one retry with a new task, then give up
        assert job.state is JobState.FAILED and job.error_kind is OUTAGE
        shown = failure_shown(world.fake, job)
        assert shown is not None and kind_shown(shown) is OUTAGE
        await check_money(world.rt.db, world.fake, [job])


async def test_provider_outage_alerts_admins_once_and_blames_nobody(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Billing trouble fails every job as the bot's problem, told once to the admins
    (through the runtime's alert port), never as the users' fault, and charges nobody."""
    async with open_world(tmp_path, clock) as world:
        alerts: list[str] = []

        class Sink:
            async def alert(self, alert: AdminAlert) -> bool:
                alerts.append(alert_text(alert))
                return True

        world.rt.alert_sinks.add(Sink())
        world.apixo.script_submit_fault(*[Fault.http(402)] * 5)
        for _ in range(5):
            await imagine(world)
        jobs = await world.drive(lambda: everyone_told(world))
        assert len(jobs) == 5
        for job in jobs:
            assert job.error_kind is C
            shown = failure_shown(world.fake, job)
            assert shown is not None and kind_shown(shown) is C and "not your fault" in shown
        assert len(alerts) == 1 and "402" in alerts[0]
        totals = await check_money(world.rt.db, world.fake, jobs)
        assert totals.charged == 0 and totals.refunded == 5


async def test_unknown_interaction_leaves_nothing_behind(tmp_path: Path, clock: FakeClock) -> None:
    """Discord says 10062 to the acknowledgement (the bot was too slow): nothing is
    reserved or left queued, and the bot keeps serving the next user."""
    async with open_world(tmp_path, clock) as world:
        world.fake.fail_next(
            "POST", r"/interactions/\d+/[^/]+/callback", 404, code=10062,
            message="Unknown interaction", times=2,
        )  # fmt: skip
        lost = await world.fake.slash("imagine", world.fake.add_user("late"), {"prompt": "x"})
        await world.fake.wait_request("POST", rf"/interactions/{lost.id}/.*", timeout=5)
        await world.settle()
        assert await world.jobs() == []
        assert await world.rows("SELECT * FROM ledger") == []
        assert lost.callback is None
        ok = await imagine(world)
        job = await world.drive(lambda: settled_job(world, ok))
        assert job.state is JobState.DONE
        await check_money(world.rt.db, world.fake, [job])


async def test_a_job_outliving_its_interaction_token_still_ends_well(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A job that takes 20 minutes: the 15-minute token is dead (the fake answers
    50027), so status edits go through the channel; results arrive exactly once."""
    async with open_world(tmp_path, clock, complete_after=None) as world:
        interaction = await imagine(world, count=2)
        await world.settle()
        task = await world.apixo.next_task()

        async def late() -> bool:
            if world.clock.monotonic() < 20 * 60:
                return False
            if world.apixo.task(task.id).state != "succeeded":
                world.apixo.complete(task.id)
            return True

        await world.drive(late)
        job = await world.drive(lambda: settled_job(world, interaction))
        assert job.state is JobState.DONE and job.delivered == 2
        status = world.fake.messages[interaction.original_message_id or ""]
        await world.drive(lambda: status["embeds"][0]["title"].startswith("✅"))
        # The final card went through the channel: the token was past its life.
        channel_edits = world.fake.find_requests("PATCH", rf"/channels/\d+/messages/{status['id']}")
        assert channel_edits and channel_edits[-1].ok
        assert channel_edits[-1].clock_at > 15 * 60
        assert channel_edits[-1].json["embeds"][0]["title"].startswith("✅")
        await check_money(world.rt.db, world.fake, [job])


async def test_quota_refusal_is_told_as_quota(tmp_path: Path, clock: FakeClock) -> None:
    """The fourth kind of cause: the user's own quota, told privately, nothing stored."""
    async with open_world(tmp_path, clock, default_user_limit=1) as world:
        user = world.fake.add_user("bob")
        first = await imagine(world, user)
        await world.drive(lambda: settled_job(world, first))
        second = await imagine(world, user)
        await world.settle()
        assert await job_for(world, second) is None
        text = answer_text(world.fake, second)
        assert "You have used 1 of 1 image today" in text, text
        assert not any(phrase in text for phrase in ("service", "our side"))
        await check_money(world.rt.db, world.fake, await world.jobs())

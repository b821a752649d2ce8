"""Several real bot processes share the work on one PostgreSQL (issue 16).

Three `python -m bot run` processes (SHARD_COUNT=3, one shard each) against one fake
Discord and one fake APIXO, on one throwaway PostgreSQL database; users in guilds of
every shard run /imagine (1-4 images) at once. Then one process is killed with SIGKILL
mid-job, or after Discord stored its post but before it heard back; or frozen with
SIGSTOP past its lease while submitting, downloading results, or uploading them (the
upload held in the fake Discord), or inside a claim; or stopped with SIGTERM; or the
provider's callbacks, or a /cancel, reach processes that do not hold the jobs; or every
LISTEN session is dropped. Also: the provider and per-user limits and IDENTIFY pacing
hold across the processes. After each (Fleet.audit): every job posted exactly once,
settled once (one reserve, at most one charge and one refund in the ledger), images
charged equal images delivered, the per-user daily totals equal the ledger's, no job
active and no lease left.

Each process's log is in the test's tmp_path (bot0.log, bot1.log, bot2.log).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bot.core.clock import FakeClock
from bot.core.models import Job, JobState
from storage.postgres.share import LOCK_DISPATCH
from tests.fakes.discord import FakeDiscord, FakeInteraction
from tests.fakes.discord.payloads import FakeGuild
from tests.multiproc import (
    CallbackBalancer,
    Fleet,
    Member,
    TimedApixo,
    UploadGate,
    callback_on,
    poll,
    result_messages,
    result_uploads,
)

pytestmark = pytest.mark.slow

T = TypeVar("T")

SHARDS = 3
LEASE = 3.0  # seconds (LEASE_SECONDS): takeovers within seconds, renewals every second
TASK = 2.0  # seconds a task runs at the fake provider before it calls back
USERS_PER_GUILD = 2
JOBS_PER_USER = 2
JOBS = SHARDS * USERS_PER_GUILD * JOBS_PER_USER


@dataclass
class World:
    fleet: Fleet
    fake: FakeDiscord
    apixo: TimedApixo
    gate: UploadGate

    async def load(self, tag: str = "") -> int:
        """Two users in a guild of each shard run /imagine twice each, all at once, with
        1-4 images; returns the number of images asked for. Waits until each is
        acknowledged and its job stored."""
        fake = self.fake
        sends: list[Coroutine[Any, Any, FakeInteraction]] = []
        images = 0
        for guild in self.guilds:
            assert guild.general is not None
            for u in range(USERS_PER_GUILD):
                user = fake.add_user(f"{guild.name}-{tag}u{u}")
                for _ in range(JOBS_PER_USER):
                    count = 1 + (len(sends) % 4)
                    images += count
                    sends.append(self.fleet.imagine(user, guild.general, count))
        await asyncio.gather(*sends)
        await self.fleet.wait_acknowledged()
        # Stored too (admission follows the deferral): a process killed before would
        # leave a command without a job, which is not what these tests are about.
        await self.fleet.wait_jobs(len(self.fleet.interactions))
        return images

    @property
    def guilds(self) -> list[FakeGuild]:
        return [g for g in self.fake.guilds.values() if g.name.startswith("shard")]


def make_world(
    tmp_path: Path,
    pg_url: str,
    *,
    task: float | None,
    discord_clock: FakeClock | None = None,
    **settings: Any,
) -> World:
    fake = FakeDiscord(clock=discord_clock)
    fake.max_concurrency = SHARDS  # the shards IDENTIFY at once: a quick start
    gate = UploadGate(fake)
    for shard in range(SHARDS):
        fake.add_guild(f"shard{shard}", shard=(shard, SHARDS))
    apixo = TimedApixo(duration=task)
    fleet = Fleet(
        tmp_path, fake, apixo, pg_url, shard_count=SHARDS, lease_seconds=LEASE, settings=settings
    )
    return World(fleet, fake, apixo, gate)


@contextlib.asynccontextmanager
async def running_world(
    tmp_path: Path, pg_url: str, task: float | None, *, balanced: bool = False, **settings: Any
) -> AsyncIterator[World]:
    """Three processes up; `balanced`: one callback URL in front of all of them (the
    deployment docs/scaling.md describes), else each process its own."""
    w = make_world(tmp_path, pg_url, task=task, **settings)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(w.fake)
        await stack.enter_async_context(w.apixo)
        if balanced:
            w.fleet.balancer = await CallbackBalancer().start()
            stack.push_async_callback(w.fleet.balancer.close)
        try:
            await w.fleet.start(SHARDS)
            yield w
        finally:
            await w.fleet.close()


@pytest.fixture
async def world(tmp_path: Path, pg_url: str) -> AsyncIterator[World]:
    async with running_world(tmp_path, pg_url, TASK) as w:
        yield w


@pytest.fixture
async def held_tasks_world(tmp_path: Path, pg_url: str) -> AsyncIterator[World]:
    """Tasks at the provider finish only when the test says so."""
    async with running_world(tmp_path, pg_url, None) as w:
        yield w


async def held_by(fleet: Fleet, states: set[JobState]) -> dict[str, list[Job]]:
    """{member name: jobs in `states` whose lease it holds}."""
    assert fleet.db is not None
    owners = {lease.job_id: lease.owner for lease in await fleet.db.leases()}
    found: dict[str, list[Job]] = {m.name: [] for m in fleet.members}
    for job in await fleet.jobs():
        member = fleet.member(owners.get(job.id, ""))
        if member is not None and job.state in states:
            found[member.name].append(job)
    return found


async def stop_and_check_nothing_changed(
    fleet: Fleet, before: dict[str, Job], ledger_before: list[tuple[str, str, int]]
) -> None:
    """Stop every process, then: the jobs and the ledger are as they were before the
    frozen process woke (it neither posted nor settled again), and the audit holds."""
    await fleet.stop_all()  # whatever the old holder would still do, it has done
    jobs = await fleet.jobs()
    assert {j.id: (j.state, j.delivered) for j in jobs} == {
        j.id: (j.state, j.delivered) for j in before.values()
    }
    assert fleet.db is not None
    assert await fleet.db.ledger() == ledger_before  # settled once, before it woke
    await fleet.audit(jobs)


def by_name(fleet: Fleet, name: str) -> Member:
    return next(m for m in fleet.members if m.name == name)


def uploaded_after(fake: FakeDiscord, job_id: str, moment: float) -> bool:
    """Every answered result upload of the job was received after `moment`
    (time.monotonic())."""
    seqs = {seq for seq, _ in result_uploads(fake, job_id)}
    times = [r.real_at for r in fake.requests if r.seq in seqs]
    return bool(times) and min(times) > moment


async def test_every_process_works_its_shards_jobs(world: World) -> None:
    """The baseline: three processes, each shard's guild busy, every job delivered once."""
    images = await world.load()
    jobs = await world.fleet.wait_all_final()
    totals = await world.fleet.audit(jobs)
    assert totals == {"jobs": JOBS, "done": JOBS, "charged": images}
    # Each process got the commands of its own shard's guild only (its gateway session)
    # and admitted those jobs.
    for member in world.fleet.members:
        admitted = member.bot.log_text().count(": admitted (")
        assert admitted == USERS_PER_GUILD * JOBS_PER_USER, (member.name, admitted)
    await world.fleet.stop_all()


async def test_kill_9_mid_job_the_others_take_its_jobs_over(world: World) -> None:
    fleet = world.fleet
    images = await world.load()
    mid_job = {JobState.RUNNING, JobState.DELIVERING}

    async def someone_busy() -> tuple[str, list[Job]] | None:
        held = await held_by(fleet, mid_job)
        name, jobs = max(held.items(), key=lambda item: len(item[1]))
        return (name, jobs) if len(jobs) >= 2 else None

    name, victims_jobs = await poll(someone_busy, "a process holding 2 jobs mid-way")
    victim = by_name(fleet, name)
    await victim.bot.kill()
    killed_at = time.monotonic()

    jobs = await fleet.wait_all_final(timeout=45)
    totals = await fleet.audit(jobs)
    final = {j.id: j for j in jobs}
    for job in victims_jobs:
        # Its task was running or its results on the way: taken over and delivered by
        # another process (the results went up only after the kill).
        assert final[job.id].state is JobState.DONE, (job.id, final[job.id].state)
        # Not before its lease ran out: renewed at most LEASE/3 before the kill.
        assert uploaded_after(world.fake, job.id, killed_at + LEASE * 2 / 3 - 0.25), job.id
    assert totals["jobs"] == JOBS
    # A job caught while being submitted is never submitted twice: refunded instead.
    assert totals["charged"] <= images
    assert len(world.apixo.tasks) <= JOBS
    await fleet.stop_all()


async def test_sigstop_past_the_lease_during_an_upload(world: World) -> None:
    fleet, fake, gate = world.fleet, world.fake, world.gate
    gate.arm()  # the first result upload of any job is held before Discord stores it
    await world.load()
    await asyncio.wait_for(gate.held.wait(), 30)
    job_id = gate.job_id
    assert job_id is not None
    assert fleet.db is not None
    owners = {lease.job_id: lease.owner for lease in await fleet.db.leases()}
    holder = fleet.member(owners[job_id])
    assert holder is not None, f"nobody holds {job_id}: {owners}"
    holder.bot.pause()
    paused_at = time.monotonic()
    try:
        # Past its lease, another process takes the job over and posts the results.
        await fake.wait_until(lambda: result_messages(fake, job_id), timeout=30)
        assert time.monotonic() - paused_at >= LEASE * 0.9
        # Its other jobs too: every job ends while it is frozen.
        before = {j.id: j for j in await fleet.wait_all_final()}
        ledger_before = await fleet.db.ledger()
    finally:
        holder.bot.resume()
    resumed_at = time.monotonic()
    assert before[job_id].state is JobState.DONE
    gate.open()  # the frozen process's upload now reaches Discord
    await asyncio.wait_for(gate.answered.wait(), 10)
    assert fleet.db is not None
    await poll(lambda: heartbeat_after(fleet, holder, resumed_at), "the frozen process to run")
    await stop_and_check_nothing_changed(fleet, before, ledger_before)
    posted = result_messages(fake, job_id)
    assert len(posted) == 1, f"job {job_id} posted {len(posted)} times"
    # The frozen upload, reaching Discord late, got the taker's message back (the
    # job's nonce): it made no second post.
    assert gate.answer is not None and gate.answer.get("id") == posted[0]["id"], gate.answer


async def test_sigstop_past_the_lease_while_downloading_results(world: World) -> None:
    """Frozen before its fencing check (downloading the results): once awake it must
    not even try to post (the nonce would hide a second post for a few minutes only)."""
    fleet, fake, apixo = world.fleet, world.fake, world.apixo
    apixo.download.arm()  # the first result download waits until released
    await world.load()
    await asyncio.wait_for(apixo.download.held.wait(), 30)
    jobs = await fleet.jobs()
    job_id = next(j.id for j in jobs if j.task_id == apixo.download.what)
    assert fleet.db is not None
    owners = {lease.job_id: lease.owner for lease in await fleet.db.leases()}
    holder = fleet.member(owners[job_id])
    assert holder is not None, f"nobody holds {job_id}: {owners}"
    holder.bot.pause()
    try:
        before = {j.id: j for j in await fleet.wait_all_final()}
        ledger_before = await fleet.db.ledger()
    finally:
        holder.bot.resume()
    resumed_at = time.monotonic()
    assert before[job_id].state is JobState.DONE
    log_from = len(holder.bot.log_text())
    # Awake, it renews first and learns its leases are gone; only then does its
    # download answer: the delivery still under way must not post.
    await poll(lambda: heartbeat_after(fleet, holder, resumed_at), "the frozen process to run")
    apixo.download.release()

    def let_go() -> bool:
        return f"job {job_id}: " in holder.bot.log_text()[log_from:]

    await poll(_async(let_go), f"the frozen process to let go of {job_id}")
    await stop_and_check_nothing_changed(fleet, before, ledger_before)
    uploads = result_uploads(fake, job_id)
    assert len(uploads) == 1, f"job {job_id} uploaded by {len(uploads)} requests: {uploads}"


async def test_sigstop_past_the_lease_while_submitting(world: World) -> None:
    """Frozen with its submit under way: the job is submitted at most once. The taker
    finds it submitting (the provider may be making it) and refunds it; the frozen
    process, awake and then answered with its task id, must neither run, post nor
    settle the job."""
    fleet, fake, apixo = world.fleet, world.fake, world.apixo
    apixo.submit.arm()  # the first submit waits, unanswered, until released
    await world.load()
    await asyncio.wait_for(apixo.submit.held.wait(), 30)
    prompt = apixo.submit.what

    async def stored() -> Job | None:
        return next((j for j in await fleet.jobs() if j.request.prompt == prompt), None)

    job = await poll(stored, "the held job")
    assert fleet.db is not None
    owners = {lease.job_id: lease.owner for lease in await fleet.db.leases()}
    holder = fleet.member(owners[job.id])
    assert holder is not None, f"nobody holds {job.id}: {owners}"
    holder.bot.pause()
    try:
        # Taken over after the lease (3 s): the others finish everything meanwhile.
        before = {j.id: j for j in await fleet.wait_all_final(timeout=20)}
        ledger_before = await fleet.db.ledger()
    finally:
        holder.bot.resume()
    resumed_at = time.monotonic()
    assert before[job.id].state is JobState.FAILED and before[job.id].delivered == 0
    log_from = len(holder.bot.log_text())
    await poll(lambda: heartbeat_after(fleet, holder, resumed_at), "the frozen process to run")
    apixo.submit.release()  # the provider makes the task and answers the frozen process

    def made() -> str | None:
        tasks = apixo.tasks.values()
        return next((t.id for t in tasks if t.body["input"]["prompt"] == prompt), None)

    task_id = await poll(_async(made), "the held submit's task")
    # It finishes and calls back the frozen process, which must ignore it.
    await poll(_async(lambda: any(c[0] == task_id for c in apixo.callbacks)), "its callback")
    await poll(
        _async(lambda: f"{job.id}" in holder.bot.log_text()[log_from:]),
        f"the frozen process to let go of {job.id}",
    )
    await stop_and_check_nothing_changed(fleet, before, ledger_before)
    submits = [t for t in apixo.tasks.values() if t.body["input"]["prompt"] == prompt]
    assert len(submits) == 1, f"job {job.id} submitted {len(submits)} times"
    assert not result_messages(fake, job.id)


def _async(check: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """A plain check (the fakes' state, a log) for `poll`."""

    async def checked() -> T:
        return check()

    return checked


async def heartbeat_after(fleet: Fleet, member: Member, moment: float) -> bool:
    """The member's worker row was refreshed after `moment` (time.monotonic())."""
    assert fleet.db is not None
    wall_moment = time.time() - (time.monotonic() - moment)
    rows = await fleet.db.workers()
    return any(pid == member.pid and seen > wall_moment for pid, seen in rows.values())


async def all_running(fleet: Fleet) -> list[Job]:
    """Once every job not yet final runs at the provider (a job stored for each
    /imagine sent): those jobs."""

    async def running() -> list[Job] | None:
        every = await fleet.jobs()
        if len(every) < len(fleet.interactions):
            return None
        active = [j for j in every if not j.state.final]
        found = [j for j in active if j.state is JobState.RUNNING and j.task_id]
        return found if len(found) == len(active) else None

    return await poll(running, "every job running at the provider")


async def callbacks_elsewhere(world: World) -> list[float]:
    """Once every job of the fleet runs at the provider, finish each task and send its
    callback to a process that does not hold the job; the seconds from each callback
    to the job's results on Discord."""
    fleet, fake, apixo = world.fleet, world.fake, world.apixo
    assert fleet.db is not None
    jobs = await all_running(fleet)
    owners = {lease.job_id: lease.owner for lease in await fleet.db.leases()}
    sent: dict[str, float] = {}
    for job in jobs:
        holder = fleet.member(owners[job.id])
        assert holder is not None and job.task_id is not None, (job.id, owners)
        other = next(m for m in fleet.members if m is not holder)
        task = apixo.tasks[job.task_id]
        assert task.callback_url is not None
        assert task.callback_url.startswith(holder.callback_origin)  # its own, normally
        sent[job.id] = time.monotonic()
        status = await apixo.finish(job.task_id, url=callback_on(other, task.callback_url))
        assert status == 200, (job.id, status)  # accepted by a process without the job
    await fleet.wait_all_final(timeout=30)
    lags = []
    for job in jobs:
        # The holder was woken and delivered; the process the callback reached did not
        # take the job.
        holder = fleet.member(owners[job.id])
        assert holder is not None and f"job {job.id}: delivered" in holder.bot.log_text()
        seqs = {seq for seq, _ in result_uploads(fake, job.id)}
        posted = min(r.real_at for r in fake.requests if r.seq in seqs)
        lags.append(posted - sent[job.id])
    return lags


# Well before the safety-net poll with callbacks on: with no history of durations yet it
# comes ~50 s after the submit (PollPolicy defaults), then every 30 s.
PROMPT = 10.0


async def test_a_callback_to_a_process_not_working_the_job(held_tasks_world: World) -> None:
    world = held_tasks_world
    images = await world.load()
    lags = await callbacks_elsewhere(world)
    assert len(lags) == JOBS and max(lags) < PROMPT, lags
    totals = await world.fleet.audit()
    assert totals == {"jobs": JOBS, "done": JOBS, "charged": images}
    await world.fleet.stop_all()


async def test_the_listen_connection_dropped(world: World) -> None:
    fleet, apixo = world.fleet, world.apixo
    assert fleet.db is not None
    db = fleet.db

    async def listening() -> list[tuple[int, str]] | None:
        sessions = await db.listen_sessions()
        return sessions if len(sessions) >= SHARDS else None

    sessions = await poll(listening, "a LISTEN session per process")
    dropped = set(await db.drop_listen_sessions())
    assert dropped == {pid for pid, _ in sessions}

    # While a whole wave of jobs runs, every LISTEN session is dropped again as soon as
    # it is back: the work goes on without wake-ups (claims on the scan timer, results
    # by callbacks to their holders).
    flapping = asyncio.Event()

    async def flap() -> None:
        while not flapping.is_set():
            dropped.update(await db.drop_listen_sessions())
            await asyncio.sleep(0.05)  # the next look for a session back up

    flapper = asyncio.create_task(flap())
    try:
        images = await world.load("a")
        jobs = await fleet.wait_all_final()
    finally:
        flapping.set()
        await flapper
    assert (await fleet.audit(jobs))["charged"] == images

    async def reconnected() -> bool:
        now = await db.listen_sessions()
        return len(now) == SHARDS and not {pid for pid, _ in now} & dropped

    await poll(reconnected, "every process to LISTEN again")
    # Wake-ups work again: a callback reaching a process that does not hold the job
    # is passed on to its holder at once (NOTIFY), not at its next safety-net poll.
    apixo.duration = None
    images += await world.load("b")
    lags = await callbacks_elsewhere(world)
    assert len(lags) == JOBS and max(lags) < PROMPT, lags
    totals = await fleet.audit()
    assert totals == {"jobs": 2 * JOBS, "done": 2 * JOBS, "charged": images}
    await fleet.stop_all()


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) spans open at one time."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = now = 0
    for _, step in events:  # an end sorts before a start at the same instant
        now += step
        most = max(most, now)
    return most


async def test_limits_hold_across_processes(tmp_path: Path, pg_url: str) -> None:
    """PROVIDER_CONCURRENCY and MAX_RUNNING_JOBS_PER_USER count the jobs of every
    process together: seen at the provider, never more tasks at once than allowed, for
    everyone and for a user busy in the guilds of all three shards."""
    slots, per_user = 4, 2
    async with running_world(
        tmp_path, pg_url, 1.0, provider_concurrency=slots, max_running_jobs_per_user=per_user
    ) as world:
        fleet, fake, apixo = world.fleet, world.fake, world.apixo
        roamer = fake.add_user("roamer")
        sends = [
            fleet.imagine(roamer, guild.general, 1)
            for guild in world.guilds
            for _ in range(2)
            if guild.general is not None
        ]
        await asyncio.gather(*sends)
        images = 2 * SHARDS + await world.load()
        jobs = await fleet.wait_all_final(timeout=60)
        totals = await fleet.audit(jobs)
        assert totals == {"jobs": JOBS + 2 * SHARDS, "done": JOBS + 2 * SHARDS, "charged": images}
        spans: dict[str, list[tuple[float, float]]] = {}
        for job in jobs:
            assert job.task_id is not None
            task = apixo.tasks[job.task_id]
            assert task.finished is not None
            spans.setdefault(job.requester.user_id, []).append((task.created, task.finished))
        everyone = [span for found in spans.values() for span in found]
        # Reached, not exceeded (so the limits were put to the test).
        assert most_at_once(everyone) == slots
        assert most_at_once(spans[roamer.id]) == per_user
        assert max(most_at_once(found) for found in spans.values()) == per_user
        await fleet.stop_all()


async def test_a_stopped_process_hands_its_jobs_over_at_once(tmp_path: Path, pg_url: str) -> None:
    """SIGTERM (a deploy, a scale-down): the process gives its leases back and the
    others take its jobs over at once, not when the (here long) leases would run out.
    Callbacks go to one address in front of every process, as deployed: a callback for
    a job the stopped process submitted reaches a live one, which wakes the holder."""
    long_lease = 30.0
    async with running_world(
        tmp_path, pg_url, TASK, balanced=True, lease_seconds=long_lease
    ) as world:
        fleet = world.fleet
        images = await world.load()

        async def someone_busy() -> tuple[str, list[Job]] | None:
            held = await held_by(fleet, {JobState.RUNNING})
            name, jobs = max(held.items(), key=lambda item: len(item[1]))
            return (name, jobs) if len(jobs) >= 2 else None

        name, handed = await poll(someone_busy, "a process holding 2 running jobs")
        leaving = by_name(fleet, name)
        assert await leaving.bot.stop() == 0
        stopped_at = time.monotonic()
        jobs = await fleet.wait_all_final(timeout=long_lease / 2)
        final = {j.id: j for j in jobs}
        for job in handed:
            assert final[job.id].state is JobState.DONE, (job.id, final[job.id].state)
            assert uploaded_after(world.fake, job.id, stopped_at), job.id
        assert time.monotonic() - stopped_at < long_lease / 2
        totals = await fleet.audit(jobs)
        assert totals == {"jobs": JOBS, "done": JOBS, "charged": images}
        await fleet.stop_all()


async def test_identify_is_paced_across_the_processes(tmp_path: Path, pg_url: str) -> None:
    """With max_concurrency 1 (one rate-limit bucket), the three processes IDENTIFY
    one at a time, 5 s apart (Discord's limit), through the database."""
    w = make_world(tmp_path, pg_url, task=None)
    w.fake.max_concurrency = 1
    async with w.fake, w.apixo:
        try:
            await w.fleet.start(SHARDS, timeout=45)
            accepted = [r for r in w.fake.identify_log if r.close_code is None]
            assert sorted(r.shard for r in accepted if r.shard) == [(s, SHARDS) for s in range(3)]
            times = sorted(r.real_at for r in accepted)
            gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
            # Unpaced they would come together; a little under 5 s is each process's
            # way from its turn to the fake (a loaded machine).
            assert min(gaps) >= 4.5, gaps
            await w.fleet.stop_all()
        finally:
            await w.fleet.close()


async def test_a_cancel_reaching_a_process_that_does_not_hold_the_job(
    held_tasks_world: World,
) -> None:
    """/cancel comes to the process running the guild's shard; another process holds the
    job (claimed it, or took it over while the first was frozen). The job is cancelled
    and refunded once, its holder lets go, and the result its task makes later is never
    posted."""
    world = held_tasks_world
    fleet, fake, apixo = world.fleet, world.fake, world.apixo
    assert fleet.db is not None
    db = fleet.db
    await world.load()
    jobs = await all_running(fleet)
    shard_process = fleet.members[0]  # shard 0: the guild "shard0"
    guild = world.guilds[0]
    owners = {lease.job_id: lease.owner for lease in await fleet.db.leases()}
    mine = [j for j in jobs if j.requester.guild_id == guild.id]
    elsewhere = [j for j in mine if not shard_process.owns(owners[j.id])]
    if elsewhere:  # another process claimed one of the guild's jobs
        target, new_owner = elsewhere[0], owners[elsewhere[0].id]
    else:  # make one: freeze the shard's process until another takes a job over
        target = mine[0]
        shard_process.bot.pause()
        try:

            async def taken_over() -> str | None:
                leases = {lease.job_id: lease.owner for lease in await db.leases()}
                owner = leases.get(target.id, "")
                return owner if owner and not shard_process.owns(owner) else None

            new_owner = await poll(taken_over, f"another process to take {target.id} over")
        finally:
            shard_process.bot.resume()
    holder = fleet.member(new_owner)
    assert holder is not None
    user = fake.users[target.requester.user_id]
    assert guild.general is not None
    log_from = len(holder.bot.log_text())
    cancel = await fake.slash("cancel", user, {"job_id": target.id}, channel=guild.general)
    await fake.wait_until(lambda: cancel.answer(ephemeral=True), timeout=20)
    assert "is cancelled" in cancel.text(), cancel.text()

    async def cancelled() -> Job | None:
        found = next(j for j in await fleet.jobs() if j.id == target.id)
        return found if found.state is JobState.CANCELLED else None

    await poll(cancelled, f"{target.id} cancelled")
    await poll(
        _async(lambda: f"job {target.id}: " in holder.bot.log_text()[log_from:] or None),
        "the holder to let go",
        timeout=10,
    )
    # Every task finishes now, the cancelled job's too, each calling back its submitter.
    for job in jobs:
        assert job.task_id is not None
        await apixo.finish(job.task_id)
    done = await fleet.wait_all_final()
    totals = await fleet.audit(done)
    assert totals["jobs"] == JOBS and totals["done"] == JOBS - 1
    assert not result_messages(fake, target.id)
    await fleet.stop_all()


async def test_kill_9_after_discord_stored_the_upload(tmp_path: Path, pg_url: str) -> None:
    """Killed once Discord had stored its results post but before the answer reached it,
    and taken over when the message nonce no longer guards (Discord keeps nonces a few
    minutes: the fake's clock is moved past them): the new holder finds the post in the
    channel's history, posts nothing, and charges the images that were posted."""
    discord_clock = FakeClock()
    w = make_world(tmp_path, pg_url, task=TASK, discord_clock=discord_clock)
    async with w.fake, w.apixo:
        try:
            fleet, fake, gate = w.fleet, w.fake, w.gate
            await fleet.start(SHARDS)
            gate.arm(after_storing=True)
            await w.load()
            await asyncio.wait_for(gate.held.wait(), 30)
            job_id = gate.job_id
            assert job_id is not None and fleet.db is not None
            owners = {lease.job_id: lease.owner for lease in await fleet.db.leases()}
            holder = fleet.member(owners[job_id])
            assert holder is not None, f"nobody holds {job_id}: {owners}"
            await holder.bot.kill()
            await discord_clock.advance(FakeDiscord.NONCE_WINDOW + 60)
            gate.open()  # its answer goes nowhere: the poster is gone
            jobs = await fleet.wait_all_final()
            totals = await fleet.audit(jobs)
            assert totals["jobs"] == JOBS
            job = next(j for j in jobs if j.id == job_id)
            assert job.state is JobState.DONE and job.delivered == job.request.count
            uploads = result_uploads(fake, job_id)
            assert len(uploads) == 1, f"job {job_id} uploaded by {len(uploads)} requests"
            await fleet.stop_all()
        finally:
            await w.fleet.close()


async def test_a_process_frozen_inside_a_claim_does_not_stall_the_others(world: World) -> None:
    """A pause can come at any instant, inside a claim's transaction too (a VM paused,
    a stop-the-world GC, a network partition that keeps the TCP connection open). The
    other processes must keep starting jobs meanwhile. To freeze it there on purpose,
    the test holds the dispatch lock until every process's claim waits for it, freezes
    one process, and lets go: that process's waiting claim then gets the lock."""
    fleet, fake = world.fleet, world.fake
    assert fleet.db is not None
    db = fleet.db
    frozen = fleet.members[0]
    async with db.pool.acquire() as conn:
        key = (LOCK_DISPATCH, "apixo")
        await conn.execute("SELECT pg_advisory_lock($1, hashtext($2))", *key)

        async def all_waiting() -> bool:
            rows = await db.fetch(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event = 'advisory' AND query LIKE '%pg_advisory_xact_lock%'"
            )
            return int(rows[0][0]) >= SHARDS

        await poll(all_waiting, "a claim of every process waiting on the dispatch lock")
        frozen.bot.pause()
        await conn.execute("SELECT pg_advisory_unlock($1, hashtext($2))", *key)
    try:
        # Users of the two other shards' guilds: their processes are up.
        for guild in world.guilds[1:]:
            assert guild.general is not None
            user = fake.add_user(f"{guild.name}-late")
            await fleet.imagine(user, guild.general, 1)
        await fleet.wait_acknowledged()
        await fleet.wait_all_final(timeout=6 * LEASE)
    finally:
        frozen.bot.resume()
    jobs = await fleet.wait_all_final()
    totals = await fleet.audit(jobs)
    ended = {j.id: (j.state.value, j.error_code) for j in jobs}
    assert totals == {"jobs": SHARDS - 1, "done": SHARDS - 1, "charged": SHARDS - 1}, (
        f"{ended}\n{fleet.logs()[-20000:]}"
    )
    await fleet.stop_all()


async def test_the_status_call_rate_holds_across_processes(tmp_path: Path, pg_url: str) -> None:
    """PROVIDER_STATUS_RPS is the provider's budget for the whole bot: with callbacks off
    and far more polls wanted than it allows, the three processes together stay within
    it (each takes the rate over the live processes, with its own burst). Alone, each
    would take all of it: about three times as many calls."""
    rps, quiet, window = 1.5, 10.0, 10.0
    async with running_world(
        tmp_path, pg_url, None, callback_enabled=False, provider_status_rps=rps
    ) as world:
        fleet, apixo = world.fleet, world.apixo
        await world.load("a")
        await world.load("b")
        await all_running(fleet)
        # With nothing known of the tasks, a job's first look comes ~10 s after its
        # submit, then one every ~5 s: 24 jobs want ~5 calls a second from then on.
        start = time.monotonic() + quiet
        await poll(
            _async(lambda: any(t > start + window for t in apixo.status_times)),
            "status calls past the window",
            timeout=quiet + window + 20,
        )
        calls = sum(1 for t in apixo.status_times if start <= t < start + window)
        burst = max(1, round(rps))  # each process's (bot/runtime.py)
        assert calls <= rps * window + SHARDS * burst, calls
        assert calls >= 0.6 * rps * window, calls  # the limit held them, not the demand
        # The jobs are left running: this is about the rate (Fleet.close kills them).

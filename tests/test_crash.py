"""Crash: the bot as a real process (`python -m bot run`, configured only by its
environment) with 100 jobs in flight is killed with SIGKILL while jobs are in every
state (queued, being submitted, running at the provider, downloading or posting
results, done), then started again.

Promises checked: every job ends exactly once, delivered (one post, never two) or
failed with a message to its user; images charged equal images delivered on Discord;
a submit the crash interrupted is never repeated (the provider might be generating it)
but refunded and explained; the secrets appear in no log line and no database byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.core.models import ErrorKind, Job, JobState
from storage.sqlite.db import Database
from tests.fakes.discord import FakeDiscord, FakeInteraction
from tests.fakes.providers import FakeApixo, FakeTask, Fault
from tests.reliability.audit import (
    check_money,
    failure_shown,
    kind_shown,
    result_messages,
    states,
)
from tests.reliability.process import (
    BotProcess,
    bot_environment,
    db_jobs,
    db_rows,
    free_port,
    start_bot,
)

TOKEN = "CANARY.TOKEN.crash-0123456789abcdefghijklmnopqrstuvwxyz"
API_KEY = "sk-CANARY-apixo-123456"
USERS, PER_USER = 10, 10
JOBS = USERS * PER_USER
CONCURRENCY = 40  # at the provider at once; the rest wait in the queue
WAIT = 60.0  # real seconds any one phase may take (a loaded CI machine)

pytestmark = pytest.mark.slow


class ResultGate:
    """Holds the bot's first result upload for chosen jobs after the fake Discord has
    stored the message: the post exists, but the bot never hears back (it is killed
    while waiting). Installed before the fake starts (routes bind at start)."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.jobs: set[str] = set()
        self.held = asyncio.Event()
        self.job_id: str | None = None
        self._open = asyncio.Event()
        original = fake._post_message

        async def gated(request: web.Request) -> web.Response:
            response = await original(request)
            try:
                message = json.loads(response.body)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return response
            names = [a["filename"] for a in message.get("attachments") or []]
            job = next(
                (j for j in self.jobs if any(n.startswith(f"wan_{j}_") for n in names)), None
            )
            if job is not None and not self.held.is_set():
                self.job_id = job
                self.held.set()
                await self._open.wait()
            return response

        fake._post_message = gated  # type: ignore[method-assign]

    def open(self) -> None:
        self._open.set()


async def until(fake: FakeDiscord, check: Callable[[], Any], what: str) -> Any:
    """Wait (no sleeps: on the fake's changes, re-checking at least every 50 ms)."""
    try:
        return await fake.wait_until(check, timeout=WAIT)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


class Crash:
    """The two fakes, the bot's database and its environment, and what happened."""

    def __init__(self, tmp_path: Path, fake: FakeDiscord, apixo: FakeApixo) -> None:
        self.tmp = tmp_path
        self.fake = fake
        self.apixo = apixo
        self.db = tmp_path / "data" / "wanbot.sqlite3"
        self.env = bot_environment(
            fake,
            apixo,
            token=TOKEN,
            database=self.db,
            callback_port=free_port(),
            default_user_limit=1000,
            max_running_jobs_per_user=PER_USER,
            max_queued_jobs_per_user=PER_USER,
            provider_concurrency=CONCURRENCY,
            provider_status_rps=500,
        )
        self.processes: list[BotProcess] = []

    async def start(self, name: str) -> BotProcess:
        identified = len(self.fake.identifies)
        bot = await start_bot(self.env, self.tmp, self.tmp / f"{name}.log")
        self.processes.append(bot)

        def connected() -> bool:
            if not bot.running:
                raise AssertionError(f"the bot exited ({bot.proc.returncode}):\n{bot.log_text()}")
            return len(self.fake.identifies) > identified and self.fake.connected

        await until(self.fake, connected, f"the {name} bot to connect")
        return bot

    def job_states(self) -> dict[str, str]:
        return dict(db_rows(self.db, "SELECT id, state FROM jobs"))

    def task_jobs(self, tasks: Iterable[FakeTask]) -> dict[str, str]:
        """{task id: job id} for tasks the bot has recorded."""
        ids = {task.id for task in tasks}
        rows = db_rows(self.db, "SELECT task_id, id FROM jobs WHERE task_id IS NOT NULL")
        return {task: job for task, job in rows if task in ids}

    def states_of(self, tasks: Iterable[FakeTask]) -> list[str]:
        tasks = list(tasks)
        mapping = self.task_jobs(tasks)
        found = self.job_states()
        return [found.get(mapping.get(task.id, ""), "?") for task in tasks]

    async def finish(self, tasks: Iterable[FakeTask]) -> None:
        """The provider finishes these tasks and calls the bot back."""
        for task in tasks:
            self.apixo.complete(task.id)
            await self.apixo.send_callback(task.id)

    def all_told(self) -> list[Job] | None:
        jobs = db_jobs(self.db)
        if len(jobs) != JOBS or not all(job.state.final for job in jobs):
            return None
        for job in jobs:
            if job.state is JobState.DONE and not result_messages(self.fake, job.id):
                return None
            if job.state is not JobState.DONE and failure_shown(self.fake, job) is None:
                return None
        return jobs


async def dispatch_all(fake: FakeDiscord) -> list[FakeInteraction]:
    users = [fake.add_user(f"user{i}") for i in range(USERS)]
    interactions = []
    for n in range(JOBS):
        options = {"prompt": f"crash test job {n}", "count": 1 + n % 4}
        interactions.append(await fake.slash("imagine", users[n % USERS], options))
    await until(fake, lambda: all(i.callback for i in interactions), "every acknowledgement")
    assert all(i.callback_type == 5 for i in interactions)  # each deferred within 3 s
    return interactions


async def test_sigkill_with_100_jobs_in_flight_then_restart(tmp_path: Path) -> None:
    fake = FakeDiscord()
    gate = ResultGate(fake)
    apixo = FakeApixo(api_key=API_KEY)
    async with fake, apixo:
        crash = Crash(tmp_path, fake, apixo)
        try:
            await run_scenario(crash, gate)
        finally:
            gate.open()
            apixo.release()
            for bot in crash.processes:
                if bot.running:
                    with contextlib.suppress(ProcessLookupError):
                        await bot.kill()


async def run_scenario(crash: Crash, gate: ResultGate) -> None:
    fake, apixo = crash.fake, crash.apixo
    first = await crash.start("first")
    interactions = await dispatch_all(fake)
    await until(
        fake,
        lambda: len(crash.job_states()) == JOBS and len(apixo.tasks) == CONCURRENCY,
        "100 stored jobs, 40 of them at the provider",
    )
    tasks = list(apixo.tasks.values())

    # 10 finish and are delivered.
    await crash.finish(tasks[:10])
    await until(fake, lambda: crash.states_of(tasks[:10]) == ["done"] * 10, "10 deliveries")
    # 8 finish, but their result files hang: those jobs sit in `delivering`. (Small
    # jobs: each hung file holds one of the connection pool's 30 per host.)
    hanging = [task for task in tasks[10:] if task.n <= 2][:8]
    rest = [task for task in tasks[10:] if task not in hanging]
    downloads = len(apixo.requests_for("result"))
    files = sum(task.n for task in hanging)
    apixo.script_fault("result", *[Fault.hang()] * files)
    await crash.finish(hanging)
    await until(
        fake,
        lambda: (
            len(apixo.requests_for("result")) == downloads + files
            and crash.states_of(hanging) == ["delivering"] * len(hanging)
            and len(apixo.tasks) == CONCURRENCY + 10 + len(hanging)
        ),
        "jobs stuck downloading",
    )
    # 3 finish; the submits of the 3 queued jobs taking their slots hang.
    submits = len(apixo.requests_for("submit"))
    apixo.script_submit_fault(*[Fault.hang()] * 3)
    await crash.finish(rest[:3])
    await until(
        fake,
        lambda: (
            len(apixo.requests_for("submit")) == submits + 3
            and crash.states_of(rest[:3]) == ["done"] * 3
        ),
        "3 submits in flight",
    )
    # 2 finish; the first result upload is stored by Discord, and the bot is killed
    # before it hears back.
    racing = rest[3:5]
    gate.jobs = set(crash.task_jobs(racing).values())
    assert len(gate.jobs) == 2
    await crash.finish(racing)
    try:
        await asyncio.wait_for(gate.held.wait(), WAIT)
    except TimeoutError:
        raise AssertionError("no result upload to hold") from None
    assert await first.kill() == -9
    gate.open()
    apixo.release()

    at_kill = crash.job_states()
    counts = {state: list(at_kill.values()).count(state) for state in set(at_kill.values())}
    print("states at SIGKILL:", dict(sorted(counts.items())))
    assert {"queued", "submitting", "running", "delivering", "done"} <= set(counts), counts
    assert gate.job_id is not None and at_kill[gate.job_id] == "delivering"
    assert result_messages(fake, gate.job_id), "the held upload is on Discord"

    second = await crash.start("second")

    async def provider_finishes_everything() -> list[Job]:
        while True:
            jobs = crash.all_told()
            if jobs is not None:
                return jobs
            await crash.finish([t for t in apixo.tasks.values() if t.state == "pending"])
            with contextlib.suppress(TimeoutError):
                await fake.wait_until(
                    lambda: (
                        crash.all_told() is not None
                        or any(t.state == "pending" for t in apixo.tasks.values())
                    ),
                    timeout=1.0,
                )

    jobs = await asyncio.wait_for(provider_finishes_everything(), WAIT)
    assert await second.stop() == 0, second.log_text()[-3000:]
    # A clean SIGTERM: tasks cancelled, HTTP session and database closed.
    shutdown_log = second.log_text()
    for leak in ("Unclosed client session", "Unclosed connector", "Task was destroyed"):
        assert leak not in shutdown_log
    await check_outcome(crash, interactions, at_kill, jobs, gate)


async def check_outcome(
    crash: Crash,
    interactions: list[FakeInteraction],
    at_kill: dict[str, str],
    jobs: list[Job],
    gate: ResultGate,
) -> None:
    fake = crash.fake
    print("final states:", {state.value: n for state, n in states(jobs).items()})
    by_status = {job.delivery.get("status_message_id"): job for job in jobs}
    assert {i.original_message_id for i in interactions} == set(by_status)
    for job in jobs:
        before = at_kill[job.id]
        if before == "submitting":
            # It may have reached the provider: never sent again; refunded and explained.
            assert job.state is JobState.FAILED, (job.id, job.state)
            assert job.error_code == "submit_interrupted"
            shown = failure_shown(fake, job)
            assert shown is not None and kind_shown(shown) is ErrorKind.PROVIDER_OUTAGE
        else:
            assert job.state is JobState.DONE, (job.id, before, job.state, job.error_code)
            assert job.delivered == job.request.count
    assert states(jobs)[JobState.FAILED] == list(at_kill.values()).count("submitting")
    async with Database(crash.db) as database:
        totals = await check_money(database, fake, jobs)
    assert totals.charged == totals.delivered_on_discord == sum(j.delivered for j in jobs)
    print(f"charged {totals.charged} images, delivered {totals.delivered_on_discord}")
    # The held upload was not repeated after the restart: the new process found it in
    # the channel's history (Discord remembers nonces for a few minutes only).
    assert gate.job_id is not None
    names = f"wan_{gate.job_id}_"
    uploads = [
        r for r in fake.requests
        if r.method == "POST" and any(f.filename.startswith(names) for f in r.files)
    ]  # fmt: skip
    assert len(uploads) == 1 and len(result_messages(fake, gate.job_id)) == 1
    assert fake.find_requests("GET", uploads[0].path)  # the look-up in that channel
    # Every job reached the provider exactly once: a job already there (running, or
    # whose submit may have arrived) was never sent again; queued ones were sent later.
    # A job caught in `submitting` may have been killed before its request left (it is
    # stored as submitting first): at most once for those.
    prompts = Counter(r.json["input"]["prompt"] for r in crash.apixo.requests_for("submit"))
    for job in jobs:
        sent = prompts[job.request.prompt]
        if at_kill[job.id] == "submitting":
            assert sent <= 1, (job.id, sent)
        else:
            assert sent == 1, (job.id, at_kill[job.id], sent)
    assert set(prompts) <= {job.request.prompt for job in jobs}
    # No secret in either process's log (DEBUG), nor in the database files.
    tokens = [i.token for i in fake.interactions.values()]
    for bot in crash.processes:
        log = bot.log_text()
        for secret in (TOKEN, API_KEY, *tokens):
            assert secret not in log, f"a secret in {bot.log.name}"
    for path in crash.db.parent.glob("wanbot.sqlite3*"):
        data = path.read_bytes()
        assert TOKEN.encode() not in data and API_KEY.encode() not in data, path.name

"""Several real bot processes (`python -m bot run`, configured only by their
environment) sharing one PostgreSQL database, one fake Discord and one fake APIXO,
each with its own log file and callback port: the harness of tests/test_multiprocess.py
and bench/multiproc.py.

    fleet = Fleet(tmp_path, fake, apixo, pg_url, lease_seconds=3)
    await fleet.start(3)                      # SHARD_COUNT=3, one shard each
    await fleet.imagine(user, channel, 2)     # a user runs /imagine in a guild
    await fleet.wait_all_final()
    await fleet.audit()                       # posted once, settled once, quotas exact

The database is read from outside through asyncpg (jobs, leases, ledger, workers,
sessions); nothing here talks to the bots except through the fakes and signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg
from aiohttp import web

from bot.core.models import Job, JobState
from storage.job_rows import READ_COLUMNS, job_from_row
from tests.fakes.discord import FakeChannel, FakeDiscord, FakeInteraction, FakeUser
from tests.fakes.discord.wire import UPLOAD
from tests.fakes.loopback import serve_loopback
from tests.fakes.providers import FakeApixo, FakeTask
from tests.reliability.process import (
    BotProcess,
    bot_environment,
    db_jobs,
    free_port,
    start_bot,
)

T = TypeVar("T")

TOKEN = "MULTI.PROC.token-0123456789abcdefghijklmnopqrstuvwxyz"
API_KEY = "sk-multiproc-apixo-123456"
LISTEN_PREFIX = "wanbot listen"  # application_name of each process's LISTEN session
_RESULT_NAME = re.compile(r"^wan_(?P<job>.+)_\d+\.\w+$")


async def poll(check: Callable[[], Awaitable[T | None]], what: str, timeout: float = 30.0) -> T:
    """Wait for another process's state (a database row, a log line): polled every
    50 ms with a deadline, since nothing there can wake this process."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


# --- the fake provider -------------------------------------------------------------------


class Hold:
    """Holds the first request that comes while armed until released; `what` says
    which (a task id, a prompt)."""

    def __init__(self) -> None:
        self.armed = False
        self.held = asyncio.Event()
        self.what: str | None = None
        self._open = asyncio.Event()

    def arm(self) -> None:
        self.armed = True

    def release(self) -> None:
        self._open.set()

    async def wait_if_armed(self, what: str) -> None:
        if not self.armed:
            return
        self.armed = False
        self.what = what
        self.held.set()
        await self._open.wait()


# APIXO: a callback "must answer 200 within 30 s; up to 3 retries" (the spec).
CALLBACK_RETRIES = 3
CALLBACK_RETRY_SECONDS = 0.5


class TimedApixo(FakeApixo):
    """APIXO whose tasks finish by themselves `duration` seconds after their submit
    (None: only when a test says so) and then call back their callback_url, retried
    as the real service does. A callback nobody takes is recorded (status None or
    the last one); polling is the bot's way to learn the result then."""

    def __init__(self, *, duration: float | None, calls_back: bool = True, **kwargs: Any):
        super().__init__(api_key=API_KEY, **kwargs)
        self.duration = duration
        self.calls_back = calls_back
        self.callbacks: list[tuple[str, str, int | None]] = []  # (task, url, HTTP status)
        self._timers: set[asyncio.Task[None]] = set()
        # The next result download / submit waits, its connection open, until released.
        self.download = Hold()
        self.submit = Hold()
        self.status_times: list[float] = []  # time.monotonic() of each status call

    async def _result(self, request: web.Request) -> web.StreamResponse:
        await self.download.wait_if_armed(request.match_info["task_id"])
        return await super()._result(request)

    async def _status(self, request: web.Request) -> web.Response:
        self.status_times.append(time.monotonic())
        return await super()._status(request)

    async def _submit(self, request: web.Request) -> web.Response:
        body = await request.json()
        task_input = body.get("input") if isinstance(body, dict) else None
        prompt = task_input.get("prompt") if isinstance(task_input, dict) else None
        await self.submit.wait_if_armed(str(prompt))
        return await super()._submit(request)  # the body is read once, then cached

    async def close(self) -> None:
        self.download.release()
        self.submit.release()
        for timer in list(self._timers):
            timer.cancel()
        await asyncio.gather(*self._timers, return_exceptions=True)
        await super().close()

    def _add_task(self, task: FakeTask) -> FakeTask:
        added = super()._add_task(task)
        if self.duration is not None:
            timer = asyncio.get_running_loop().create_task(self._finish_later(added.id))
            self._timers.add(timer)
            timer.add_done_callback(self._timers.discard)
        return added

    async def _finish_later(self, task_id: str) -> None:
        assert self.duration is not None
        await asyncio.sleep(self.duration)  # the task's run time at the provider
        await self.finish(task_id)

    async def finish(self, task_id: str, url: str | None = None) -> int | None:
        """Complete the task (if still running) and call back `url` (default: its own
        callback_url); the callback's HTTP status, None if none was sent or it failed."""
        task = self.tasks[task_id]
        if task.state in ("pending", "running"):
            self.complete(task_id)
        target = url or task.callback_url
        if not self.calls_back or not target:
            return None
        status: int | None = None
        for attempt in range(1 + CALLBACK_RETRIES):
            if attempt:
                await asyncio.sleep(CALLBACK_RETRY_SECONDS)  # the provider's back-off
            try:
                status = await self.send_callback(task_id, url=target)
            except OSError:  # nobody behind that port (aiohttp's errors are OSErrors)
                status = None
            if status == 200:
                break
        self.callbacks.append((task_id, target, status))
        return status


# --- one callback address for every process ----------------------------------------------


class CallbackBalancer:
    """The load balancer docs/scaling.md puts in front of the processes: one
    CALLBACK_PUBLIC_URL for all of them, each request passed to the next live process
    (round robin; a process that refuses the connection is skipped, as a balancer's
    health check would)."""

    def __init__(self) -> None:
        self.origins: list[str] = []
        self.forwarded: list[tuple[str, str, int]] = []  # (path, origin, HTTP status)
        self.errors: list[tuple[str, str, str]] = []  # (path, origin, what went wrong)
        self._next = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> CallbackBalancer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        # A connection per request: a kept-alive one to a process that has just gone
        # would fail mid-request rather than be refused.
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        self._runner, self.port = await serve_loopback(app)
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        for _ in range(len(self.origins)):
            origin = self.origins[self._next % len(self.origins)]
            self._next += 1
            try:
                async with self._session.request(
                    request.method,
                    origin + request.path_qs,
                    data=body,
                    headers={"Content-Type": request.content_type},
                ) as answer:
                    text = await answer.read()
                    self.forwarded.append((request.path, origin, answer.status))
                    return web.Response(
                        body=text, status=answer.status, content_type=answer.content_type
                    )
            except aiohttp.ClientConnectionError as exc:
                self.errors.append((request.path, origin, repr(exc)))
                continue  # that process is gone: the next one
        return web.Response(status=502, text="no process is up")


# --- the fake Discord: holding one upload ----------------------------------------------------


class UploadGate:
    """Holds the first result upload of a chosen job (or of any job) before the fake
    Discord handles it: the poster waits for an answer, nothing is stored yet. Opened,
    the held request is handled as any other (a nonce already used gets the existing
    message back, as on Discord). Or, armed `after_storing`, once the message is stored:
    only the answer waits. Installed before the fake starts (routes bind then)."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.armed = False
        self.jobs: set[str] | None = None  # None: any job
        self.held = asyncio.Event()
        self.job_id: str | None = None
        self.answered = asyncio.Event()
        self.answer: dict[str, Any] | None = None  # the message the held upload got back
        self.after_storing = False
        self._open = asyncio.Event()
        original = fake._post_message

        async def gated(request: web.Request) -> web.Response:
            job = self._job_of(request) if self.armed and not self.held.is_set() else None
            if job is None:
                return await original(request)
            self.job_id = job
            try:
                if self.after_storing:  # the message exists; its answer waits
                    response = await original(request)
                    self.held.set()
                    await self._open.wait()
                else:
                    self.held.set()
                    await self._open.wait()
                    response = await original(request)
                self.answer = json.loads(response.body)  # type: ignore[arg-type]
                return response
            finally:
                self.answered.set()

        fake._post_message = gated  # type: ignore[method-assign]

    def arm(self, jobs: Iterable[str] | None = None, *, after_storing: bool = False) -> None:
        """Hold the next result upload (of `jobs`; None: of any job); `after_storing`:
        once Discord has stored the message, holding only its answer."""
        self.jobs = None if jobs is None else set(jobs)
        self.after_storing = after_storing
        self.armed = True

    def open(self) -> None:
        self._open.set()

    def _job_of(self, request: web.Request) -> str | None:
        for upload in request[UPLOAD].files:
            found = _RESULT_NAME.match(upload.filename)
            if found and (self.jobs is None or found["job"] in self.jobs):
                return found["job"]
        return None


def result_messages(fake: FakeDiscord, job_id: str) -> list[dict[str, Any]]:
    """Stored messages holding result files of `job_id`."""
    return [
        message
        for message in fake.messages.values()
        if message["author"]["id"] == fake.bot.id
        and any(_job_of_file(a["filename"]) == job_id for a in message["attachments"])
    ]


def delivered_images(fake: FakeDiscord, job_id: str) -> int:
    return sum(
        1
        for message in result_messages(fake, job_id)
        for a in message["attachments"]
        if _job_of_file(a["filename"]) == job_id
    )


def result_uploads(fake: FakeDiscord, job_id: str) -> list[tuple[int, Any]]:
    """Answered uploads of `job_id`'s results, as (request seq, message id)."""
    return [
        (rec.seq, rec.response.get("id"))
        for rec in fake.requests
        if rec.method == "POST"
        and rec.ok
        and isinstance(rec.response, dict)
        and any(_job_of_file(f.filename) == job_id for f in rec.files)
    ]


def _job_of_file(filename: str) -> str | None:
    found = _RESULT_NAME.match(filename)
    return found["job"] if found else None


# --- the database, from outside ------------------------------------------------------------

_JOBS = f"SELECT {', '.join(READ_COLUMNS)} FROM jobs ORDER BY created_at, id"


@dataclass(frozen=True)
class Lease:
    job_id: str
    owner: str
    until: float
    token: int


class Db:
    """Read-only looks at the bots' PostgreSQL database (and one admin action:
    dropping sessions)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> Db:
        self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=2)
        return self

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "Db.open() first"
        return self._pool

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            return list(await self.pool.fetch(sql, *args))
        except asyncpg.UndefinedTableError:
            return []  # not migrated yet

    async def jobs(self) -> list[Job]:
        return [job_from_row(row.values()) for row in await self.fetch(_JOBS)]

    async def leases(self) -> list[Lease]:
        rows = await self.fetch("SELECT job_id, owner, until, token FROM job_leases")
        return [Lease(r[0], r[1], float(r[2]), int(r[3])) for r in rows]

    async def workers(self) -> dict[str, tuple[int, float]]:
        """{worker id: (pid, seen_at)}."""
        rows = await self.fetch("SELECT worker_id, pid, seen_at FROM workers")
        return {r[0]: (int(r[1]), float(r[2])) for r in rows}

    async def ledger(self) -> list[tuple[str, str, int]]:
        rows = await self.fetch("SELECT job_id, kind, images FROM ledger ORDER BY id")
        return [(r[0], r[1], int(r[2])) for r in rows]

    async def usage(self) -> dict[tuple[str, str], tuple[int, int]]:
        """{(guild, user): (used, charged)} summed over days."""
        rows = await self.fetch(
            "SELECT guild_id, user_id, SUM(used), SUM(charged) FROM usage_daily "
            "GROUP BY guild_id, user_id"
        )
        return {(r[0], r[1]): (int(r[2]), int(r[3])) for r in rows}

    async def sessions(self) -> list[dict[str, Any]]:
        """The bots' sessions (for a failure's report): state, what they wait for, query."""
        rows = await self.fetch(
            "SELECT pid, application_name, state, wait_event_type, wait_event, "
            "now() - xact_start AS in_transaction, left(query, 120) AS query "
            "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return [dict(row) for row in rows]

    async def listen_sessions(self) -> list[tuple[int, str]]:
        """(backend pid, application_name) of every LISTEN session of the bots."""
        rows = await self.fetch(
            "SELECT pid, application_name FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE $1",
            LISTEN_PREFIX + "%",
        )
        return [(int(r[0]), r[1]) for r in rows]

    async def drop_listen_sessions(self) -> list[int]:
        """pg_terminate_backend on every LISTEN session; the backend pids dropped."""
        dropped = []
        for pid, _ in await self.listen_sessions():
            if await self.pool.fetchval("SELECT pg_terminate_backend($1)", pid):
                dropped.append(pid)
        return dropped


# --- the processes ---------------------------------------------------------------------------


@dataclass
class Member:
    """One bot process of the fleet."""

    name: str
    bot: BotProcess
    callback_port: int
    shards: list[int]

    @property
    def pid(self) -> int:
        return self.bot.pid

    @property
    def callback_origin(self) -> str:
        return f"http://127.0.0.1:{self.callback_port}"

    def owns(self, lease_owner: str) -> bool:
        """Whether a lease's owner (a worker id: host:pid:random) is this process."""
        parts = lease_owner.split(":")
        return len(parts) >= 2 and parts[-2] == str(self.pid)


@dataclass
class Fleet:
    """N bot processes on one database and the two fakes; logs in `tmp`/<name>.log."""

    tmp: Path
    fake: FakeDiscord
    apixo: FakeApixo
    database_url: str | None  # None: SQLite (one process only)
    shard_count: int | None = None
    lease_seconds: float = 3.0
    settings: dict[str, Any] = field(default_factory=dict)
    members: list[Member] = field(default_factory=list)
    interactions: list[FakeInteraction] = field(default_factory=list)
    db: Db | None = None
    # One CALLBACK_PUBLIC_URL for all (docs/scaling.md); None: each process its own.
    balancer: CallbackBalancer | None = None

    @property
    def sqlite_path(self) -> Path:
        return self.tmp / "wanbot.sqlite3"

    def environment(self, callback_port: int, shards: Sequence[int]) -> dict[str, str]:
        extra: dict[str, Any] = {
            "default_user_limit": 1000,
            "max_running_jobs_per_user": 10,
            "max_queued_jobs_per_user": 20,
            "provider_concurrency": 40,
            "provider_status_rps": 200,
            "lease_seconds": self.lease_seconds,
            "log_level": "DEBUG",
            **self.settings,
        }
        if self.shard_count is not None:
            extra["shard_count"] = self.shard_count
            extra["shard_ids"] = ",".join(str(s) for s in shards)
        env = bot_environment(
            self.fake,
            self.apixo,
            token=TOKEN,
            database=self.sqlite_path,
            callback_port=callback_port,
            database_url=self.database_url,
            **extra,
        )
        if self.balancer is not None:
            env["CALLBACK_PUBLIC_URL"] = self.balancer.origin
        return env

    async def open_db(self) -> Db:
        if self.db is None:
            assert self.database_url is not None
            self.db = await Db(self.database_url).open()
        return self.db

    async def start(self, count: int, *, timeout: float = 30.0) -> list[Member]:
        """Start `count` processes at once (process i runs shard i when sharded) and
        wait until each has connected to the fake gateway."""
        if self.database_url is not None:
            await self.open_db()
        first = len(self.members)
        started = []
        for index in range(first, first + count):
            port = free_port()
            shards = [index] if self.shard_count is not None else []
            name = f"bot{index}"
            bot = await start_bot(
                self.environment(port, shards), self.tmp, self.tmp / f"{name}.log"
            )
            member = Member(name, bot, port, shards)
            self.members.append(member)
            if self.balancer is not None:
                self.balancer.origins.append(member.callback_origin)
            started.append(member)
        await self.wait_connected(started, timeout=timeout)
        return started

    async def wait_connected(self, members: Sequence[Member], timeout: float = 30.0) -> None:
        def ready() -> bool:
            for member in members:
                if not member.bot.running:
                    raise AssertionError(
                        f"{member.name} exited ({member.bot.proc.returncode}):\n"
                        + member.bot.log_text()[-4000:]
                    )
            ready = [c for c in self.fake._connections if c.ready]
            return len(ready) >= len([m for m in self.members if m.bot.running])

        try:
            await self.fake.wait_until(ready, timeout=timeout)
        except TimeoutError:
            logs = "\n".join(f"--- {m.name}\n{m.bot.log_text()[-3000:]}" for m in members)
            raise AssertionError(f"the bots did not all connect in {timeout} s\n{logs}") from None

    def member(self, lease_owner: str) -> Member | None:
        return next((m for m in self.members if m.owns(lease_owner)), None)

    async def close(self) -> None:
        """Kill whatever still runs (SIGCONT first: a stopped process is killed too)."""
        for member in self.members:
            if member.bot.running:
                with contextlib.suppress(ProcessLookupError):
                    member.bot.resume()
                    await member.bot.kill()
        if self.db is not None:
            await self.db.close()

    async def stop_all(self, timeout: float = 20.0) -> None:
        """SIGTERM each running process, as a service manager does; exit codes checked."""
        running = [m for m in self.members if m.bot.running]
        codes = await asyncio.gather(*(m.bot.stop(timeout) for m in running))
        bad = {m.name: c for m, c in zip(running, codes, strict=True) if c != 0}
        assert not bad, f"exit codes {bad}:\n" + "\n".join(
            f"--- {m.name}\n{m.bot.log_text()[-3000:]}" for m in running if m.name in bad
        )

    def logs(self) -> str:
        return "\n".join(f"===== {m.name} (pid {m.pid})\n{m.bot.log_text()}" for m in self.members)

    # --- load ---------------------------------------------------------------------------

    async def imagine(
        self, user: FakeUser, channel: FakeChannel, count: int, prompt: str = ""
    ) -> FakeInteraction:
        options = {"prompt": prompt or f"a lighthouse #{len(self.interactions)}", "count": count}
        interaction = await self.fake.slash("imagine", user, options, channel=channel)
        self.interactions.append(interaction)
        return interaction

    async def wait_acknowledged(self, timeout: float = 20.0) -> None:
        """Every /imagine deferred (type 5): a job was admitted for each."""
        pending = list(self.interactions)
        await self.fake.wait_until(lambda: all(i.callback for i in pending), timeout=timeout)
        kinds = {i.callback_type for i in pending}
        assert kinds == {5}, f"acknowledgements {kinds}: {[i.text() for i in pending]}"

    # --- the database ---------------------------------------------------------------------

    async def jobs(self) -> list[Job]:
        if self.database_url is None:  # SQLite: one process, read beside it (WAL)
            return db_jobs(self.sqlite_path)
        return await (await self.open_db()).jobs()

    async def wait_jobs(self, count: int, timeout: float = 20.0) -> list[Job]:
        async def stored() -> list[Job] | None:
            jobs = await self.jobs()
            return jobs if len(jobs) >= count else None

        return await poll(stored, f"{count} stored jobs", timeout)

    async def wait_all_final(self, timeout: float = 40.0) -> list[Job]:
        """A job for every /imagine sent (a deferred answer comes before the job is
        stored), every job final and, when done, its results on Discord."""

        async def final() -> list[Job] | None:
            jobs = await self.jobs()
            if len(jobs) < len(self.interactions) or not all(j.state.final for j in jobs):
                return None
            if any(j.state is JobState.DONE and not result_messages(self.fake, j.id) for j in jobs):
                return None
            return jobs

        try:
            return await poll(final, "every job to end", timeout)
        except AssertionError:
            jobs = await self.jobs()
            states = {j.id: j.state.value for j in jobs if not j.state.final}
            sessions = await self.db.sessions() if self.db is not None else []
            raise AssertionError(
                f"jobs still active: {states}\nsessions: {sessions}\n{self.logs()[-20000:]}"
            ) from None

    async def audit(self, jobs: Sequence[Job] | None = None) -> dict[str, int]:
        """Posted once, settled once, quotas exact, nothing left active (see module doc);
        returns totals for the test's own assertions."""
        db = await self.open_db()
        jobs = list(jobs) if jobs is not None else await self.jobs()
        assert jobs, "no jobs"
        assert not self.fake.errors, f"the fake Discord failed: {self.fake.errors}"
        active = [j.id for j in jobs if not j.state.final]
        assert not active, f"jobs left active: {active}"
        leases = await db.leases()
        assert not leases, f"leases left on final jobs: {leases}"
        rows: dict[str, dict[str, list[int]]] = {}
        for job_id, kind, images in await db.ledger():
            rows.setdefault(job_id, {}).setdefault(kind, []).append(images)
        assert set(rows) == {j.id for j in jobs}, "ledger rows without a job, or the reverse"
        charged_total = delivered_total = 0
        per_user: dict[tuple[str, str], list[int]] = {}
        for job in jobs:
            entries = rows[job.id]
            twice = {k: v for k, v in entries.items() if len(v) > 1}
            assert not twice, f"job {job.id} settled twice: {entries}"
            reserve = entries["reserve"][0]
            charge = entries.get("charge", [0])[0]
            refund = entries.get("refund", [0])[0]
            assert reserve == job.reserved == job.request.count, (job.id, entries)
            assert "charge" in entries or "refund" in entries, f"job {job.id} not settled"
            assert charge == job.delivered and charge + refund == reserve, (job.id, entries)
            posted = delivered_images(self.fake, job.id)
            messages = result_messages(self.fake, job.id)
            uploads = {mid for _, mid in result_uploads(self.fake, job.id)}
            if job.state is JobState.DONE:
                assert len(messages) == 1, f"job {job.id} posted {len(messages)} times"
                assert len(uploads) == 1, f"job {job.id} uploaded as {uploads}: " + repr(
                    [
                        (r.seq, r.method, r.path, r.status, r.real_at)
                        for r in self.fake.requests
                        if any(_job_of_file(f.filename) == job.id for f in r.files)
                    ]
                )
                assert posted == charge >= 1, (job.id, posted, charge)
            else:
                assert not messages and charge == 0, (job.id, job.state, len(messages))
            charged_total += charge
            delivered_total += posted
            key = (job.requester.guild_id or "", job.requester.user_id)
            used_charged = per_user.setdefault(key, [0, 0])
            used_charged[0] += reserve - refund
            used_charged[1] += charge
        assert charged_total == delivered_total
        usage = await db.usage()
        expected = {key: (v[0], v[1]) for key, v in per_user.items()}
        assert usage == expected, f"usage_daily {usage} != ledger {expected}"
        done = sum(1 for j in jobs if j.state is JobState.DONE)
        return {"jobs": len(jobs), "done": done, "charged": charged_total}


def callback_on(member: Member, callback_url: str) -> str:
    """`callback_url` (of whichever process submitted the task) sent to `member`."""
    path = callback_url.split("/", 3)[3]
    return f"{member.callback_origin}/{path}"

"""Several bot processes on one PostgreSQL (issue 16): jobs per minute and delivery lag
with 1, 2 and 3 real `python -m bot run` processes on PostgreSQL, beside 1 process on
SQLite, in the same run under the same load: 200 /imagine jobs (1-4 images) from 50
users sent at once through the fake Discord, each task finishing at the fake APIXO
1 s after its submit and calling back. The harness is the multi-process tests' own
(tests/multiproc.py)."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench.common import Figure, Section, md_table, percentile
from bot.core.models import JobState
from tests.fakes.discord import FakeDiscord
from tests.multiproc import Fleet, TimedApixo, result_messages, result_uploads

JOBS = 200
USERS = 50
TASK_SECONDS = 1.0
# Provider slots over all processes together: one per job, so the provider is never
# the bottleneck and the figures are the bots' own (with fewer slots, a slot held
# from submit to posting caps the rate at slots / (task + lag)).
PROVIDER_CONCURRENCY = JOBS
FLEETS = [("SQLite", 1), ("PostgreSQL", 1), ("PostgreSQL", 2), ("PostgreSQL", 3)]
RUN_LIMIT = 180.0  # seconds one fleet may take to deliver everything
ROUNDS = 3


@dataclass
class Outcome:
    backend: str
    processes: int
    seconds: float  # first /imagine sent -> last result posted
    lags: list[float]  # task finished at the provider -> results posted, per job
    done: int
    cpu_seconds: float
    shares: list[int]  # jobs each process delivered

    @property
    def per_minute(self) -> float:
        return self.done / self.seconds * 60

    def lag(self, q: float) -> float:
        return percentile(self.lags, q) or 0.0


def _cpu_of(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


async def _one(tmp: Path, backend: str, processes: int, url: str | None) -> Outcome:
    # No 3 s window in real time: 200 commands at once on a busy machine would time
    # some acknowledgements out, which is the ack bench's subject, not this one's.
    fake = FakeDiscord(enforce_real_time_window=False)
    shards = processes if url is not None and processes > 1 else None
    fake.max_concurrency = max(processes, 1)
    guilds = [
        fake.add_guild(f"shard{i}", shard=(i, shards) if shards else None) for i in range(processes)
    ]
    apixo = TimedApixo(duration=TASK_SECONDS)
    async with fake, apixo:
        fleet = Fleet(
            tmp,
            fake,
            apixo,
            url,
            shard_count=shards,
            lease_seconds=30.0,
            settings={
                "log_level": "INFO",
                "provider_concurrency": PROVIDER_CONCURRENCY,
                "provider_status_rps": 50,
                "max_running_jobs_per_user": JOBS // USERS,
                "max_queued_jobs_per_user": JOBS // USERS,
            },
        )
        try:
            await fleet.start(processes, timeout=60)
            users = [fake.add_user(f"user{i}") for i in range(USERS)]
            pids = [m.pid for m in fleet.members]
            cpu_before = _cpu_of(pids)
            offset = time.time() - time.monotonic()
            started = time.monotonic()
            sends = []
            for n in range(JOBS):
                guild = guilds[n % len(guilds)]
                assert guild.general is not None
                sends.append(fleet.imagine(users[n % USERS], guild.general, 1 + n % 4))
            await asyncio.gather(*sends)
            jobs = await fleet.wait_all_final(timeout=RUN_LIMIT)
            cpu = _cpu_of(pids) - cpu_before
            lags, last = [], started
            for job in jobs:
                if job.state is not JobState.DONE:
                    continue
                if len(result_messages(fake, job.id)) != 1:
                    raise RuntimeError(f"job {job.id} posted more than once")
                seqs = {seq for seq, _ in result_uploads(fake, job.id)}
                posted = min(r.real_at for r in fake.requests if r.seq in seqs)
                last = max(last, posted)
                assert job.task_id is not None
                finished = apixo.tasks[job.task_id].finished
                assert finished is not None
                lags.append(posted + offset - finished)
            done = sum(1 for j in jobs if j.state is JobState.DONE)
            if done != JOBS:
                raise RuntimeError(f"{backend} x{processes}: only {done} of {JOBS} delivered")
            await fleet.stop_all(timeout=60)
            shares = [m.bot.log_text().count(": delivered ") for m in fleet.members]
            return Outcome(backend, processes, last - started, lags, done, cpu, shares)
        finally:
            await fleet.close()


async def _create(cluster_url: str, name: str) -> None:
    conn = await asyncpg.connect(cluster_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def measure() -> tuple[list[Outcome], str]:
    """Every fleet, ROUNDS times, interleaved on the same machine (a round of each,
    then the next); per fleet the round of median throughput. Also why PostgreSQL is
    missing, if it is."""
    from tests.pg import PgUnavailable, start_cluster, stop_cluster

    runs: dict[tuple[str, int], list[Outcome]] = {}
    try:
        cluster = start_cluster(durable=True)
    except PgUnavailable as exc:
        cluster, why_not = None, str(exc)
    else:
        why_not = ""
    try:
        for round_ in range(ROUNDS):
            for index, (backend, processes) in enumerate(FLEETS):
                url = None
                if backend == "PostgreSQL":
                    if cluster is None:
                        continue
                    name = f"fleet{round_}_{index}"
                    asyncio.run(_create(cluster.url("postgres"), name))
                    url = cluster.url(name)
                with tempfile.TemporaryDirectory(prefix="wanbot-bench-multiproc-") as tmp:
                    outcome = asyncio.run(_one(Path(tmp), backend, processes, url))
                runs.setdefault((backend, processes), []).append(outcome)
    finally:
        if cluster is not None:
            stop_cluster(cluster)
    medians = []
    for found in runs.values():
        found.sort(key=lambda o: o.per_minute)
        medians.append(found[len(found) // 2])
    return medians, why_not


def run() -> Section:
    load_before = os.getloadavg()[0]
    outcomes, why_not = measure()
    load = max(load_before, os.getloadavg()[0])
    by_key = {(o.backend, o.processes): o for o in outcomes}
    figures = []
    for backend, processes in FLEETS:
        o = by_key.get((backend, processes))
        label = f"{backend}, {processes} process{'es' if processes > 1 else ''}"
        rate = o.per_minute if o else None
        figures.append(Figure(f"{label}: jobs per minute", rate, "", digits=0))
        figures.append(Figure(f"{label}: delivery lag p95", o.lag(95) if o else None, "s"))
    rows = [
        [
            o.backend,
            o.processes,
            f"{o.seconds:.1f} s",
            f"**{o.per_minute:,.0f}**",
            f"{o.lag(50):.2f} s",
            f"{o.lag(95):.2f} s",
            f"{max(o.lags):.2f} s",
            f"{o.cpu_seconds / o.done * 1000:.0f} ms",
            " / ".join(str(n) for n in o.shares),
        ]
        for o in outcomes
    ]
    table = md_table(
        [
            "database",
            "processes",
            "200 jobs took",
            "jobs per minute",
            "lag p50",
            "lag p95",
            "lag max",
            "bot CPU per job",
            "jobs delivered by each process",
        ],
        rows,
    )
    missing = f"\n\nPostgreSQL did not run: {why_not}." if why_not else ""
    body = f"""{table}{missing}

Machine load during the run (1-minute load average, highest seen): {load:.1f} on
{os.cpu_count()} cores. Every process, the fakes and PostgreSQL share these cores, so
more processes add coordination, not CPU: on a machine this size the figures show the
cost of sharing; the gain comes with processes on machines of their own.

Method: for each fleet, a fresh database (PostgreSQL: one throwaway cluster with its
durable defaults, a database per fleet; SQLite: a file in WAL mode), N real
`python -m bot run` processes configured only by their environment (SHARD_COUNT=N, one
shard each, one guild per shard; SQLite: one process, no sharding), one fake Discord
and one fake APIXO on 127.0.0.1. Once every process is connected, {JOBS} `/imagine`
commands (1-4 images, {USERS} users, spread over the guilds) are sent at once; each task
finishes {TASK_SECONDS:.0f} s after its submit and the fake calls back the URL the
submit gave. Jobs per minute: jobs delivered / (first command sent -> last result
posted). Delivery lag: task finished at the provider -> its result upload received by
the fake Discord (download, posting and the callback's way through the bot included).
PROVIDER_CONCURRENCY={PROVIDER_CONCURRENCY} over all processes, so the provider is not
the bottleneck; LEASE_SECONDS=30. Each job is checked posted exactly once. Bot CPU per
job: user + system CPU of the bot processes during the load, over the jobs. Jobs
delivered by each process: from each process's log. The fleets run {ROUNDS} times,
interleaved (one round of each, then the next); each row is that fleet's round of
median throughput.

Ledger operations per second on PostgreSQL: see the "ledger" section
(`python -m bench ledger`)."""
    return Section(
        "multiproc",
        "Several processes on one PostgreSQL: jobs per minute and delivery lag",
        figures,
        body,
    )

"""Several bot processes sharing one PostgreSQL database (implements
`bot.core.ports.WorkShare`).

A job is worked on by the process holding its row in `job_leases` (migration 0009).
Queued jobs are claimed under a per-provider advisory lock, so the provider's
concurrency and each user's running limit are counted over every process at once:
the slots in use are the jobs submitting or running anywhere, plus queued jobs held
between two submit attempts. Rows are taken `FOR UPDATE SKIP LOCKED`, so a claim
never waits on a job another statement is changing. A lease lasts `lease_seconds` of
the database's clock (the `clock` given is that clock: storage/postgres/clock.py);
its holder renews it every third of that, and any process takes over a job whose
lease has run out. Every claim raises the lease's `token`: the fencing token checked
right before results are posted, so a holder that was paused past its lease finds out
before it posts.

Wake-ups go over LISTEN/NOTIFY on one connection of its own (application_name
`wanbot listen <pid>`); when it drops it is opened again with back-off. Nothing
depends on a wake-up arriving: the engine also scans on a timer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import asyncpg

from bot.core.clock import Clock
from bot.core.ports import Claimed
from bot.core.tasks import TaskGroup
from storage.job_rows import job_from_row
from storage.postgres.clock import DatabaseClock
from storage.postgres.db import PgDatabase
from storage.postgres.jobs import SELECT_JOBS

log = logging.getLogger(__name__)

CHANNEL = "wanbot"
LOCK_DISPATCH = 0x7764  # "wd": pg_advisory_xact_lock(class, hashtext(provider))
# A status card is posted right after admission; until its reference is stored, only
# the process that admitted the job claims it (its updates wait for the card there).
# Past this age anyone does: that process may have died before posting it.
CARD_WAIT_SECONDS = 10.0
TAKE_OVER_BATCH = 200
# A process paused (SIGSTOP, a VM freeze) inside a claim would hold the dispatch lock,
# and the rows it locked, until it resumes: every pooled session has the server end
# such a transaction after 5 s idle (IDLE_TRANSACTION_SECONDS in db.py).
# Fair picking looks this far into the queue per free slot (users' running limits skip
# some candidates).
_CANDIDATES_PER_SLOT = 8

_SLOTS_USED = """
SELECT (SELECT count(*) FROM jobs WHERE provider = $1 AND state IN ('submitting', 'running'))
     + (SELECT count(*) FROM job_leases l JOIN jobs j ON j.id = l.job_id
        WHERE j.provider = $1 AND j.state = 'queued' AND l.until > $2)
"""
_CANDIDATES = """
SELECT j.id, j.platform, j.user_id FROM jobs j
WHERE j.state = 'queued' AND j.provider = $1 AND j.platform = ANY($2::text[])
  AND NOT EXISTS (SELECT 1 FROM job_leases l WHERE l.job_id = j.id AND l.until > $3)
  AND (strpos(j.delivery, '"card_by"') = 0 OR j.created_at < $4 OR j.id = ANY($5::text[]))
  AND (j.deadline_at IS NULL OR j.deadline_at > $3)
ORDER BY j.created_at, j.id
LIMIT $6
FOR UPDATE OF j SKIP LOCKED
"""
# Jobs a user has started and not finished, anywhere (their running limit).
_USERS_BUSY = """
SELECT j.platform, j.user_id, count(*) FROM jobs j
WHERE (j.platform, j.user_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
  AND (j.state IN ('submitting', 'running', 'delivering')
       OR (j.state = 'queued' AND EXISTS
           (SELECT 1 FROM job_leases l WHERE l.job_id = j.id AND l.until > $3)))
GROUP BY j.platform, j.user_id
"""
_ORPHANS = """
SELECT j.id FROM jobs j LEFT JOIN job_leases l ON l.job_id = j.id
WHERE j.platform = ANY($2::text[]) AND (l.job_id IS NULL OR l.until <= $3)
  AND (j.state IN ('submitting', 'running', 'delivering')
       OR (j.state = 'queued' AND (j.deadline_at <= $3 OR j.provider <> $1)))
ORDER BY j.created_at, j.id
LIMIT $4
FOR UPDATE OF j SKIP LOCKED
"""
_LEASE = """
INSERT INTO job_leases (job_id, owner, until, token)
SELECT id, $2, $3, 1 FROM unnest($1::text[]) AS id
ON CONFLICT (job_id) DO UPDATE
SET owner = excluded.owner, until = excluded.until, token = job_leases.token + 1
RETURNING job_id, token
"""


class PgWorkShare:
    def __init__(
        self,
        db: PgDatabase,
        clock: Clock,
        *,
        lease_seconds: float,
        worker_id: str | None = None,
        reconnect_delay: float = 1.0,
    ) -> None:
        self._db = db
        self._clock = clock
        self.lease_seconds = lease_seconds
        self.worker_id = worker_id or (
            f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        )
        self._reconnect_delay = reconnect_delay
        self._wake: Callable[[str, str], None] | None = None
        self._tasks = TaskGroup("share")
        self._listener: asyncpg.Connection | None = None
        self._listening = asyncio.Event()  # set while the LISTEN connection is up
        self._dropped = asyncio.Event()
        self._started_at = 0.0

    # --- lifecycle ------------------------------------------------------------------

    async def start(self, wake: Callable[[str, str], None]) -> None:
        self._wake = wake
        self._started_at = self._clock.now()
        await self.heartbeat()
        await self._listen()  # the first one in the open: a bad URL fails the start
        self._tasks.create_task(self._keep_listening(), name="share-listen")

    async def close(self) -> None:
        await self._tasks.close()
        if self._listener is not None and not self._listener.is_closed():
            await self._listener.close()
        self._listener = None
        try:
            released = await self._db.fetchval(
                "WITH gone AS (DELETE FROM job_leases WHERE owner = $1 RETURNING 1) "
                "SELECT count(*) FROM gone",
                self.worker_id,
            )
            await self._db.execute("DELETE FROM workers WHERE worker_id = $1", self.worker_id)
            if released:
                # Others take them over now rather than when the leases would have run out.
                await self.notify("queued", "*")
                log.info("gave back %d job(s) to the other processes", released)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("could not give back this process's jobs: %s", exc)

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    async def heartbeat(self) -> int:
        if isinstance(self._clock, DatabaseClock):
            await self._clock.sync(self._db)  # hosts' clocks drift apart between syncs
        now = self._clock.now()
        live = await self._db.fetchval(
            "WITH me AS (INSERT INTO workers (worker_id, host, pid, started_at, seen_at) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (worker_id) DO UPDATE SET seen_at = $5 "
            "RETURNING 1) "
            "SELECT 1 + count(*) FROM workers WHERE seen_at > $6 AND worker_id <> $1",
            self.worker_id,
            socket.gethostname(),
            os.getpid(),
            self._started_at or now,
            now,
            now - self.lease_seconds,
        )
        return int(live)

    # --- claims -----------------------------------------------------------------------

    async def claim(
        self,
        provider: str,
        platforms: Sequence[str],
        *,
        concurrency: int,
        per_user: int | None,
        own: Sequence[str] = (),
        workers: int = 1,
    ) -> list[Claimed]:
        async with self._db.transaction() as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))", LOCK_DISPATCH, provider
            )
            # Read once the lock is held: the wait for it may be long (up to the idle
            # timeout behind a paused holder), and leases count from now.
            now = self._clock.now()
            free = concurrency - int(await conn.fetchval(_SLOTS_USED, provider, now))
            if free <= 0:
                return []
            # This process's share: the others, woken, take the rest (work spread out
            # rather than one process taking every slot that comes free).
            free = -(-free // max(1, workers))
            rows = await conn.fetch(
                _CANDIDATES,
                provider,
                list(platforms),
                now,
                now - CARD_WAIT_SECONDS,
                list(own),
                free * _CANDIDATES_PER_SLOT,
            )
            if not rows:
                return []
            users = list({(r[1], r[2]) for r in rows})
            busy_rows = await conn.fetch(
                _USERS_BUSY, [u[0] for u in users], [u[1] for u in users], now
            )
            busy = {(r[0], r[1]): int(r[2]) for r in busy_rows}
            picked = pick_fairly([(r[0], (r[1], r[2])) for r in rows], busy, free, per_user)
            if not picked:
                return []
            return await self._lease(conn, picked, now)

    async def take_over(self, provider: str, platforms: Sequence[str]) -> list[Claimed]:
        now = self._clock.now()
        async with self._db.transaction() as conn:
            rows = await conn.fetch(_ORPHANS, provider, list(platforms), now, TAKE_OVER_BATCH)
            if not rows:
                return []
            return await self._lease(conn, [r[0] for r in rows], now)

    async def _lease(
        self, conn: asyncpg.Connection, job_ids: list[str], now: float
    ) -> list[Claimed]:
        leased = await conn.fetch(_LEASE, job_ids, self.worker_id, now + self.lease_seconds)
        tokens = {r[0]: int(r[1]) for r in leased}
        jobs = {
            r["id"]: job_from_row(r.values())
            for r in await conn.fetch(f"{SELECT_JOBS} WHERE id = ANY($1::text[])", job_ids)
        }
        return [Claimed(jobs[i], tokens[i]) for i in job_ids if i in jobs and i in tokens]

    # --- leases -----------------------------------------------------------------------

    async def renew(self, tokens: Mapping[str, int]) -> set[str]:
        if not tokens:
            return set()
        rows = await self._db.fetch(
            "UPDATE job_leases SET until = $3 WHERE job_id = ANY($1::text[]) AND owner = $2 "
            "RETURNING job_id, token",
            list(tokens),
            self.worker_id,
            self._clock.now() + self.lease_seconds,
        )
        kept = {r[0] for r in rows if tokens.get(r[0]) == int(r[1])}
        return set(tokens) - kept

    async def holds(self, job_id: str, token: int) -> bool:
        now = self._clock.now()
        held = await self._db.fetchval(
            "UPDATE job_leases SET until = $4 "
            "WHERE job_id = $1 AND owner = $2 AND token = $3 AND until > $5 RETURNING 1",
            job_id,
            self.worker_id,
            token,
            now + self.lease_seconds,
            now,
        )
        return held is not None

    async def release(self, tokens: Mapping[str, int]) -> None:
        if tokens:
            await self._db.execute(
                "DELETE FROM job_leases WHERE owner = $1 AND job_id = ANY($2::text[])",
                self.worker_id,
                list(tokens),
            )

    # --- wake-ups ---------------------------------------------------------------------

    async def notify(self, kind: str, job_id: str = "") -> None:
        try:
            await self._db.execute(
                "SELECT pg_notify($1, $2)", CHANNEL, f"{kind} {job_id} {self.worker_id}"
            )
        except (OSError, asyncpg.PostgresError) as exc:  # best effort: others scan anyway
            log.warning("could not wake the other processes: %s", exc)

    def _heard(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        kind, _, rest = payload.partition(" ")
        job_id, _, sender = rest.partition(" ")
        if sender == self.worker_id or self._wake is None:
            return
        try:
            self._wake(kind, job_id)
        except Exception:
            log.exception("handling a wake-up (%s) failed", payload)

    def _lost(self, _conn: object) -> None:
        self._listening.clear()
        self._dropped.set()

    async def _listen(self) -> None:
        conn = await asyncpg.connect(
            self._db.url,
            server_settings={"application_name": f"wanbot listen {os.getpid()}"},
        )
        try:
            await conn.add_listener(CHANNEL, self._heard)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._lost)
        self._listener = conn
        self._dropped.clear()
        self._listening.set()

    async def _keep_listening(self) -> None:
        """Open the LISTEN connection again whenever it drops; wake-ups sent meanwhile are
        lost, so the engine is told to look at everything once it is back."""
        while True:
            await self._dropped.wait()
            log.warning("the database's wake-up connection dropped; polling until it is back")
            delay = self._reconnect_delay
            while True:
                await asyncio.sleep(delay)
                try:
                    await self._listen()
                    break
                except (OSError, asyncpg.PostgresError) as exc:
                    log.warning("wake-up connection not back yet: %s", exc)
                    delay = min(delay * 2, 30.0)
            log.info("the database's wake-up connection is back")
            if self._wake is not None:
                self._wake("queued", "*")


def pick_fairly(
    candidates: Sequence[tuple[str, Any]],
    busy: Mapping[Any, int],
    free: int,
    per_user: int | None,
) -> list[str]:
    """Up to `free` job ids from `candidates` (oldest first, each with its user), one
    user at a time: the user with the fewest jobs under way goes next (ties: whose
    waiting job is oldest), never past `per_user` jobs under way."""
    queues: dict[Any, list[str]] = {}
    for job_id, user in candidates:
        queues.setdefault(user, []).append(job_id)
    order = {user: i for i, user in enumerate(queues)}
    counts = {user: busy.get(user, 0) for user in queues}
    picked: list[str] = []
    while len(picked) < free and queues:
        user = min(queues, key=lambda u: (counts[u], order[u]))
        if per_user is not None and counts[user] >= per_user:
            del queues[user]
            continue
        picked.append(queues[user].pop(0))
        counts[user] += 1
        if not queues[user]:
            del queues[user]
    return picked

"""Jobs and their quota ledger in PostgreSQL (implements `bot.core.ports.JobStore`).

The same contract and schema rules as the SQLite store (storage/sqlite/jobs.py): inserting
a job reserves its images and a move to a final state settles them, by trigger, in
the same statement; state changes are compare-and-set updates.

What differs is concurrency. PostgreSQL runs transactions side by side, so admit()
serialises the decisions that could over-admit with two transaction-level advisory
locks taken before the quota facts are read: one per user (platform and user id: their
running and queued jobs, across servers, and their usage in every space) and one per
space (the server's monthly budget: exclusive when the server has one, else shared). Locks
are always taken in that order, user then scope, so two admits cannot deadlock; they
are released at COMMIT. The locks live in the server, so this holds across processes.

Times: the store stamps admitted_at, updated_at and finished_at from the injected
clock, as the SQLite store does, because the engine computes deadline_at from that
same clock and the quota periods are derived from admitted_at; one clock for all of
them keeps deadlines, periods and tests consistent. (Multi-process leases will be
stamped and compared with the database's clock, in the migration that adds them.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg

from bot.core.clock import Clock
from bot.core.models import Job, JobState, Requester, Space
from bot.core.quota import QuotaDefaults, decide
from storage.job_rows import (
    ACTIVE_STATE_VALUES,
    ACTIVE_STATES_SQL,
    EXTRA_COLUMNS,
    FINAL_STATES,
    JOB_COLUMNS,
    READ_COLUMNS,
    admission,
    encode_fields,
    expected_states,
    finish_values,
    job_from_row,
    job_not_found,
    transition_values,
    warn_if_capped,
)
from storage.postgres.db import PgDatabase
from storage.postgres.facts import read_facts

# pg_advisory_xact_lock(class, key) classes: distinct, so a user lock never collides
# with a scope lock (hashtext collisions within a class only serialise more).
LOCK_USER = 0x7775  # "wu"
LOCK_SCOPE = 0x7773  # "ws"
# The user's lock, and whether the scope has a budget (a hint: read when the statement
# starts, checked again in the facts once the scope lock is held).
_USER_LOCK = (
    f"SELECT pg_advisory_xact_lock({LOCK_USER}, hashtext($1)), "
    "EXISTS (SELECT 1 FROM server_budgets WHERE platform = $2 AND guild_id = $3)"
)
SCOPE_LOCK = f"SELECT pg_advisory_xact_lock({LOCK_SCOPE}, hashtext($1))"
_SCOPE_SHARED = f"SELECT pg_advisory_xact_lock_shared({LOCK_SCOPE}, hashtext($1))"


def space_key(space: Space) -> str:
    """The scope lock's key: one per space (a platform and a server id)."""
    return f"{space.platform}:{space.id}"


class _BudgetAppeared(Exception):
    """A budget was set between the hint and the facts: start again, exclusively."""


_INSERT_COLUMNS = (*JOB_COLUMNS, *EXTRA_COLUMNS)
_INSERT_JOB = (
    f"INSERT INTO jobs ({', '.join(_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(_INSERT_COLUMNS) + 1))})"
)
# Result URLs are kept in job_results while a job is delivered (migration 0004), so
# job rows do not grow and shrink by ~1 kB each; jobs.result_urls stays '[]'.
_URLS = "COALESCE((SELECT urls FROM job_results WHERE job_id = jobs.id), jobs.result_urls)"
_COLUMNS = ", ".join(_URLS if c == "result_urls" else c for c in READ_COLUMNS)
# A move to a final state empties job_results by trigger, at the end of the statement:
# RETURNING (computed before) must not show what that trigger removes.
_FINAL_COLUMNS = ", ".join(READ_COLUMNS)
_SELECT = SELECT_JOBS = f"SELECT {_COLUMNS} FROM jobs"
_FINAL_ARRAY = "ARRAY[" + ", ".join(repr(s) for s in FINAL_STATES) + "]"


class PostgresJobStore:
    def __init__(
        self,
        db: PgDatabase,
        clock: Clock,
        defaults: QuotaDefaults,
        price_per_image_usd: float | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._defaults = defaults
        # Stored with each job at admission and copied onto its charge (migration 0003),
        # so reports never re-price the past. None: unknown (costed at the report's price).
        self.price_per_image_usd = price_per_image_usd

    async def admit(self, job: Job) -> Job:
        """Check the requester's limits and reserve `job.request.count` images, inserting
        the job as QUEUED; all in one transaction. Raises `QuotaDenied` (then nothing
        is written)."""
        now = self._clock.now()
        job, params = admission(job, self.price_per_image_usd, now)
        params["now"] = now  # for the quota facts, not a column
        exclusive = False
        while True:
            try:
                await self._admit(job, params, exclusive=exclusive)
            except _BudgetAppeared:
                exclusive = True  # rare: an admin set the budget just now
            else:
                return job

    async def _admit(self, job: Job, params: dict[str, Any], *, exclusive: bool) -> None:
        requester = job.requester
        space, now, images = requester.space, params["now"], job.request.count
        scope = space_key(space)
        async with self._db.transaction() as conn:
            # A process paused here must not hold these locks (and every admit of this
            # user or server) until it resumes: the server ends the transaction
            # (IDLE_TRANSACTION_SECONDS in storage/postgres/db.py).
            # Locks before the facts are read: each statement reads what was committed
            # when it started, so the read must start after any earlier admit's COMMIT.
            # The scope lock guards the server's monthly budget: exclusive where there is
            # one (those admits go one at a time), shared where there is none (so users
            # of one server are admitted side by side) and set_server_budget() takes it
            # exclusively, so a budget never appears under an admit that shares it.
            row = await conn.fetchrow(
                _USER_LOCK,
                f"{requester.platform}:{requester.user_id}",
                space.platform,
                space.id,
            )
            exclusive = exclusive or bool(row[1])
            await conn.execute(SCOPE_LOCK if exclusive else _SCOPE_SHARED, scope)
            facts = await read_facts(
                conn,
                space=space,
                user_id=requester.user_id,
                role_ids=requester.role_ids,
                now=now,
                count_jobs=True,
            )
            if facts.server_budget is not None and not exclusive:
                raise _BudgetAppeared
            denied = decide(
                facts, self._defaults, images=images, is_admin=requester.is_admin, now=now
            )
            if denied is not None:
                raise denied
            try:
                await conn.execute(_INSERT_JOB, *(params[c] for c in _INSERT_COLUMNS))
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name == "jobs_pkey":
                    raise ValueError(f"job {job.id} already exists") from exc
                raise

    async def precheck(self, requester: Requester, images: int) -> None:
        """Admission's rule, read-only (no locks): raises the QuotaDenied admitting would."""
        now = self._clock.now()
        async with self._db.transaction(readonly=True) as conn:
            facts = await read_facts(
                conn,
                space=requester.space,
                user_id=requester.user_id,
                role_ids=requester.role_ids,
                now=now,
                count_jobs=True,
            )
        denied = decide(facts, self._defaults, images=images, is_admin=requester.is_admin, now=now)
        if denied is not None:
            raise denied

    async def get(self, job_id: str) -> Job | None:
        row = await self._db.fetchrow(f"{_SELECT} WHERE id = $1", job_id)
        return job_from_row(row.values()) if row else None

    async def find_by_task(self, provider: str, task_id: str) -> Job | None:
        row = await self._db.fetchrow(
            # Active jobs only: migration 0006's partial index (jobs_task) holds those.
            f"{_SELECT} WHERE provider = $1 AND task_id = $2 AND state IN {ACTIVE_STATES_SQL} "
            "ORDER BY created_at DESC LIMIT 1",
            provider,
            task_id,
        )
        return job_from_row(row.values()) if row else None

    async def transition(
        self, job_id: str, expected: Iterable[JobState], new_state: JobState, **fields: Any
    ) -> Job | None:
        """Compare-and-set on the state. Moving to a final state settles the reservation
        with the job's `delivered` (pass `delivered=` here, or better use finish()).
        A final job never changes state again."""
        states = expected_states(expected)
        if not states:
            return None
        values = transition_values(new_state, fields)
        row = await self._update(
            job_id,
            values,
            "state = ANY({expected}::text[])",
            {"expected": [s.value for s in states]},
        )
        return job_from_row(row.values()) if row else None

    async def update(self, job_id: str, **fields: Any) -> Job:
        """Set fields without changing the state. Raises NotFound."""
        row = await self._update(job_id, encode_fields(fields))
        if row is None:
            raise job_not_found(job_id)
        return job_from_row(row.values())

    async def finish(
        self, job_id: str, new_state: JobState, *, delivered: int, **fields: Any
    ) -> Job:
        """Move to a final state; charge `delivered` images and refund the rest of the
        reservation in the same statement. A job already final is returned unchanged."""
        values = finish_values(new_state, delivered, fields, self._clock.now())
        row = await self._update(job_id, values, f"NOT (state = ANY({_FINAL_ARRAY}))")
        changed = row is not None
        if row is None:
            # Already final (a concurrent finish waited on the row lock, then found the
            # state changed): this separate statement reads the committed outcome.
            row = await self._db.fetchrow(f"{_SELECT} WHERE id = $1", job_id)
        if row is None:
            raise job_not_found(job_id)
        job = job_from_row(row.values())
        if changed:
            warn_if_capped(job, delivered)
        return job

    async def active_jobs(self) -> list[Job]:
        rows = await self._db.fetch(
            f"{_SELECT} WHERE state = ANY($1::text[]) ORDER BY created_at, id",
            list(ACTIVE_STATE_VALUES),
        )
        return [job_from_row(row.values()) for row in rows]

    async def user_jobs(self, platform: str, user_id: str, limit: int = 10) -> list[Job]:
        rows = await self._db.fetch(
            f"{_SELECT} WHERE platform = $1 AND user_id = $2 "
            "ORDER BY created_at DESC, id DESC LIMIT $3",
            platform,
            user_id,
            limit,
        )
        return [job_from_row(row.values()) for row in rows]

    async def _update(
        self,
        job_id: str,
        values: dict[str, Any],
        condition: str = "TRUE",
        extra: Mapping[str, Any] | None = None,
    ) -> asyncpg.Record | None:
        """UPDATE ... RETURNING: the updated job, or None if `condition` did not hold.
        `condition` names its parameters as {name}, filled from `extra`."""
        values["updated_at"] = self._clock.now()
        urls = values.pop("result_urls", None)  # JSON; kept in job_results, not the row
        to_final = values.get("state") in FINAL_STATES
        args: list[Any] = [job_id]

        def slot(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        assignments = ", ".join(
            # Never charge more than was reserved, nor a negative count.
            f"delivered = GREATEST(0, LEAST({slot(value)}::integer, reserved))"
            if name == "delivered"
            else f"{name} = {slot(value)}"
            for name, value in values.items()
        )
        where = condition.format(**{name: slot(value) for name, value in (extra or {}).items()})
        sql = f"UPDATE jobs SET {assignments} WHERE id = $1 AND ({where}) RETURNING "
        if urls is None:
            return await self._db.fetchrow(sql + (_FINAL_COLUMNS if to_final else _COLUMNS), *args)
        async with self._db.transaction() as conn:
            if await conn.fetchrow(sql + "id", *args) is None:
                return None
            if urls == "[]":
                await conn.execute("DELETE FROM job_results WHERE job_id = $1", job_id)
            else:
                await conn.execute(
                    "INSERT INTO job_results (job_id, urls) VALUES ($1, $2) "
                    "ON CONFLICT (job_id) DO UPDATE SET urls = excluded.urls",
                    job_id,
                    urls,
                )
            # Read back with the URLs (same transaction, by primary key).
            return await conn.fetchrow(f"{_SELECT} WHERE id = $1", job_id)

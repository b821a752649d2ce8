"""Jobs and their quota ledger in SQLite (implements `bot.core.ports.JobStore`).

The schema (migration 0002) ties money to job rows: inserting a job reserves its
images and a job's move to a final state settles them (charge what was delivered,
refund the rest; no refund row when nothing is refunded, since migration 0006), by
trigger, in the same statement. The price per image is stored
with the job at admission and copied onto its charge (migration 0003). So no path to a final state
can skip the settle, and every change here is one `Database.atomic()` unit: one
hop to SQLite's thread, committed together with the units that arrived with it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

import aiosqlite

from bot.core.clock import Clock
from bot.core.models import ACTIVE_STATES, Job, JobState, Requester
from bot.core.quota import QuotaDefaults, decide
from storage.job_rows import (
    ACTIVE_STATES_SQL,
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
from storage.sqlite.db import Database
from storage.sqlite.quota_facts import read_facts

# Encoding (compact JSON, PROTECTED fields) is shared with PostgreSQL: storage/job_rows.py.
_FINAL = tuple(state.value for state in JobState if state.final)
_NOT_FINAL = f"state NOT IN ({', '.join(repr(s) for s in _FINAL)})"
_ACTIVE = ", ".join(repr(state.value) for state in ACTIVE_STATES)

_JOB_COLUMNS = tuple(Job.model_fields)
_INSERT_JOB = (
    f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}, platform, user_id, scope_id, admitted_at) "
    f"VALUES ({', '.join(':' + c for c in _JOB_COLUMNS)}, "
    ":platform, :user_id, :scope_id, :admitted_at)"
)
# Result URLs are kept in job_results while a job is delivered (migration 0004), so
# that job rows do not grow and shrink by ~1 kB each; jobs.result_urls stays '[]'.
_URLS = "COALESCE((SELECT urls FROM job_results WHERE job_id = jobs.id), jobs.result_urls)"
_SELECT = "SELECT {} FROM jobs".format(
    ", ".join(_URLS if c == "result_urls" else c for c in READ_COLUMNS)
)


class SqliteJobStore:
    def __init__(
        self,
        db: Database,
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
        the job as QUEUED; all in one write transaction. Raises `QuotaDenied` (then
        nothing is written)."""
        now = self._clock.now()
        job, params = admission(job, self.price_per_image_usd, now)

        def reserve(conn: sqlite3.Connection) -> None:
            self._refuse(conn, job.requester, job.request.count, now)
            try:
                conn.execute(_INSERT_JOB, params)
            except sqlite3.IntegrityError as exc:
                if "jobs.id" in str(exc):
                    raise ValueError(f"job {job.id} already exists") from exc
                raise

        await self._db.atomic(reserve)
        return job

    async def precheck(self, requester: Requester, images: int) -> None:
        """Admission's rule, read-only: raises the QuotaDenied admitting would."""
        now = self._clock.now()
        await self._db.atomic(lambda conn: self._refuse(conn, requester, images, now))

    def _refuse(
        self, conn: sqlite3.Connection, requester: Requester, images: int, now: float
    ) -> None:
        """Raise the QuotaDenied that `images` more for `requester` meet now, if any."""
        facts = read_facts(
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
        row = await self._db.fetchone(f"{_SELECT} WHERE id = ?", (job_id,))
        return _job(row) if row else None

    async def find_by_task(self, provider: str, task_id: str) -> Job | None:
        row = await self._db.fetchone(
            # Active jobs only: migration 0006's partial index (jobs_task) holds those.
            f"{_SELECT} WHERE provider = ? AND task_id = ? AND state IN {ACTIVE_STATES_SQL} "
            "ORDER BY created_at DESC LIMIT 1",
            (provider, task_id),
        )
        return _job(row) if row else None

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
        placeholders = ", ".join(f":expected{i}" for i in range(len(states)))
        extra = {f"expected{i}": state.value for i, state in enumerate(states)}
        row, _ = await self._update(job_id, values, f"state IN ({placeholders})", extra)
        return _job(row) if row else None

    async def update(self, job_id: str, **fields: Any) -> Job:
        """Set fields without changing the state. Raises NotFound."""
        row, _ = await self._update(job_id, encode_fields(fields))
        if row is None:
            raise job_not_found(job_id)
        return _job(row)

    async def finish(
        self, job_id: str, new_state: JobState, *, delivered: int, **fields: Any
    ) -> Job:
        """Move to a final state; charge `delivered` images and refund the rest of the
        reservation in the same statement. A job already final is returned unchanged."""
        values = finish_values(new_state, delivered, fields, self._clock.now())
        # When the job is already final (or missing), read it in the same unit.
        row, changed = await self._update(job_id, values, _NOT_FINAL, otherwise_read=True)
        if row is None:
            raise job_not_found(job_id)
        job = _job(row)
        if changed:
            warn_if_capped(job, delivered)
        return job

    async def active_jobs(self) -> list[Job]:
        rows = await self._db.fetchall(
            f"{_SELECT} WHERE state IN ({_ACTIVE}) ORDER BY created_at, id"
        )
        return [_job(row) for row in rows]

    async def user_jobs(self, platform: str, user_id: str, limit: int = 10) -> list[Job]:
        rows = await self._db.fetchall(
            f"{_SELECT} WHERE platform = ? AND user_id = ? ORDER BY created_at DESC, id DESC "
            "LIMIT ?",
            (platform, user_id, limit),
        )
        return [_job(row) for row in rows]

    async def _update(
        self,
        job_id: str,
        values: dict[str, Any],
        condition: str = "1",
        extra: Mapping[str, Any] | None = None,
        *,
        otherwise_read: bool = False,
    ) -> tuple[aiosqlite.Row | None, bool]:
        """UPDATE ... RETURNING: (the updated job, True), or if `condition` did not hold
        (None, False), or with `otherwise_read` (the job as it is, False)."""
        values["updated_at"] = self._clock.now()
        urls = values.pop("result_urls", None)  # JSON; kept in job_results, not the row
        assignments = ", ".join(
            # Never charge more than was reserved, nor a negative count.
            "delivered = MAX(0, MIN(:delivered, reserved))"
            if name == "delivered"
            else f"{name} = :{name}"
            for name in values
        )
        sql = f"UPDATE jobs SET {assignments} WHERE id = :id AND ({condition}) RETURNING id"
        params = {**values, **(extra or {}), "id": job_id}

        def run(conn: sqlite3.Connection) -> tuple[aiosqlite.Row | None, bool]:
            # fetchall: a DML statement with RETURNING must run to completion.
            if conn.execute(sql, params).fetchall():
                if urls is not None:
                    _store_result_urls(conn, job_id, urls)
                # Read back with the URLs (same unit, by primary key).
                return conn.execute(f"{_SELECT} WHERE id = ?", (job_id,)).fetchone(), True
            row: aiosqlite.Row | None = None
            if otherwise_read:
                row = conn.execute(f"{_SELECT} WHERE id = ?", (job_id,)).fetchone()
            return row, False

        return await self._db.atomic(run)


def _store_result_urls(conn: sqlite3.Connection, job_id: str, urls: str) -> None:
    if urls == "[]":
        conn.execute("DELETE FROM job_results WHERE job_id = ?", (job_id,))
    else:
        conn.execute(
            "INSERT OR REPLACE INTO job_results (job_id, urls) VALUES (?, ?)", (job_id, urls)
        )


def _job(row: aiosqlite.Row) -> Job:
    return job_from_row(row)

"""Ports: what the core needs from providers, storage and front ends.

Adapters (Discord, console, Slack) and storage implement these; the core
only ever sees the protocols.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bot.core.models import (
    AdminAlert,
    Capabilities,
    GenerationRequest,
    GuildConfig,
    Job,
    JobState,
    Period,
    PostedResults,
    ProgressUpdate,
    Requester,
    ResultImage,
    ServerReport,
    Space,
    TaskHandle,
    TaskStatus,
    UsageReport,
    UserError,
)


class ImageProvider(Protocol):
    """One hosted Wan 2.5 API. Raises `ProviderError` (or `SubmitUncertain`)."""

    name: str
    capabilities: Capabilities

    async def submit(
        self, request: GenerationRequest, *, callback_url: str | None = None
    ) -> TaskHandle:
        """Start a task. Never retried internally once the request may have been sent."""
        ...

    async def status(self, task_id: str) -> TaskStatus:
        """One status query (the provider adapter may retry transient errors)."""
        ...

    async def balance(self) -> float | None:
        """Remaining balance (USD or credits), None when the provider has no such call."""
        ...

    async def cancel(self, task_id: str) -> bool:
        """Ask the provider to cancel; False when it cannot."""
        ...

    async def download_result(self, url: str, index: int) -> ResultImage:
        """Fetch result image `index` from a URL in TaskStatus.result_urls (size-capped,
        checked to be an image). Raises bot.core.download.DownloadError."""
        ...


class JobStore(Protocol):
    """Durable jobs plus the quota ledger (they change together, in one transaction)."""

    async def admit(self, job: Job) -> Job:
        """Atomically check the requester's limits and quota, insert the job (QUEUED)
        and reserve `job.request.count` images. Raises `QuotaDenied`; then nothing is written."""
        ...

    async def precheck(self, requester: Requester, images: int) -> None:
        """Admission's own rule, read-only: raises the `QuotaDenied` that admitting
        `images` now would raise (front ends ask before downloading input images)."""
        ...

    async def get(self, job_id: str) -> Job | None: ...

    async def find_by_task(self, provider: str, task_id: str) -> Job | None:
        """The active (not final) job that owns the provider's task, if any."""
        ...

    async def transition(
        self, job_id: str, expected: Iterable[JobState], new_state: JobState, **fields: Any
    ) -> Job | None:
        """Compare-and-set: move the job to `new_state` (and set `fields`) only if its
        state is one of `expected`. Returns the updated job, or None if it was not.
        A move to a final state settles like `finish()` (charge `delivered=`, refund
        the rest) in the same step: the engine relies on this to end jobs race-free."""
        ...

    async def update(self, job_id: str, **fields: Any) -> Job:
        """Set fields without changing the state (progress, message ids, delivery data)."""
        ...

    async def finish(
        self,
        job_id: str,
        new_state: JobState,
        *,
        delivered: int,
        **fields: Any,
    ) -> Job:
        """Move to a final state and settle in the same transaction: charge `delivered`
        images, refund the rest of the reservation. Idempotent: a job already final is
        returned unchanged and the ledger is not touched again."""
        ...

    async def active_jobs(self) -> list[Job]:
        """Every job not in a final state, oldest first (for restarts)."""
        ...

    async def user_jobs(self, platform: str, user_id: str, limit: int = 10) -> list[Job]: ...


class DeliveryPort(Protocol):
    """A front end's way to show progress and post results for its jobs."""

    async def progress(self, job: Job, update: ProgressUpdate) -> None: ...

    async def deliver(self, job: Job, images: list[ResultImage], failed: int) -> dict[str, Any]:
        """Post the results (`failed`: requested images the provider did not make; they
        are not charged). Returns data to merge into `job.delivery` (message ids; a None
        value removes a key). Must not post twice if called again after a crash."""
        ...

    async def fail(self, job: Job, error: UserError) -> None: ...


# A key `deliver()` may put in its answer: how many images it actually posted (fewer or
# more than it was given when it found an earlier post). The job is charged that.
POSTED_IMAGES = "posted_images"


class PostLookup(Protocol):
    """Optional, next to `DeliveryPort`: find results posted before a crash. The engine
    asks this first for a job recovered in DELIVERING, before downloading anything."""

    async def find_posted(self, job: Job) -> PostedResults | None:
        """Every result post of `job`, if they exist (None: deliver as usual)."""
        ...


class AdminAlerts(Protocol):
    """Tells a server's admins (or the operator) about trouble only they can fix."""

    async def alert(self, alert: AdminAlert) -> bool:
        """True when a person has been told (now, or of the same cause recently)."""
        ...


class ImageHost(Protocol):
    """Makes bytes fetchable by a provider (needed after normalisation)."""

    async def host(self, data: bytes, content_type: str, filename: str) -> str:
        """Return a URL (or data URI) the provider can fetch."""
        ...


class JobService(Protocol):
    """The engine as front ends see it."""

    def register_delivery(self, platform: str, port: DeliveryPort) -> None: ...

    async def submit(
        self,
        requester: Requester,
        request: GenerationRequest,
        *,
        delivery: dict[str, Any] | None = None,
        parent_job_id: str | None = None,
    ) -> Job:
        """Reserve quota and persist the job (QUEUED), then run it in the background.
        Raises `QuotaDenied` (nothing reserved)."""
        ...

    async def cancel(self, job_id: str, requester: Requester) -> Job:
        """Cancel a queued or running job (owner or admin). Raises NotFound / NotAllowed."""
        ...

    async def get(self, job_id: str) -> Job | None: ...

    def queue_position(self, job_id: str) -> int | None:
        """1-based position among jobs waiting for a provider slot, None if not waiting."""
        ...

    def card_update(self, job_id: str) -> ProgressUpdate:
        """What a just-admitted job's first status card should say: its place in line,
        or that it is generating once it has a provider slot here."""
        ...

    async def on_provider_callback(self, provider: str, task_id: str) -> bool:
        """A provider said the task changed: query its status now (the body is never
        trusted). False when no active job has that task."""
        ...

    async def wait_final(self, job_id: str, timeout: float | None = None) -> Job:
        """The job once it is final: at once if already final, else when this engine
        settles it (woken by an event, never polled). Raises TimeoutError after
        `timeout` seconds of the engine's clock, NotFound for an unknown job."""
        ...

    def on_final(self, listener: Callable[[Job], Awaitable[None]]) -> None:
        """Call `listener(job)` once per job this engine moves to a final state, after
        it is settled, as a kept background task cancelled on shutdown; a listener's
        exception is logged and never breaks the engine."""
        ...


class QuotaAdmin(Protocol):
    """Admin operations on quotas (called by /quota, /usage and the console). Every
    setting, sum and report belongs to one Space (platform and server/workspace id):
    the same id on another platform is another space."""

    async def usage(
        self, space: Space, user_id: str, role_ids: Sequence[str] = (), is_admin: bool = False
    ) -> UsageReport: ...

    async def set_user_limit(
        self, space: Space, user_id: str, limit: int, period: Period | None = None
    ) -> None: ...

    async def clear_user_limit(self, space: Space, user_id: str) -> None: ...

    async def set_role_limit(
        self, space: Space, role_id: str, limit: int, period: Period | None = None
    ) -> None: ...

    async def clear_role_limit(self, space: Space, role_id: str) -> None: ...

    async def set_server_default(self, space: Space, limit: int, period: Period) -> None: ...

    async def set_server_budget(self, space: Space, monthly_images: int | None) -> None: ...

    async def grant(self, space: Space, user_id: str, images: int, granted_by: str) -> None:
        """Extra images for the current period."""
        ...

    async def block(self, space: Space, user_id: str, reason: str | None = None) -> None: ...

    async def unblock(self, space: Space, user_id: str) -> None: ...

    async def server_report(self, space: Space) -> ServerReport: ...

    async def guild_config(self, space: Space) -> GuildConfig: ...

    async def set_guild_config(self, config: GuildConfig) -> None:
        """Store `config` for its space: (config.platform, config.guild_id)."""
        ...


# --- several processes on one database (PostgreSQL) -------------------------------


@dataclass(frozen=True)
class Claimed:
    """A job this process now holds a lease on; `token` is the lease's fencing token
    (it grows with every claim of the job, so an older holder's token no longer holds)."""

    job: Job
    token: int


# What a wake-up from another process is about (WorkShare.notify / the `wake` callback).
WAKE_QUEUED = "queued"  # a job was queued or a provider slot freed: try to claim
WAKE_POLL = "poll"  # a callback for this job reached some process: its holder polls now
WAKE_FINAL = "final"  # the job was settled elsewhere (a cancel): its holder lets go


class WorkShare(Protocol):
    """Jobs shared by several bot processes on one database. Without one the engine is
    the only worker and holds every job (SQLite, one process).

    A job is worked on by the process holding its lease. Queued jobs are claimed in fair
    order within the provider's concurrency and each user's running limit, counted over
    every process; leases are renewed while held and taken over once expired. Times are
    the database's clock."""

    worker_id: str
    lease_seconds: float

    async def start(self, wake: Callable[[str, str], None]) -> None:
        """Register this worker and listen for wake-ups: `wake(kind, job_id)`."""
        ...

    async def close(self) -> None:
        """Give back every lease held (others take the jobs over at once) and stop."""
        ...

    async def heartbeat(self) -> int:
        """Mark this worker alive; returns how many workers are alive (itself included)."""
        ...

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
        """Lease queued jobs to start now, within the slots free across all processes,
        at most this process's share of them (`workers` alive). `own`: jobs this process
        just admitted (claimable before their status card is up)."""
        ...

    async def take_over(self, provider: str, platforms: Sequence[str]) -> list[Claimed]:
        """Lease active jobs nobody holds (an expired lease, or none on a job past the
        queue), and queued ones past their deadline or for another provider."""
        ...

    async def renew(self, tokens: Mapping[str, int]) -> set[str]:
        """Extend these leases; returns the job ids whose lease is no longer this worker's."""
        ...

    async def holds(self, job_id: str, token: int) -> bool:
        """The fencing check: is the lease still this worker's (renewing it)?"""
        ...

    async def release(self, tokens: Mapping[str, int]) -> None:
        """Let go of these leases (a job handed back to the queue)."""
        ...

    async def notify(self, kind: str, job_id: str = "") -> None:
        """Wake the other processes (best effort: polling is the fallback)."""
        ...


class IdentifyGate(Protocol):
    """Paces Discord's IDENTIFY across every process of one bot (sharding)."""

    async def wait_turn(self, bucket: int, spacing: float) -> None:
        """Return when this process may IDENTIFY in rate-limit `bucket`
        (shard_id % max_concurrency): at most one per `spacing` seconds per bucket."""
        ...


class SeenEvents(Protocol):
    """Platform events already handled, shared by every process (Slack re-sends events,
    and several connections may each get one)."""

    async def first_time(self, platform: str, event_id: str) -> bool:
        """True for the first caller only, in any process."""
        ...

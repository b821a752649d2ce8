"""Test doubles for the job engine: a scripted in-process provider on the fake clock,
a recording delivery port, and helpers that wait on conditions (never on sleeps)."""

from __future__ import annotations

import asyncio
import io
import itertools
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from bot.core.clock import FakeClock
from bot.core.download import DownloadError
from bot.core.engine import EngineConfig, JobEngine
from bot.core.models import (
    Capabilities,
    FailureCategory,
    GenerationRequest,
    Job,
    ProgressUpdate,
    ProviderFailure,
    Requester,
    ResultImage,
    TaskHandle,
    TaskState,
    TaskStatus,
    UserError,
)
from bot.core.quota import QuotaDefaults
from storage.sqlite.db import Database
from storage.sqlite.jobs import SqliteJobStore


async def eventually(
    predicate: Callable[[], bool], timeout: float = 5.0, what: str = "a condition"
) -> None:
    """Yield to the loop until `predicate()` holds; fail after `timeout` real seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0)


async def eventually_async(
    predicate: Callable[[], Awaitable[bool]], timeout: float = 5.0, what: str = "a condition"
) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await predicate():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0)


class TrackedStore:
    """Wraps the real SQLite store and counts calls in flight, so tests know when
    the engine's database work (done in SQLite's thread) has finished."""

    def __init__(self, inner: SqliteJobStore) -> None:
        self.inner = inner
        self.in_flight = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not asyncio.iscoroutinefunction(attr):
            return attr

        async def tracked(*args: Any, **kwargs: Any) -> Any:
            self.in_flight += 1
            try:
                return await attr(*args, **kwargs)
            finally:
                self.in_flight -= 1

        return tracked


async def quiesce(store: TrackedStore, timeout: float = 5.0) -> None:
    """Let the loop run until no store call has been in flight for a while."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    calm = 0
    while calm < 30:
        await asyncio.sleep(0)
        calm = calm + 1 if store.in_flight == 0 else 0
        if loop.time() > end:
            raise AssertionError("store calls still in flight")


async def advance_until(
    clock: FakeClock,
    store: TrackedStore,
    predicate: Callable[[], bool],
    *,
    limit: float = 3600.0,
) -> None:
    """Move fake time forward timer by timer until `predicate()` holds; before each
    move, everything in flight finishes, so no timer is jumped over."""
    start = clock.monotonic()
    while True:
        await quiesce(store)
        if predicate():
            return
        delay = clock.next_deadline()
        if delay is None or clock.monotonic() - start > limit:
            raise AssertionError(f"stuck after {clock.monotonic() - start:.1f} fake seconds")
        await clock.advance(max(delay, 0.0))


async def run_until_final(
    clock: FakeClock, store: TrackedStore, job_id: str, *, limit: float = 3600.0
) -> Job:
    """Advance fake time until the stored job is final; returns it."""
    start = clock.monotonic()
    while True:
        await quiesce(store)
        job = await store.get(job_id)
        assert job is not None
        if job.state.final:
            return job
        delay = clock.next_deadline()
        if delay is None or clock.monotonic() - start > limit:
            raise AssertionError(f"job {job_id} stuck in {job.state.value}")
        await clock.advance(max(delay, 0.0))


def png_bytes(color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(out, "PNG")
    return out.getvalue()


@dataclass
class Script:
    """How the next submitted tasks behave."""

    duration: float = 30.0  # fake seconds from submit to finished
    progress: bool = True  # report linear progress while running
    eta: bool = False  # report the remaining time while running
    hint: float | None = 30.0  # estimated_seconds in the submit answer
    results: int | None = None  # images that succeed (None: all requested)
    failure: ProviderFailure | None = None  # the task fails instead


@dataclass
class _Task:
    id: str
    request: GenerationRequest
    started: float
    script: Script
    callback_url: str | None
    cancelled: bool = False
    status_times: list[float] = field(default_factory=list)
    seen_done_at: float | None = None


class ScriptedProvider:
    """An in-process provider driven by the fake clock, recording every call."""

    def __init__(
        self,
        clock: FakeClock,
        script: Script | None = None,
        *,
        name: str = "scripted",
        supports_cancel: bool = True,
        supports_callback: bool = False,
        failed_tasks_free: bool = True,
    ) -> None:
        self.name = name
        self.capabilities = Capabilities(
            name=name,
            max_input_images=3,
            aspect_ratios_t2i=["1:1", "16:9"],
            aspect_ratios_i2i=["1:1", "16:9"],
            supports_negative_prompt=True,
            supports_cancel=supports_cancel,
            supports_callback=supports_callback,
            failed_tasks_free=failed_tasks_free,
        )
        self.clock = clock
        self.script = script or Script()
        self.tasks: dict[str, _Task] = {}
        self.submit_errors: deque[Exception] = deque()
        self.status_errors: deque[Exception] = deque()
        self.submit_gate: asyncio.Event | None = None
        self.submit_calls = 0
        self.status_calls: list[tuple[str, float]] = []
        self.cancelled: list[str] = []
        self.downloads: list[str] = []
        self.broken_urls: set[str] = set()
        self._ids = itertools.count(1)

    async def submit(
        self, request: GenerationRequest, *, callback_url: str | None = None
    ) -> TaskHandle:
        self.submit_calls += 1
        if self.submit_gate is not None:
            await self.submit_gate.wait()
        if self.submit_errors:
            raise self.submit_errors.popleft()
        task = _Task(
            id=f"task-{next(self._ids)}",
            request=request,
            started=self.clock.monotonic(),
            script=self.script,
            callback_url=callback_url,
        )
        self.tasks[task.id] = task
        return TaskHandle(provider=self.name, task_id=task.id, estimated_seconds=task.script.hint)

    async def status(self, task_id: str) -> TaskStatus:
        now = self.clock.monotonic()
        self.status_calls.append((task_id, now))
        if self.status_errors:
            raise self.status_errors.popleft()
        task = self.tasks.get(task_id)
        if task is None:
            return TaskStatus(
                state=TaskState.FAILED,
                failure=ProviderFailure(code="task_not_found", category=FailureCategory.GONE),
            )
        task.status_times.append(now)
        if task.cancelled:
            return TaskStatus(
                state=TaskState.FAILED,
                failure=ProviderFailure(code="cancelled", category=FailureCategory.CANCELLED),
            )
        script = task.script
        elapsed = now - task.started
        if elapsed < script.duration:
            return TaskStatus(
                state=TaskState.RUNNING,
                progress=int(100 * elapsed / script.duration) if script.progress else None,
                eta_seconds=script.duration - elapsed if script.eta else None,
            )
        if task.seen_done_at is None:
            task.seen_done_at = now
        if script.failure is not None:
            return TaskStatus(state=TaskState.FAILED, failure=script.failure)
        count = task.request.count
        ok = count if script.results is None else script.results
        return TaskStatus(
            state=TaskState.SUCCEEDED,
            progress=100,
            result_urls=[self.result_url(task_id, i) for i in range(ok)],
            failed_count=count - ok,
        )

    @staticmethod
    def result_url(task_id: str, index: int) -> str:
        return f"https://results.example/{task_id}/{index}.png"

    async def balance(self) -> float | None:
        return None

    async def cancel(self, task_id: str) -> bool:
        self.cancelled.append(task_id)
        task = self.tasks.get(task_id)
        if task is not None:
            task.cancelled = True
        return True

    async def download_result(self, url: str, index: int) -> ResultImage:
        self.downloads.append(url)
        if url in self.broken_urls:
            raise DownloadError("the image is gone", code="http_status", status=404)
        return ResultImage(
            index=index, data=png_bytes(), content_type="image/png", filename=f"wan-{index}.png"
        )

    def finished_at(self, task_id: str) -> float:
        task = self.tasks[task_id]
        return task.started + task.script.duration


class RecordingPort:
    """A DeliveryPort that records everything; `deliver` can be held or made to fail."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, ProgressUpdate, float]] = []
        self.deliveries: list[tuple[str, list[ResultImage], int]] = []
        self.failures: list[tuple[str, UserError]] = []
        self.deliver_gate: asyncio.Event | None = None
        self.deliver_started: list[str] = []
        self.deliver_errors = 0
        self.clock: FakeClock | None = None

    async def progress(self, job: Job, update: ProgressUpdate) -> None:
        when = self.clock.monotonic() if self.clock is not None else 0.0
        self.updates.append((job.id, update, when))

    async def deliver(self, job: Job, images: list[ResultImage], failed: int) -> dict[str, Any]:
        self.deliver_started.append(job.id)
        if self.deliver_gate is not None:
            await self.deliver_gate.wait()
        if self.deliver_errors > 0:
            self.deliver_errors -= 1
            raise ConnectionError("the chat platform is down")
        self.deliveries.append((job.id, images, failed))
        return {"message_id": f"msg-{job.id}"}

    async def fail(self, job: Job, error: UserError) -> None:
        self.failures.append((job.id, error))

    def delivered(self, job_id: str) -> list[tuple[str, list[ResultImage], int]]:
        return [d for d in self.deliveries if d[0] == job_id]

    def failed(self, job_id: str) -> list[UserError]:
        return [error for jid, error in self.failures if jid == job_id]

    def updates_for(self, job_id: str) -> list[tuple[ProgressUpdate, float]]:
        return [(u, t) for jid, u, t in self.updates if jid == job_id]


class PostThenHang:
    """Wraps a delivery port so it posts the results and then hangs, as if the process
    died before the engine could record the delivery; `crash()` cancels the hung tasks
    (no grace period, as after a SIGKILL)."""

    def __init__(self, port: Any) -> None:
        self._real = port.deliver
        self.posted = asyncio.Event()
        self.jobs: list[str] = []
        self._hung: list[asyncio.Task[Any]] = []
        port.deliver = self.deliver

    async def deliver(self, job: Job, images: list[ResultImage], failed: int) -> Any:
        await self._real(job, images, failed)
        self.jobs.append(job.id)
        self.posted.set()
        task = asyncio.current_task()
        assert task is not None
        self._hung.append(task)
        await asyncio.Event().wait()

    def crash(self) -> None:
        for task in self._hung:
            task.cancel()


# --- wiring ----------------------------------------------------------------------------


def make_store(db: Database, clock: FakeClock) -> TrackedStore:
    # Generous limits: these tests are about the engine, not about quotas.
    defaults = QuotaDefaults(default_limit=1000, max_running=100, max_queued=100)
    return TrackedStore(SqliteJobStore(db, clock, defaults))


def make_engine(
    store: TrackedStore,
    provider: ScriptedProvider,
    clock: FakeClock,
    port: RecordingPort,
    **config: Any,
) -> JobEngine:
    config.setdefault("status_rps", 1000.0)
    config.setdefault("status_burst", 1000)
    engine = JobEngine(store, provider, clock=clock, config=EngineConfig(**config))  # type: ignore[arg-type]
    port.clock = clock
    engine.register_delivery(PLATFORM, port)
    return engine


PLATFORM = "test"


def requester(user: str = "u1", *, guild: str = "g1", admin: bool = False) -> Requester:
    return Requester(platform=PLATFORM, user_id=user, guild_id=guild, is_admin=admin)


def request(count: int = 1, prompt: str = "a lighthouse at dusk") -> GenerationRequest:
    return GenerationRequest(prompt=prompt, count=count)


async def ledger(db: Database, job_id: str) -> dict[str, int]:
    rows = await db.fetchall("SELECT kind, images FROM ledger WHERE job_id = ?", (job_id,))
    found: dict[str, int] = {}
    for kind, images in rows:
        assert kind not in found, f"two {kind} rows for {job_id}"
        found[kind] = images
    if "charge" in found:
        # Settled: a refund of nothing has no row since migration 0006.
        found.setdefault("refund", 0)
    return found

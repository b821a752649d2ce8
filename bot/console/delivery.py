"""The console's DeliveryPort: results become files in the output folder.

Printing is left to a view (chat lines for `wanbot console`, a progress bar
and bare paths for `wanbot generate`); this module writes files and lets
callers wait for a job's outcome.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bot.core.download import EXTENSIONS
from bot.core.models import Job, ProgressUpdate, ResultImage, UserError


class ConsoleView(Protocol):
    def progress(self, job: Job, update: ProgressUpdate) -> None: ...

    def saved(self, job: Job, paths: list[Path], notes: list[str]) -> None: ...

    def failed(self, job: Job, error: UserError) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """How a job ended, as seen by the console."""

    job_id: str
    paths: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: UserError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def result_path(output_dir: Path, job_id: str, number: int, content_type: str) -> Path:
    """output/<job_id>_<n>.png (the extension follows the real format)."""
    return output_dir / f"{job_id}_{number}.{EXTENSIONS.get(content_type, 'png')}"


def _write_files(output_dir: Path, job_id: str, images: list[ResultImage]) -> list[Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, image in enumerate(images, start=1):
        path = result_path(output_dir, job_id, number, image.content_type)
        # Write then rename: a crash never leaves half an image under the final name,
        # and delivering the same job again just rewrites the same files.
        partial = path.with_name(path.name + ".part")
        partial.write_bytes(image.data)
        os.replace(partial, path)
        paths.append(path)
    return paths


_KEEP_OUTCOMES = 256


class ConsoleDelivery:
    def __init__(self, output_dir: Path, view: ConsoleView) -> None:
        self.output_dir = output_dir
        self._view = view
        self._outcomes: dict[str, asyncio.Future[Outcome]] = {}

    def _future(self, job_id: str) -> asyncio.Future[Outcome]:
        future = self._outcomes.get(job_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._outcomes[job_id] = future
        return future

    def _resolve(self, outcome: Outcome) -> None:
        future = self._future(outcome.job_id)
        if not future.done():
            future.set_result(outcome)
        # A long session must not keep every outcome: the oldest settled ones go.
        while len(self._outcomes) > _KEEP_OUTCOMES:
            oldest = next(iter(self._outcomes))
            if not self._outcomes[oldest].done():
                break
            del self._outcomes[oldest]

    async def wait(self, job_id: str) -> Outcome:
        """The job's outcome; returns at once if it already ended in this process."""
        return await asyncio.shield(self._future(job_id))

    def finished(self, job_id: str) -> bool:
        future = self._outcomes.get(job_id)
        return future is not None and future.done()

    async def progress(self, job: Job, update: ProgressUpdate) -> None:
        self._view.progress(job, update)

    async def deliver(
        self, job: Job, images: list[ResultImage], notes: list[str]
    ) -> dict[str, Any]:
        paths = await asyncio.to_thread(_write_files, self.output_dir, job.id, images)
        self._view.saved(job, paths, notes)
        self._resolve(Outcome(job_id=job.id, paths=paths, notes=list(notes)))
        return {"files": [str(path) for path in paths]}

    async def fail(self, job: Job, error: UserError) -> None:
        self._view.failed(job, error)
        self._resolve(Outcome(job_id=job.id, error=error))

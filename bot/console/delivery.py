"""The console's DeliveryPort: results become files in the output folder.

Printing is left to a view (chat lines for `wanbot console`, a progress bar
and bare paths for `wanbot generate`); this module writes files and lets
callers wait for a job's outcome.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bot.core.download import EXTENSIONS
from bot.core.models import (
    ErrorKind,
    Job,
    PostedResults,
    ProgressUpdate,
    ResultImage,
    UserError,
)


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


class _Abandoned(Exception):
    """The engine stopped waiting for this write (a stuck disk): it must not finish."""


def _write_files(
    output_dir: Path, job_id: str, images: list[ResultImage], abandoned: threading.Event
) -> list[Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for number, image in enumerate(images, start=1):
        path = result_path(output_dir, job_id, number, image.content_type)
        # Write then rename: a crash never leaves half an image under the final name,
        # and delivering the same job again just rewrites the same files.
        partial = path.with_name(path.name + ".part")
        partial.write_bytes(image.data)
        if abandoned.is_set():
            # Given up on (and maybe refunded): no image may appear late, for free.
            for done in [partial, *paths]:
                done.unlink(missing_ok=True)
            raise _Abandoned(job_id)
        os.replace(partial, path)
        paths.append(path)
    return paths


def _saved_files(output_dir: Path, job_id: str, count: int) -> list[Path] | None:
    """All `count` result files of `job_id` (each is renamed into place whole), or None."""
    paths = []
    for number in range(1, count + 1):
        found = [
            path
            for extension in dict.fromkeys(EXTENSIONS.values())
            if (path := output_dir / f"{job_id}_{number}.{extension}").is_file()
        ]
        if not found:
            return None
        paths.append(found[0])
    return paths


def output_problem(folder: Path) -> str | None:
    """Why images could not be saved in `folder`, or None when they can. Blocking: it
    creates the folder if needed and writes (then removes) a probe file, the only
    proof that counts (permissions, read-only mounts, /proc, a full disk)."""
    if folder.exists() and not folder.is_dir():
        return f"{folder} is a file, not a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".wanbot-probe-") as probe:
            probe.write(b"probe")
            probe.flush()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return f"cannot save images in {folder}: {reason}"
    return None


_KEEP_OUTCOMES = 256


class ConsoleDelivery:
    def __init__(self, output_dir: Path, view: ConsoleView) -> None:
        self.output_dir = output_dir
        self._view = view
        self._outcomes: dict[str, asyncio.Future[Outcome]] = {}
        self._slow: set[str] = set()  # jobs whose saving was given up on (engine timeout)

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
        abandoned = threading.Event()
        try:
            paths = await asyncio.to_thread(
                _write_files, self.output_dir, job.id, images, abandoned
            )
        except asyncio.CancelledError:
            # The engine gave up waiting (a stuck disk); the thread cannot be stopped, so
            # it is told to drop what it writes. If the job fails for good, `fail` says why.
            abandoned.set()
            self._slow.add(job.id)
            raise
        self._slow.discard(job.id)
        self._view.saved(job, paths, notes)
        self._resolve(Outcome(job_id=job.id, paths=paths, notes=list(notes)))
        return {"files": [str(path) for path in paths]}

    async def find_posted(self, job: Job) -> PostedResults | None:
        """`PostLookup`: a job recovered in DELIVERING whose files were all saved before
        the process stopped is done (its links may be dead by now); with some missing,
        it is delivered again and the same files are rewritten."""
        paths = await asyncio.to_thread(_saved_files, self.output_dir, job.id, job.request.count)
        if paths is None:
            return None
        self._view.saved(job, paths, [])
        self._resolve(Outcome(job_id=job.id, paths=paths))
        return PostedResults(images=len(paths), delivery={"files": [str(p) for p in paths]})

    async def fail(self, job: Job, error: UserError) -> None:
        slow = job.id in self._slow
        self._slow.discard(job.id)
        if slow and error.kind is ErrorKind.INTERNAL:
            error = error.model_copy(
                update={
                    "code": "save_timeout",
                    "message": (
                        f"The images did not finish saving in {self.output_dir} in time (a "
                        "slow or stuck disk?), even after retries. You were not charged. "
                        "Please try again."
                    ),
                }
            )
        self._view.failed(job, error)
        self._resolve(Outcome(job_id=job.id, error=error))

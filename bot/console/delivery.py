"""The console's `ChatSurface`: results become files in the output folder.

The conversation layer's one delivery path (bot.chat.delivery) drives it; printing
is left to a view (chat lines for `wanbot console`, a progress bar and bare paths
for `wanbot generate`).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
from pathlib import Path
from typing import Protocol

from bot.chat.cards import Card
from bot.chat.meta import ChatMeta
from bot.chat.style import PlainStyle
from bot.chat.surface import InputSources, Posted
from bot.chat.throttle import TERMINAL
from bot.console.commands import LOCAL_USER
from bot.core.download import EXTENSIONS
from bot.core.models import ErrorKind, Job, ResultImage, UserError
from bot.media import MediaHost

PLATFORM = "console"
STYLE = PlainStyle(me=LOCAL_USER)
FILES = "files"  # Job.delivery: the saved paths


class ConsoleView(Protocol):
    def progress(self, job: Job, card: Card) -> None: ...

    def saved(self, job: Job, paths: list[Path], notes: list[str]) -> None: ...

    def failed(self, job: Job, card: Card) -> None: ...


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


def saved_paths(job: Job) -> list[Path]:
    return [Path(path) for path in job.delivery.get(FILES, [])]


class ConsoleSurface:
    platform = PLATFORM
    style = STYLE
    tuning = TERMINAL

    def __init__(self, output_dir: Path, view: ConsoleView, media: MediaHost | None = None) -> None:
        self.output_dir = output_dir
        self._view = view
        self.media = media  # input images served to the provider (set by open_runtime)
        self._notes: dict[str, list[str]] = {}  # delivery notes, until the done line

    async def show_status(self, job: Job, card: Card) -> None:
        self._view.progress(job, card)

    async def show_failure(self, job: Job, card: Card) -> None:
        self._notes.pop(job.id, None)
        self._view.failed(job, card)

    async def post_results(
        self, job: Job, images: list[ResultImage], card: Card, *, look_first: bool
    ) -> Posted:
        # The input notes were shown when the job was queued.
        self._notes[job.id] = [n for n in card.notes if n not in ChatMeta.of(job).notes]
        if look_first and (posted := await self.find_posted(job)) is not None:
            return posted
        abandoned = threading.Event()
        try:
            paths = await asyncio.to_thread(
                _write_files, self.output_dir, job.id, images, abandoned
            )
        except asyncio.CancelledError:
            # The engine gave up waiting (a stuck disk); the thread cannot be stopped, so
            # it is told to drop what it writes. If the job fails for good, the failure
            # says why (`timeout_error`).
            abandoned.set()
            raise
        return _posted(paths)

    async def find_posted(self, job: Job) -> Posted | None:
        """A job recovered in DELIVERING whose files were all saved before the process
        stopped is done (its links may be dead by now); with some missing, it is
        delivered again and the same files are rewritten."""
        paths = await asyncio.to_thread(_saved_files, self.output_dir, job.id, job.request.count)
        return None if paths is None else _posted(paths)

    def results_link(self, job: Job, posted: Posted) -> str | None:
        return str(self.output_dir)

    async def show_done(self, job: Job, card: Card) -> None:
        self._view.saved(job, saved_paths(job), self._notes.pop(job.id, []))

    async def release_inputs(self, job: Job) -> None:
        if self.media is not None:
            self.media.release(job.id)

    def timeout_error(self, job: Job) -> UserError:
        return UserError(
            kind=ErrorKind.INTERNAL,
            code="save_timeout",
            job_id=job.id,
            message=(
                f"The images did not finish saving in {self.output_dir} in time (a slow or "
                "stuck disk?), even after retries."
            ),
        )

    async def input_sources(self, job: Job) -> InputSources | None:
        return None  # the stored links (or data) are the originals

    async def result_urls(self, job: Job) -> list[str] | None:
        """The saved files still there (None: all of them are gone)."""
        paths = saved_paths(job)
        found = [str(p) for p in paths if await asyncio.to_thread(p.is_file)]
        return found if found or not paths else None


def _posted(paths: list[Path]) -> Posted:
    return Posted(images=len(paths), ref={FILES: [str(path) for path in paths]})

"""How the console and `wanbot generate` show jobs (ConsoleView implementations)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from bot.console.render import failure_text, progress_bar, progress_words, retry_command
from bot.core.models import Job, ProgressUpdate, UserError


class ProgressThrottle:
    """Plain progress lines only when something worth a line changed: a new state,
    or progress that moved by at least `step` points."""

    def __init__(self, step: int = 25) -> None:
        self._step = step
        self._last: dict[str, tuple[str, int]] = {}

    def should_print(self, job_id: str, update: ProgressUpdate) -> bool:
        progress = update.progress or 0
        last = self._last.get(job_id)
        if last is not None and last[0] == update.state and progress - last[1] < self._step:
            return False
        self._last[job_id] = (update.state, progress)
        return True

    def forget(self, job_id: str) -> None:
        self._last.pop(job_id, None)


class ChatView:
    """`wanbot console`: one line per event, prefixed with the job id."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self._emit = emit
        self._throttle = ProgressThrottle()

    def progress(self, job: Job, update: ProgressUpdate) -> None:
        if self._throttle.should_print(job.id, update):
            self._emit(f"[{job.id}] {progress_words(update)}")

    def saved(self, job: Job, paths: list[Path], notes: list[str]) -> None:
        self._throttle.forget(job.id)
        count = f"{len(paths)} image{'s' if len(paths) != 1 else ''}"
        lines = [f"[{job.id}] done, {count} saved:"]
        lines += [f"  {path}" for path in paths]
        lines += [f"  note: {note}" for note in notes]
        self._emit("\n".join(lines))

    def failed(self, job: Job, error: UserError) -> None:
        self._throttle.forget(job.id)
        self._emit(f"[{job.id}] {failure_text(error, retry_command(job.request))}")


class ShellView:
    """`wanbot generate`: a progress bar (or plain lines) on stderr, and only the
    saved paths, one per line, on stdout so scripts can read them."""

    def __init__(self, results: TextIO, info: TextIO, *, tty: bool) -> None:
        self._results = results
        self._info = info
        self._tty = tty
        self._bar_width = 0  # characters of the bar on screen, 0 when none
        self._throttle = ProgressThrottle()
        self._tracked: set[str] = set()
        self.results_unread = False  # stdout's reader left: the paths could not be printed

    def track(self, job_id: str) -> None:
        """Paths of tracked jobs go to stdout; other jobs (resumed from an earlier
        run) are only mentioned on stderr."""
        self._tracked.add(job_id)

    def _end_bar(self) -> None:
        if self._bar_width:
            self._info.write("\n")
            self._info.flush()
            self._bar_width = 0

    def say(self, text: str) -> None:
        self._end_bar()
        self._info.write(text + "\n")
        self._info.flush()

    def progress(self, job: Job, update: ProgressUpdate) -> None:
        if job.id not in self._tracked:
            return
        if self._tty:
            line = progress_bar(update)
            # Pad with spaces so a shorter line fully covers the previous one.
            self._info.write("\r" + line.ljust(self._bar_width))
            self._info.flush()
            self._bar_width = max(self._bar_width, len(line))
        elif self._throttle.should_print(job.id, update):
            self.say(f"{job.id}: {progress_words(update)}")

    def saved(self, job: Job, paths: list[Path], notes: list[str]) -> None:
        self._end_bar()
        if job.id not in self._tracked:
            self.say(f"an earlier job {job.id} finished: " + ", ".join(map(str, paths)))
            return
        for note in notes:
            self.say(f"note: {note}")
        if self.results_unread:
            return
        try:
            for path in paths:
                self._results.write(f"{path}\n")
            self._results.flush()
        except BrokenPipeError:
            # The reader left (`| true`): the images are saved, and paid for, all the
            # same; a line nobody reads must not fail the job.
            self.results_unread = True

    def failed(self, job: Job, error: UserError) -> None:
        if job.id not in self._tracked:
            self.say(f"an earlier job {job.id} failed: {error.message}")
            return
        self.say(failure_text(error))

"""How the console and `wanbot generate` show jobs (ConsoleView implementations)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from bot.chat.cards import Card
from bot.chat.meta import ChatMeta
from bot.console.render import failure_text, progress_bar, progress_words, retry_command
from bot.core.models import Job

RUN = "console_run"  # Job.delivery: the `wanbot generate` run that started the job


class ChatView:
    """`wanbot console`: one line per event, prefixed with the job id."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self._emit = emit

    def progress(self, job: Job, card: Card) -> None:
        self._emit(f"[{job.id}] {progress_words(card, ChatMeta.of(job).notes)}")

    def saved(self, job: Job, paths: list[Path], notes: list[str]) -> None:
        lines = [f"[{job.id}] done, {len(paths)} image{'s' if len(paths) != 1 else ''} saved:"]
        lines += [f"  {path}" for path in paths]
        lines += [f"  note: {note}" for note in notes]
        self._emit("\n".join(lines))

    def failed(self, job: Job, card: Card) -> None:
        text = failure_text(card, job.error_kind, retry_command(job.request))
        self._emit(f"[{job.id}] {text}")


class ShellView:
    """`wanbot generate`: a progress bar (or plain lines) on stderr, and only the
    saved paths, one per line, on stdout so scripts can read them."""

    def __init__(self, results: TextIO, info: TextIO, *, tty: bool) -> None:
        self._results = results
        self._info = info
        self._tty = tty
        self._bar_width = 0  # characters of the bar on screen, 0 when none
        # Stored with this run's job: jobs resumed from an earlier run are only
        # mentioned on stderr, never printed as this run's paths.
        self.ref: dict[str, Any] = {RUN: secrets.token_hex(6)}
        self.results_unread = False  # stdout's reader left: the paths could not be printed

    def mine(self, job: Job) -> bool:
        return job.delivery.get(RUN) == self.ref[RUN]

    def _end_bar(self) -> None:
        if self._bar_width:
            self._info.write("\n")
            self._info.flush()
            self._bar_width = 0

    def say(self, text: str) -> None:
        self._end_bar()
        self._info.write(text + "\n")
        self._info.flush()

    def progress(self, job: Job, card: Card) -> None:
        if not self.mine(job):
            return
        notes = ChatMeta.of(job).notes  # said when the job started
        if self._tty:
            line = progress_bar(card, notes)
            # Pad with spaces so a shorter line fully covers the previous one.
            self._info.write("\r" + line.ljust(self._bar_width))
            self._info.flush()
            self._bar_width = max(self._bar_width, len(line))
        else:
            self.say(f"{job.id}: {progress_words(card, notes)}")

    def saved(self, job: Job, paths: list[Path], notes: list[str]) -> None:
        self._end_bar()
        if not self.mine(job):
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

    def failed(self, job: Job, card: Card) -> None:
        text = failure_text(card, job.error_kind)
        self.say(text if self.mine(job) else f"an earlier job {job.id} failed: {text}")

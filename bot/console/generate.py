"""`wanbot generate "prompt"`: one job from the shell, for scripts and for trying a key.

stdout gets only the saved file paths, one per line; progress (a bar on a
terminal, plain lines otherwise) and errors go to stderr. Exit codes: 0 the
images were saved, 1 the job failed (or was refused by a quota, or stopped),
2 the request itself is invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path
from typing import TextIO

from bot.cli import EXIT_READER_GONE
from bot.console.commands import ImagineCommand
from bot.console.delivery import ConsoleDelivery, output_problem
from bot.console.render import upload_failure_text
from bot.console.runtime import RuntimeFactory, core_parts, open_runtime, quiet_routine_logs
from bot.console.session import LOCAL_REQUESTER, prepare
from bot.console.views import ShellView
from bot.console.waiting import Stopped, unless_stopped, wait_settled
from bot.core.errors import ProviderError, QuotaDenied, ValidationFailed, WanbotError
from bot.core.validation import InputFetchFailed
from bot.lifecycle import run_until_stopped
from bot.runtime import Runtime
from bot.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
_CANCEL_REPORT_SECONDS = 2.0


def command_from_args(args: argparse.Namespace) -> ImagineCommand:
    return ImagineCommand(
        prompt=args.prompt,
        negative=args.negative,
        aspect=args.aspect,
        count=args.count,
        images=tuple(args.image),
    )


async def generate(
    settings: Settings,
    args: argparse.Namespace,
    stop: asyncio.Event,
    out: TextIO,
    err: TextIO,
    runtime_factory: RuntimeFactory = Runtime,
) -> int:
    command = command_from_args(args)
    output_dir = Path(args.out) if args.out else settings.output_dir
    view = ShellView(out, err, tty=err.isatty())
    # Before anything is opened or sent: a result that cannot be saved is paid for all the same.
    if problem := await asyncio.to_thread(output_problem, output_dir):
        view.say(f"wanbot: cannot generate: {problem}; nothing was sent or charged.")
        return EXIT_INVALID
    delivery = ConsoleDelivery(output_dir, view)
    async with open_runtime(settings, delivery, runtime_factory, alert_line=view.say) as rt:
        try:
            prepared = await unless_stopped(stop, prepare(core_parts(rt), command))
        except InputFetchFailed as exc:  # nothing wrong with the input: it may work later
            view.say("wanbot: cannot generate: " + "; ".join(exc.problems))
            return EXIT_FAILED
        except ValidationFailed as exc:
            view.say("wanbot: cannot generate: " + "; ".join(exc.problems))
            return EXIT_INVALID
        except ProviderError as exc:  # an input image upload (EvoLink's file host)
            view.say("wanbot: " + upload_failure_text(rt.provider.name, exc))
            return EXIT_FAILED
        if isinstance(prepared, Stopped):
            view.say("wanbot: stopped before the job started; nothing was charged.")
            return EXIT_FAILED
        try:
            job = await rt.engine.submit(LOCAL_REQUESTER, prepared.request)
        except QuotaDenied as exc:
            view.say(f"wanbot: quota: {exc.message}")
            return EXIT_FAILED
        view.track(job.id)
        for note in prepared.notes:
            view.say(f"note: {note}")
        outcome = await unless_stopped(stop, delivery.wait(job.id))
        if isinstance(outcome, Stopped):
            try:
                await rt.engine.cancel(job.id, LOCAL_REQUESTER)
            except WanbotError as exc:
                view.say(f"wanbot: stopped; {exc.message}")
                return EXIT_FAILED
            # The engine reports the cancellation through the view; give it a moment.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(delivery.wait(job.id), _CANCEL_REPORT_SECONDS)
            return EXIT_FAILED
        await wait_settled(rt.jobs, job.id)
        if outcome.ok and view.results_unread:
            return EXIT_READER_GONE  # saved, but nobody read where
        return EXIT_OK if outcome.ok else EXIT_FAILED


def run_generate(settings: Settings, args: argparse.Namespace) -> int:
    quiet_routine_logs(settings)
    return asyncio.run(
        run_until_stopped(lambda stop: generate(settings, args, stop, sys.stdout, sys.stderr))
    )

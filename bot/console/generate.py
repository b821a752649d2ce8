"""`wanbot generate "prompt"`: one job from the shell, for scripts and for trying a key.

stdout gets only the saved file paths, one per line; progress (a bar on a
terminal, plain lines otherwise) and errors go to stderr. Exit codes: 0 the
images were saved, 1 the job failed (or was refused by a quota, or stopped),
2 the request itself is invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TextIO

from bot.chat import wording
from bot.chat.meta import ChatMeta
from bot.chat.service import ChatService
from bot.cli import EXIT_READER_GONE
from bot.console.commands import ImagineCommand
from bot.console.conversation import LOCAL_REQUESTER, ConsoleConversation
from bot.console.delivery import STYLE, ConsoleSurface, output_problem
from bot.console.inputs import checked
from bot.console.render import upload_failure_text
from bot.console.runtime import RuntimeFactory, conversation, open_runtime, quiet_routine_logs
from bot.console.views import ShellView
from bot.console.waiting import Stopped, unless_stopped
from bot.core.errors import ProviderError, ValidationFailed, WanbotError
from bot.core.models import Job, JobState
from bot.core.validation import InputFetchFailed
from bot.lifecycle import run_until_stopped
from bot.runtime import Runtime
from bot.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


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
    surface = ConsoleSurface(output_dir, view)
    async with open_runtime(settings, surface, runtime_factory, alert_line=view.say) as rt:
        conv = conversation(rt, view.say, view.ref)
        try:
            job = await unless_stopped(stop, _start(rt.chat, conv, command))
        except ProviderError as exc:  # an input image upload (EvoLink's file host)
            view.say("wanbot: " + upload_failure_text(rt.provider.name, exc))
            return EXIT_FAILED
        except WanbotError as exc:
            view.say("wanbot: " + wording.refusal(exc, STYLE, rt.clock.now()))
            # A busy image host or a quota is worth retrying as is; bad input is not.
            invalid = isinstance(exc, ValidationFailed) and not isinstance(exc, InputFetchFailed)
            return EXIT_INVALID if invalid else EXIT_FAILED
        if isinstance(job, Stopped):
            view.say("wanbot: stopped before the job started; nothing was charged.")
            return EXIT_FAILED
        for note in ChatMeta.of(job).notes:
            view.say(f"note: {note}")
        final = await unless_stopped(stop, rt.engine.wait_final(job.id))
        if isinstance(final, Stopped):
            try:
                await rt.engine.cancel(job.id, LOCAL_REQUESTER)
            except WanbotError as exc:
                view.say(f"wanbot: stopped; {exc.message}")
            # The engine tells the view it was cancelled; closing the runtime waits for that.
            return EXIT_FAILED
        if final.state is not JobState.DONE:
            return EXIT_FAILED
        return EXIT_READER_GONE if view.results_unread else EXIT_OK  # saved, maybe unread


async def _start(service: ChatService, conv: ConsoleConversation, command: ImagineCommand) -> Job:
    options, sources = await checked(service, conv, command)
    return await service.starter.start(conv, options, sources)


def run_generate(settings: Settings, args: argparse.Namespace) -> int:
    quiet_routine_logs(settings)
    return asyncio.run(
        run_until_stopped(lambda stop: generate(settings, args, stop, sys.stdout, sys.stderr))
    )

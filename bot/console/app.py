"""`wanbot console`: a local chat in the terminal running the whole pipeline.

The same engine, quotas and storage as the Discord bot; results are saved as
files. It is what `make run` starts when no Discord token is configured.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import TextIO

from bot.chat.wording import plural
from bot.console.delivery import ConsoleSurface, output_problem
from bot.console.runtime import RuntimeFactory, conversation, open_runtime, quiet_routine_logs
from bot.console.session import ConsoleSession
from bot.console.stdin import LineReader
from bot.console.views import ChatView
from bot.console.waiting import Stopped, unless_stopped
from bot.lifecycle import run_until_stopped
from bot.runtime import Runtime
from bot.settings import ProviderName, Settings

_DISCORD_HINT = (
    "  - Discord: put your bot token in .env as DISCORD_TOKEN=... (see .env.example), "
    "then `make run`."
)
_KEY_HINT = "  - Real images: set APIXO_API_KEY, EVOLINK_API_KEY or DASHSCOPE_API_KEY in .env."
_DOCTOR_HINT = "  - `wanbot doctor` checks the whole setup and says what to fix."
_SLACK_HINT = (
    "  - Slack: set SLACK_BOT_TOKEN and SLACK_APP_TOKEN (docs/slack.md); both front ends "
    "can run at once."
)
_HOW_TO_CONFIGURE = "\n".join((_DISCORD_HINT, _SLACK_HINT, _KEY_HINT, _DOCTOR_HINT))


def no_terminal_text() -> str:
    return (
        "wanbot: the local console needs a terminal, but standard input is closed or empty.\n"
        "(`make run` and `wanbot run` start the console when no DISCORD_TOKEN is set.)\n"
        "  - Try it locally: run `make run` or `wanbot console` in a terminal, or\n"
        '    `wanbot generate "a lighthouse at dusk"` for one image from a script.\n'
        f"{_HOW_TO_CONFIGURE}\n"
    )


def banner(settings: Settings) -> str:
    provider = settings.effective_provider()
    lines = ["wanbot console: Wan 2.5 images in your terminal"]
    if provider is ProviderName.MOCK:
        lines.append(
            "  MOCK MODE: no provider key is set, so images are placeholders drawn locally "
            "(free, offline)."
        )
    else:
        lines.append(f"  Provider: {provider.value} (real images, billed to that account).")
    lines.append(f"  Images are saved in {settings.output_dir}/ as <job id>_<n>.png.")
    lines.append("  Type a prompt, or /help for commands, /quit to leave. Try:")
    lines.append("    /imagine a lighthouse at dusk --aspect 16:9 -n 2")
    lines.append("  To go further:")
    if provider is ProviderName.MOCK:
        lines.append(_KEY_HINT)
    lines += [_DISCORD_HINT, _SLACK_HINT, _DOCTOR_HINT]
    return "\n".join(lines) + "\n"


def make_emit(out: TextIO, reader: LineReader, interactive: bool) -> Callable[[str], None]:
    def emit(text: str) -> None:
        if interactive and reader.waiting:
            # A job reported while the prompt is shown: print above a fresh prompt.
            out.write(f"\r\x1b[K{text}\n{reader.prompt}")
        else:
            out.write(text + "\n")
        out.flush()

    return emit


async def serve_console(
    settings: Settings,
    stop: asyncio.Event,
    stdin: TextIO,
    out: TextIO,
    runtime_factory: RuntimeFactory = Runtime,
) -> int:
    interactive = stdin.isatty()
    reader = LineReader(stdin, out if interactive else None)
    first: str | Stopped | None = None
    if not interactive:
        # A script on stdin runs; an empty or closed stdin means nobody is there.
        first = await unless_stopped(stop, reader.readline())
        if first is None:
            out.write(no_terminal_text())
            out.flush()
            return 0
        if isinstance(first, Stopped):
            return 0
    if problem := await asyncio.to_thread(output_problem, settings.output_dir):
        out.write(f"wanbot: {problem}; set OUTPUT_DIR to a folder you can write to.\n")
        out.flush()
        return 2
    emit = make_emit(out, reader, interactive)

    surface = ConsoleSurface(settings.output_dir, ChatView(emit))
    # The banner comes once the runtime holds the database: a second console on it
    # ends with one line (storage.errors.DatabaseInUse), not a welcome then an error.
    async with open_runtime(settings, surface, runtime_factory, alert_line=emit) as rt:
        out.write(banner(settings))
        out.flush()
        session = ConsoleSession(
            rt.chat,
            conversation(rt, emit),
            surface,
            emit,
            clear=_clear_screen(out) if interactive else None,
        )
        line = first if isinstance(first, str) else await unless_stopped(stop, reader.readline())
        while True:
            if isinstance(line, Stopped) or stop.is_set():
                await _leave(session, emit, "Stopping.")
                return 0
            if line is None and interactive:  # Ctrl-D: like /quit
                await _leave(session, emit, "Bye.")
                return 0
            if line is None:  # the end of a script: let its jobs finish first
                await _finish_script(session, emit, stop)
                return 0
            if not await session.handle_line(line):
                await _leave(session, emit, "Bye.")
                return 0
            line = await unless_stopped(stop, reader.readline())


def _clear_screen(out: TextIO) -> Callable[[], None]:
    def clear() -> None:
        out.write("\x1b[H\x1b[2J")  # cursor home, erase the screen
        out.flush()

    return clear


async def _finish_script(
    session: ConsoleSession, emit: Callable[[str], None], stop: asyncio.Event
) -> None:
    waiting = await session.unfinished()
    if not waiting:
        return
    emit(f"Waiting for {plural(len(waiting), 'job')} to finish (Ctrl-C stops).")
    if isinstance(await unless_stopped(stop, session.wait_all()), Stopped):
        await _leave(session, emit, "Stopping.")


async def _leave(session: ConsoleSession, emit: Callable[[str], None], word: str) -> None:
    waiting = await session.unfinished()
    if not waiting:
        emit(word)
        return
    they = "it is saved and finishes" if len(waiting) == 1 else "they are saved and finish"
    emit(f"{word} {plural(len(waiting), 'job')} still running: {they} the next time wanbot starts.")


def run_console(settings: Settings) -> int:
    stdin = sys.stdin
    if stdin is None or stdin.closed:
        sys.stdout.write(no_terminal_text())
        return 0
    quiet_routine_logs(settings)
    return asyncio.run(
        run_until_stopped(lambda stop: serve_console(settings, stop, stdin, sys.stdout))
    )

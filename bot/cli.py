"""The `wanbot` command: parses arguments, builds settings, dispatches.

Settings and every dependency are built here (or in the subcommand's entry
function), never at import time.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from bot.settings import Settings, SettingsError, load_settings, unknown_setting_warnings
from storage.errors import DatabaseInUse, DatabaseUnavailable


def build_parser() -> argparse.ArgumentParser:
    from bot.console.hints import HintingParser

    # "unknown option --aspcet; did you mean --aspect?" instead of a bare refusal.
    parser = HintingParser(prog="wanbot", description="Wan 2.5 images in Discord.")
    parser.add_argument(
        "--env-file", default=None, help="settings file (default: .env, if there is one)"
    )
    parser.add_argument("--version", action="version", version=f"wanbot {package_version()}")
    sub = parser.add_subparsers(dest="command")

    sub.add_parser(
        "run",
        help="start the bot: Discord and/or Slack, whichever has its tokens, else the console",
    )
    sub.add_parser("console", help="a local chat in the terminal with the same commands")

    gen = sub.add_parser("generate", help="run one job from the shell and save the images")
    gen.add_argument("prompt")
    gen.add_argument("--image", action="append", default=[], metavar="PATH_OR_URL")
    gen.add_argument("-n", "--count", type=int, default=1)
    gen.add_argument("--aspect", default="1:1")
    gen.add_argument("--negative", default=None)
    gen.add_argument("--out", default=None, help="output folder (default: OUTPUT_DIR)")

    sub.add_parser("doctor", help="check settings, database, provider key and Discord token")

    sync = sub.add_parser("sync", help="register slash commands with Discord")
    sync.add_argument("--guild", type=int, default=None, help="sync to one server only")

    invite = sub.add_parser("invite", help="print the URL that adds the bot to a server")
    invite.add_argument(
        "--client-id", type=int, default=None, help="application id (default: asked of Discord)"
    )

    slack = sub.add_parser("slack", help="Slack app tools")
    slack.add_argument("action", choices=["manifest"], help="manifest: print the app manifest")

    from bot.ops.datacli import add_data_commands

    add_data_commands(sub)  # backup, db prune
    return parser


def package_version() -> str:
    try:
        return metadata.version("wanbot")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        from bot import __version__

        return __version__


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = run_command(argv)
        sys.stdout.flush()  # inside the try: a gone reader may only show up here
        return code
    except BrokenPipeError:
        if not stdout_reader_gone():
            raise  # a socket's broken pipe is a real error, not `| head`
        return reader_gone()


# What a command killed by SIGPIPE reports (128 + 13), as `yes | head` does.
EXIT_READER_GONE = 141


def stdout_reader_gone() -> bool:
    """stdout is a pipe whose reader has closed it (poll reports an error on it)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll(), or no real stdout
        return False


def reader_gone() -> int:
    """stdout's reader left (`wanbot doctor | head -3`): stop quietly. stdout now points
    at /dev/null so the interpreter's own final flush cannot fail a second time."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_READER_GONE


def run_command(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "run"
    env_file = ".env" if args.env_file is None else args.env_file
    problem = _env_file_problem(Path(env_file), named=args.env_file is not None)
    if problem:
        named = "--env-file " if args.env_file is not None else ""
        print(f"wanbot: {named}{env_file}: {problem}", file=sys.stderr)
        return 2
    for line in unknown_setting_warnings(env_file, os.environ):
        print(f"wanbot: warning: {line}", file=sys.stderr)
    try:
        settings = load_settings(env_file=env_file)
    except SettingsError as exc:
        print("wanbot: invalid settings:", file=sys.stderr)
        for line in exc.lines:
            print(f"  {line}", file=sys.stderr)
        return 2
    return dispatch(command, args, settings)


def dispatch(command: str, args: argparse.Namespace, settings: Settings) -> int:
    from bot.logging_setup import setup_logging

    setup_logging(settings.log_level, settings.log_format.value, secrets=secret_values(settings))
    slack_set = settings.slack_bot_token is not None or settings.slack_app_token is not None
    if command == "run":
        if settings.discord_token is not None:
            command = "discord"
        else:
            command = "slack-bot" if slack_set else "console"
    try:
        if command == "discord":
            from bot.discord.runner import run_discord

            if settings.slack_bot_token is None or settings.slack_app_token is None:
                if slack_set:
                    print(
                        "wanbot: warning: Slack needs both SLACK_BOT_TOKEN and "
                        "SLACK_APP_TOKEN; starting Discord only",
                        file=sys.stderr,
                    )
                return run_discord(settings)
            from bot.fronts import beside_discord

            return run_discord(settings, beside_discord(settings))  # one process, one engine
        if command == "slack-bot":
            from bot.fronts import run_slack

            return run_slack(settings)
        if command == "sync":
            from bot.discord.runner import run_sync

            return run_sync(settings, guild_id=args.guild)
        if command == "invite":
            from bot.discord.invite import run_invite

            return run_invite(settings, client_id=args.client_id)
        if command == "console":
            from bot.console.app import run_console

            return run_console(settings)
        if command == "generate":
            from bot.console.generate import run_generate

            return run_generate(settings, args)
        if command == "doctor":
            from bot.ops.doctor import run_doctor

            return run_doctor(settings)
        if command == "slack":
            from bot.slack.manifest import manifest_yaml

            print(manifest_yaml(), end="")
            return 0
        if command in ("backup", "db"):
            from bot.ops.datacli import run_data_command

            return run_data_command(command, args, settings)
    except DatabaseInUse as exc:
        # Another wanbot runs on this database: one line, no traceback, nothing touched.
        print(f"wanbot: {exc}", file=sys.stderr)
        return 2
    except DatabaseUnavailable as exc:
        # DATABASE_URL's server is down or refuses us: one line (password redacted).
        print(f"wanbot: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("bot."):
            print(f"wanbot: '{command}' is not built yet ({exc.name} is missing).", file=sys.stderr)
            return 1
        raise
    print(f"wanbot: unknown command {command!r}", file=sys.stderr)
    return 2


def _env_file_problem(path: Path, *, named: bool) -> str | None:
    # The default .env may be absent; a file named on purpose must be there.
    if not path.exists():
        return "no such file" if named else None
    if path.is_dir():
        return "is a directory, not a settings file"
    try:
        path.read_bytes().decode("utf-8")
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    except UnicodeDecodeError as exc:
        return f"is not UTF-8 text (byte {exc.start})"
    return None


def secret_values(settings: Settings) -> list[str]:
    values = []
    for secret in (
        settings.discord_token,
        settings.slack_bot_token,
        settings.slack_app_token,
        settings.apixo_api_key,
        settings.evolink_api_key,
        settings.dashscope_api_key,
    ):
        if secret is not None:
            values.append(secret.get_secret_value())
    if settings.database_url is not None:
        # The whole URL, and its password alone (asyncpg errors may quote either).
        from storage.postgres.db import url_passwords

        url = settings.database_url.get_secret_value()
        values += [url, *url_passwords(url)]
    return values

"""The `wanbot` command: parses arguments, builds settings, dispatches.

Settings and every dependency are built here (or in the subcommand's entry
function), never at import time.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bot.settings import Settings, SettingsError, load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wanbot", description="Wan 2.5 images in Discord.")
    parser.add_argument("--env-file", default=".env", help="settings file (default: .env)")
    sub = parser.add_subparsers(dest="command")

    sub.add_parser("run", help="start the bot (Discord if DISCORD_TOKEN is set, else the console)")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "run"
    try:
        settings = load_settings(env_file=args.env_file)
    except SettingsError as exc:
        print("wanbot: invalid settings:", file=sys.stderr)
        for line in exc.lines:
            print(f"  {line}", file=sys.stderr)
        return 2
    return dispatch(command, args, settings)


def dispatch(command: str, args: argparse.Namespace, settings: Settings) -> int:
    from bot.logging_setup import setup_logging

    setup_logging(settings.log_level, settings.log_format.value, secrets=secret_values(settings))
    if command == "run":
        command = "discord" if settings.discord_token is not None else "console"
    try:
        if command == "discord":
            from bot.discord.runner import run_discord

            return run_discord(settings)
        if command == "sync":
            from bot.discord.runner import run_sync

            return run_sync(settings, guild_id=args.guild)
        if command == "console":
            from bot.console.app import run_console

            return run_console(settings)
        if command == "generate":
            from bot.console.generate import run_generate

            return run_generate(settings, args)
        if command == "doctor":
            from bot.console.doctor import run_doctor

            return run_doctor(settings)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("bot."):
            print(f"wanbot: '{command}' is not built yet ({exc.name} is missing).", file=sys.stderr)
            return 1
        raise
    print(f"wanbot: unknown command {command!r}", file=sys.stderr)
    return 2


def secret_values(settings: Settings) -> list[str]:
    values = []
    for secret in (
        settings.discord_token,
        settings.apixo_api_key,
        settings.evolink_api_key,
        settings.dashscope_api_key,
    ):
        if secret is not None:
            values.append(secret.get_secret_value())
    return values

"""Run one benchmark in this (fresh) process and write its Section as JSON.

    python -m bench.one NAME OUT.json

bench/__main__.py starts one process per benchmark, so peak RSS, CPU time and
the event loop belong to that benchmark alone.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from datetime import UTC, datetime

from bot.logging_setup import setup_logging


def main(argv: list[str]) -> int:
    name, out = argv
    setup_logging("INFO")  # as in production; stderr goes to a log file
    module = importlib.import_module(f"bench.{name}")
    started = time.monotonic()
    section = module.run()
    section.seconds = time.monotonic() - started
    section.when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with open(out, "w", encoding="utf-8") as file:
        json.dump(section.to_json(), file, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

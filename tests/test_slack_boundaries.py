"""bot/slack is an adapter beside Discord: it may use bot.core (and later bot.chat),
never Discord, the other front ends or SQL."""

from __future__ import annotations

from pathlib import Path

from tests.test_boundaries import _imports

SLACK = Path(__file__).resolve().parents[1] / "bot" / "slack"
FORBIDDEN_TOP = ("discord", "cogs", "storage", "aiosqlite", "sqlite3", "asyncpg")
FORBIDDEN_BOT = ("bot.discord", "bot.console", "bot.runtime")


def test_slack_imports_no_discord_console_or_sql() -> None:
    found = [
        f"{path.name} imports {name}"
        for path in sorted(SLACK.rglob("*.py"))
        for name in _imports(path)
        if name.split(".")[0] in FORBIDDEN_TOP or name.startswith(FORBIDDEN_BOT)
    ]
    assert SLACK.is_dir() and found == []

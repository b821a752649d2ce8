"""bot/core must know nothing of Discord, Slack or SQL; bot/chat imports only bot/core."""

from __future__ import annotations

import ast
from pathlib import Path

FORBIDDEN = (
    "discord",
    "slack_bolt",
    "slack_sdk",
    "aiosqlite",
    "sqlite3",
    "asyncpg",
    "storage",
    "cogs",
)
ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "bot" / "core"
CHAT = ROOT / "bot" / "chat"
# Other parts of the bot the conversation layer must not reach into (front ends,
# the composition root, operations): it sits on the core and nothing else.
NOT_FOR_CHAT = ("bot.discord", "bot.console", "bot.slack", "bot.runtime", "bot.ops", "bot.cli")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0 and node.module:
            # a relative import that climbs out of its layer is as bad as a direct one
            names.append("." * node.level + node.module)
    return names


def _violations(root: Path, also: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for name in _imports(path):
            top = name.lstrip(".").split(".")[0]
            climbs_out = name.startswith("..") and top in ("discord", "cogs", "storage", "slack")
            outside = name.startswith(("bot.discord", "bot.console", "bot.slack", *also))
            if top in FORBIDDEN or outside or climbs_out:
                found.append(f"{path.relative_to(root.parent.parent)} imports {name}")
    return found


def test_core_imports_no_platform_or_sql() -> None:
    assert CORE.is_dir()
    assert _violations(CORE, ("bot.chat",)) == []


def test_chat_imports_only_the_core() -> None:
    assert CHAT.is_dir()
    assert _violations(CHAT, NOT_FOR_CHAT) == []
    # And it does import the core: the layer is not an island of its own.
    assert any(
        name.startswith("bot.core") for path in CHAT.rglob("*.py") for name in _imports(path)
    )


def test_boundary_check_catches_a_violation(tmp_path: Path) -> None:
    core = tmp_path / "bot" / "core"
    core.mkdir(parents=True)
    (core / "ok.py").write_text("import asyncio\nfrom bot.core import models\n")
    (core / "bad.py").write_text("import discord\nfrom storage.sqlite.db import Database\n")
    (core / "bad2.py").write_text("from aiosqlite import connect\nimport slack_bolt\n")
    found = _violations(core)
    assert len(found) == 4
    assert all("bad" in line for line in found)
    chat = tmp_path / "bot" / "chat"
    chat.mkdir(parents=True)
    (chat / "bad.py").write_text("from bot.discord.embeds import STYLE\nimport asyncpg\n")
    (chat / "ok.py").write_text("from bot.core.models import Job\n")
    assert len(_violations(chat, NOT_FOR_CHAT)) == 2

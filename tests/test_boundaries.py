"""bot/core must know nothing of Discord, Slack or SQL."""

from __future__ import annotations

import ast
from pathlib import Path

FORBIDDEN = ("discord", "slack_bolt", "slack_sdk", "aiosqlite", "sqlite3", "storage", "cogs")
CORE = Path(__file__).resolve().parents[1] / "bot" / "core"


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0 and node.module:
            # a relative import that climbs out of bot/core is as bad as a direct one
            names.append("." * node.level + node.module)
    return names


def _violations(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for name in _imports(path):
            top = name.lstrip(".").split(".")[0]
            climbs_out = name.startswith("..") and top in ("discord", "cogs", "storage")
            if top in FORBIDDEN or name.startswith(("bot.discord", "bot.console")) or climbs_out:
                found.append(f"{path.relative_to(root.parent.parent)} imports {name}")
    return found


def test_core_imports_no_platform_or_sql() -> None:
    assert CORE.is_dir()
    assert _violations(CORE) == []


def test_boundary_check_catches_a_violation(tmp_path: Path) -> None:
    core = tmp_path / "bot" / "core"
    core.mkdir(parents=True)
    (core / "ok.py").write_text("import asyncio\nfrom bot.core import models\n")
    (core / "bad.py").write_text("import discord\nfrom storage.sqlite.db import Database\n")
    (core / "bad2.py").write_text("from aiosqlite import connect\nimport slack_bolt\n")
    found = _violations(core)
    assert len(found) == 4
    assert all("bad" in line for line in found)

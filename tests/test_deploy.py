"""The deploy files, checked without a Docker engine (CI builds no image): the image
installs the package the way the Makefile does, and compose passes only settings
that .env.example documents. docs/deploy.md says so plainly."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import yaml

from bot.cli import build_parser
from tests.fakes.loopback import serve_loopback

ROOT = Path(__file__).resolve().parents[1]


def _logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    return [
        line.strip()
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _pip_install_target(command: str) -> tuple[str, frozenset[str]]:
    """The target and extras of a `pip install` command (flags, -e and redirects aside)."""
    words = shlex.split(command.split(">")[0].split("||")[0])
    after = words[words.index("install") + 1 :]
    targets = [w for w in after if not w.startswith("-")]
    assert len(targets) == 1, command
    match = re.fullmatch(r"([^\[]+)(?:\[([^\]]*)\])?", targets[0])
    assert match is not None, targets[0]
    extras = frozenset(e.strip() for e in (match.group(2) or "").split(",") if e.strip())
    return match.group(1), extras


def _makefile_run_install() -> str:
    lines = (ROOT / "Makefile").read_text().splitlines()
    rule = lines.index(next(line for line in lines if line.startswith("$(STAMP):")))
    for line in lines[rule + 1 :]:
        if not line.startswith("\t"):
            break
        if "$(INSTALL)" in line:
            install = next(
                x for x in lines if x.startswith("INSTALL =") or x.startswith("INSTALL :=")
            )
            pip = install.split("=", 1)[1].strip()
            return line.strip().lstrip("@").replace("$(INSTALL)", pip)
    raise AssertionError("no install line in the Makefile's $(STAMP) rule")


def _dockerfile() -> list[str]:
    return _logical_lines((ROOT / "Dockerfile").read_text())


def test_the_image_installs_the_package_as_make_run_does() -> None:
    make_target = _pip_install_target(_makefile_run_install())
    runs = [line for line in _dockerfile() if line.startswith("RUN") and "pip install" in line]
    assert len(runs) == 1
    assert _pip_install_target(runs[0].removeprefix("RUN ")) == make_target == (".", frozenset())


def test_the_image_copies_everything_the_package_needs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = set()
    for line in _dockerfile():
        if line.startswith("COPY") and "--from" not in line:
            copied.update(w.rstrip("/") for w in line.split()[1:-1])
    assert packages | {"pyproject.toml", project["project"]["readme"]} <= copied
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "!"))
    }
    assert not (copied & ignored)


def test_the_image_is_multi_stage_slim_non_root_with_data_volume_and_healthcheck() -> None:
    lines = _dockerfile()
    stages = [line for line in lines if line.startswith("FROM")]
    assert len(stages) >= 2 and any(" AS build" in s for s in stages)
    base = next(line for line in lines if line.startswith("ARG PYTHON_IMAGE=")).split("=", 1)[1]
    match = re.fullmatch(r"python:3\.(\d+)-slim", base)
    assert match is not None and int(match.group(1)) >= 11
    user = [line.split()[1] for line in lines if line.startswith("USER")]
    assert user and user[-1] not in ("root", "0")
    assert any(line.startswith("VOLUME") and "/data" in line for line in lines)
    env = " ".join(line for line in lines if line.startswith("ENV"))
    assert "DATABASE_PATH=/data/" in env and "METRICS_PORT=9090" in env
    health = next(line for line in lines if line.startswith("HEALTHCHECK"))
    assert "/healthz" in health and "METRICS_PORT" in health
    entry = next(line for line in lines if line.startswith("ENTRYPOINT"))
    assert (
        '"wanbot"' in entry
        and "wanbot" in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    )


def _env_example_names() -> set[str]:
    return {
        line.split("=", 1)[0].strip()
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }


def test_compose_passes_only_documented_settings() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    bot = compose["services"]["bot"]
    assert bot["env_file"] == ".env"
    environment = bot["environment"]
    names = (
        set(environment)
        if isinstance(environment, dict)
        else {item.split("=", 1)[0] for item in environment}
    )
    assert names and names <= _env_example_names(), names - _env_example_names()
    # The PostgreSQL store is selected by DATABASE_URL, pointing at the db service.
    assert environment["DATABASE_URL"].startswith("postgresql://")
    assert "@db:5432/" in environment["DATABASE_URL"]
    assert "db" in compose["services"] and bot["depends_on"]["db"]["condition"] == "service_healthy"
    # The health port the image checks is the one compose publishes.
    assert environment["METRICS_PORT"] == "9090"
    assert any(str(port).endswith(":9090") for port in bot["ports"])
    assert any(volume.endswith(":/data") for volume in bot["volumes"])


def test_the_systemd_unit_runs_a_real_command() -> None:
    unit = (ROOT / "deploy" / "wanbot.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    words = shlex.split(exec_start.removeprefix("ExecStart="))
    assert words[0].endswith("/wanbot")
    args = build_parser().parse_args(words[1:])  # exits (fails the test) if unknown
    assert args.command == "run" and args.env_file.startswith("/etc/")
    assert "User=wanbot" in unit and "KillSignal=SIGTERM" in unit
    for setting in re.findall(r"^Environment=([A-Z_]+)=", unit, flags=re.M):
        assert setting in _env_example_names() | {"PYTHONUNBUFFERED", "MPLCONFIGDIR"}


def _unit_settings() -> dict[str, str]:
    unit = (ROOT / "deploy" / "wanbot.service").read_text()
    settings: dict[str, str] = {}
    for line in _logical_lines(unit):
        if "=" in line and not line.startswith("["):
            key, value = line.split("=", 1)
            if key == "Environment":
                env_key, value = value.split("=", 1)
                key = f"Environment:{env_key}"
            settings[key] = value
    return settings


def test_the_systemd_unit_restarts_stops_cleanly_and_has_writable_state() -> None:
    from bot.core.engine.engine import EngineConfig

    unit = _unit_settings()
    assert unit["Restart"] == "on-failure" and unit["KillSignal"] == "SIGTERM"
    # SIGKILL must not cut the engine's close grace (deliveries under way) short.
    assert float(unit["TimeoutStopSec"]) >= EngineConfig().close_grace_seconds + 10
    # ProtectSystem=strict: only the StateDirectory is writable, so the working folder
    # (relative DATABASE_PATH, OUTPUT_DIR) and matplotlib's folder must be inside it.
    assert unit["ProtectSystem"] == "strict"
    state = f"/var/lib/{unit['StateDirectory']}"
    assert unit["WorkingDirectory"] == state
    assert unit["Environment:MPLCONFIGDIR"].startswith(state + "/")


def test_the_image_gives_matplotlib_a_writable_folder_and_time_to_stop() -> None:
    env = " ".join(line for line in _dockerfile() if line.startswith("ENV"))
    # Found in review: the unit and the image left matplotlib to guess a home; with
    # none writable it warns and rebuilds its font cache on every report.
    assert re.search(r"\bMPLCONFIGDIR=/data/", env)
    from bot.core.engine.engine import EngineConfig

    bot = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["bot"]
    grace = float(str(bot["stop_grace_period"]).removesuffix("s"))
    assert grace >= EngineConfig().close_grace_seconds + 10


def _healthcheck_argv() -> list[str]:
    import json

    health = next(line for line in _dockerfile() if line.startswith("HEALTHCHECK"))
    command = health.split(" CMD ", 1)[1]
    argv = json.loads(command)  # exec form: no shell, which the slim image has anyway
    assert isinstance(argv, list)
    return [str(word) for word in argv]


async def test_the_healthcheck_command_runs_with_python_alone() -> None:
    """The HEALTHCHECK as docker runs it (python:3.11-slim has no curl or wget): exit 0
    on 200, non-zero on 503 or no answer, 0 when health is switched off."""
    import asyncio
    import os
    import sys

    from aiohttp import web

    argv = _healthcheck_argv()
    assert argv[0] == "python" and argv[1] == "-c"
    status = 200

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": status == 200}, status=status)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner, port = await serve_loopback(app)

    async def check(metrics_port: str) -> int:
        env = {**os.environ, "METRICS_PORT": metrics_port}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *argv[1:], env=env, stderr=asyncio.subprocess.DEVNULL
        )
        return await asyncio.wait_for(proc.wait(), 30)

    try:
        assert await check(str(port)) == 0
        status = 503
        assert await check(str(port)) != 0
    finally:
        await runner.cleanup()
    assert await check(str(port)) != 0  # nothing listens
    assert await check("") == 0


def test_the_docs_say_ci_does_not_build_the_image() -> None:
    docs = (ROOT / "docs" / "deploy.md").read_text()
    assert "CI does not build the image" in docs
    for command in ("wanbot backup", "wanbot db prune", "pg_dump", "METRICS_PORT"):
        assert command in docs

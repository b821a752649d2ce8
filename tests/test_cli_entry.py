"""The commands as a user runs them: `python -m bot ...` in a fresh process, settings from
the environment, the mock provider; exit codes, stdout/stderr and the files left behind."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_PATH": str(tmp_path / "data" / "db.sqlite3"),
        "OUTPUT_DIR": str(tmp_path / "output"),
        "MOCK_LATENCY_SECONDS": "0.5",
    }


def _argv(*args: str) -> list[str]:
    # An explicit, missing env file: a developer's own .env must not leak into tests.
    return [sys.executable, "-m", "bot", "--env-file", "no-such.env", *args]


async def _run(tmp_path: Path, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *_argv(*args),
        cwd=tmp_path,
        env=_env(tmp_path),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(stdin), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def _decodes(path: Path) -> bool:
    with Image.open(path) as image:
        image.load()
        return image.width > 0


async def test_console_script_and_generate_run_the_whole_pipeline(tmp_path: Path) -> None:
    console_dir, generate_dir = tmp_path / "console", tmp_path / "generate"
    console_dir.mkdir()
    generate_dir.mkdir()
    script = b"/imagine a lighthouse at dusk --aspect 16:9 -n 2\n/jobs\n"
    (console_code, console_out, console_err), (gen_code, gen_out, gen_err) = await asyncio.gather(
        _run(console_dir, "run", stdin=script),  # no token: `run` is the console
        _run(generate_dir, "generate", "a red fox", "-n", "2", "--out", "shots"),
    )

    assert console_code == 0, console_err
    assert "MOCK MODE" in console_out
    saved = sorted((console_dir / "output").iterdir())
    assert len(saved) == 2 and all(_decodes(path) for path in saved)
    assert all(path.name in console_out for path in saved)

    assert gen_code == 0, gen_err
    paths = [generate_dir / line for line in gen_out.splitlines()]
    assert len(paths) == 2 and all(_decodes(path) for path in paths)
    assert all(path.parent == generate_dir / "shots" for path in paths)


async def test_bad_generate_input_exits_2(tmp_path: Path) -> None:
    code, out, err = await _run(tmp_path, "generate", "a cat", "-n", "9", "--image", "nope.png")
    assert (code, out) == (2, "")
    assert "the image count must be 1-4; got 9" in err


def test_console_without_a_terminal_explains_and_exits_0(tmp_path: Path) -> None:
    empty = subprocess.run(
        _argv("run"),
        cwd=tmp_path,
        env=_env(tmp_path),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    closed = subprocess.run(
        _argv("console"),
        cwd=tmp_path,
        env=_env(tmp_path),
        preexec_fn=lambda: os.close(0),  # no stdin at all, as under some service managers
        capture_output=True,
        text=True,
        timeout=60,
    )
    for result in (empty, closed):
        assert result.returncode == 0, result.stderr
        assert "needs a terminal" in result.stdout
        assert "DISCORD_TOKEN" in result.stdout
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # nothing was set up for nobody

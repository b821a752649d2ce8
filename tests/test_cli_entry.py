"""The commands as a user runs them: `python -m bot ...` in a fresh process, settings from
the environment, the mock provider; exit codes, stdout/stderr and the files left behind."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

from PIL import Image

from tests.reliability.process import outside_environment, run_wanbot, wanbot_argv


def _env(tmp_path: Path) -> dict[str, str]:
    return outside_environment(
        DATABASE_PATH=str(tmp_path / "data" / "db.sqlite3"),
        OUTPUT_DIR=str(tmp_path / "output"),
        MOCK_LATENCY_SECONDS="0.5",
    )


async def _run(folder: Path, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """A command in `folder`, with its own database and output there."""
    return await run_wanbot(*args, env=_env(folder), cwd=folder, stdin=stdin)


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
        wanbot_argv("run"),
        cwd=tmp_path,
        env=_env(tmp_path),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    closed = subprocess.run(
        wanbot_argv("console"),
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

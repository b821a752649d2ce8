"""One process per SQLite file. Two bots on one database would both resume its stored
jobs and submit them twice (two paid tasks): a second `run`, `console` or `generate`
is refused with the holder's PID, and a SIGKILLed holder never blocks the next start."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from bot.core.clock import FakeClock
from bot.runtime import Runtime
from bot.settings import load_settings
from storage.errors import DatabaseInUse
from storage.sqlite.lock import ProcessLock, current_holder, lock_path
from tests.fakes.providers import FakeApixo
from tests.reliability.process import (
    db_rows,
    outside_environment,
    poll_until,
    run_wanbot,
    wanbot_argv,
)

# --- the lock itself ------------------------------------------------------------------


def test_a_second_holder_is_refused_with_the_pid(tmp_path: Path) -> None:
    db = tmp_path / "data" / "wanbot.sqlite3"
    first, second = ProcessLock(db), ProcessLock(db)
    assert current_holder(db) is None
    first.acquire()
    assert lock_path(db) == tmp_path / "data" / "wanbot.sqlite3.lock"
    with pytest.raises(DatabaseInUse) as caught:
        second.acquire()  # flock: another open file description, even in this process
    assert caught.value.pid == os.getpid()
    assert f"in use by wanbot (PID {os.getpid()})" in str(caught.value)
    assert str(db) in str(caught.value) and "\n" not in str(caught.value)
    holder = current_holder(db)
    assert holder is not None and holder.pid == os.getpid()
    first.release()
    assert current_holder(db) is None
    second.acquire()  # free again
    assert second.held
    second.release()


def test_stale_pid_text_does_not_count(tmp_path: Path) -> None:
    db = tmp_path / "wanbot.sqlite3"
    path = lock_path(db)
    assert path is not None
    path.write_text("999999\n")  # left by a process that died
    lock = ProcessLock(db)
    lock.acquire()
    assert path.read_text().strip() == str(os.getpid())
    lock.release()
    assert lock_path(":memory:") is None
    ProcessLock(":memory:").acquire()  # nothing to share, nothing to lock


def test_a_symlink_to_the_database_shares_its_lock(tmp_path: Path) -> None:
    # Found in review: `DATABASE_PATH=link.sqlite3` beside a bot on `wanbot.sqlite3`
    # (the same file) took its own `link.sqlite3.lock`, and both bots ran.
    db = tmp_path / "wanbot.sqlite3"
    db.write_bytes(b"")
    link = tmp_path / "link.sqlite3"
    link.symlink_to(db)
    holder = ProcessLock(db)
    holder.acquire()
    try:
        with pytest.raises(DatabaseInUse):
            ProcessLock(link).acquire()
        assert current_holder(link) is not None  # what `doctor` reads, too
    finally:
        holder.release()


async def test_the_runtime_holds_the_lock_while_open(tmp_path: Path, clock: FakeClock) -> None:
    settings = load_settings(env_file=None, database_path=tmp_path / "db.sqlite3")
    async with Runtime(settings, clock=clock):
        second = Runtime(settings, clock=clock)
        with pytest.raises(DatabaseInUse):
            await second.open()
        assert not second.lock.held
        await second.close()
    async with Runtime(settings, clock=clock) as again:  # released on close
        assert again.lock.held


# --- as a user runs it: real processes ------------------------------------------------


def _env(tmp_path: Path, apixo: FakeApixo) -> dict[str, str]:
    return outside_environment(
        WAN_PROVIDER="apixo",
        APIXO_API_KEY=apixo.api_key,
        APIXO_BASE_URL=apixo.base_url,
        DOWNLOAD_ALLOWED_HOSTS="127.0.0.1",
        DATABASE_PATH=str(tmp_path / "data" / "db.sqlite3"),
        OUTPUT_DIR=str(tmp_path / "output"),
        PROVIDER_CONCURRENCY="1",  # the console's second job waits in its queue
        PYTHONUNBUFFERED="1",
    )


def _submitted_prompts(apixo: FakeApixo) -> list[str]:
    return [str(r.json["input"]["prompt"]) for r in apixo.requests_for("submit")]


@pytest.mark.slow  # real processes and real provider polling: about 20 s
async def test_a_second_process_is_refused_and_a_killed_holder_blocks_nothing(
    tmp_path: Path,
) -> None:
    """The reported bug: `wanbot generate` beside a console on the same database adopted
    the console's queued job and submitted it again (billed twice)."""
    async with FakeApixo(complete_after=None) as apixo:
        env = _env(tmp_path, apixo)
        database = tmp_path / "data" / "db.sqlite3"
        holder = await asyncio.create_subprocess_exec(
            *wanbot_argv("console"),
            cwd=tmp_path,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            assert holder.stdin is not None
            holder.stdin.write(b"/imagine the first cat\n/imagine the second cat\n")
            await holder.stdin.drain()
            # One job at the provider, one waiting in the console's queue; stdin stays
            # open, so the console keeps running.
            await poll_until(
                lambda: (
                    len(apixo.requests_for("submit")) == 1
                    and len(db_rows(database, "SELECT id FROM jobs")) == 2
                ),
                "the console's two jobs",
            )

            refused = await asyncio.gather(
                run_wanbot("generate", "a garden", env=env, cwd=tmp_path),
                run_wanbot("console", env=env, cwd=tmp_path, stdin=b"/imagine a third cat\n"),
                run_wanbot("run", env=env, cwd=tmp_path, stdin=b"/usage\n"),
            )
            for code, out, err in refused:
                assert code == 2, err
                assert f"is in use by wanbot (PID {holder.pid})" in err
                assert err.count("\n") == 1 and "Traceback" not in err, err
                assert out == ""  # no banner, no paths
            assert _submitted_prompts(apixo) == ["the first cat"]  # nothing adopted
            assert len(db_rows(database, "SELECT id FROM jobs")) == 2

            # The doctor only looks: it runs beside the bot and names it.
            code, out, err = await run_wanbot("doctor", env=env, cwd=tmp_path)
            assert code == 0, out + err
            assert f"in use by wanbot (PID {holder.pid})" in out
        finally:
            if holder.returncode is None:
                holder.send_signal(signal.SIGKILL)  # no cleanup of any kind runs
            await holder.wait()

        # The lock died with the holder (its PID text is still in the file).
        assert current_holder(database) is None
        for task in apixo.tasks.values():
            task.complete_after = 1
        apixo.complete_after = 1
        env["PROVIDER_CONCURRENCY"] = "8"  # the three jobs side by side: a shorter test
        code, out, err = await run_wanbot("generate", "a garden", env=env, cwd=tmp_path)
        assert code == 0, err
        [path] = out.splitlines()
        assert (tmp_path / path).is_file()  # relative to the working folder, or absolute
        # Each job went to the provider exactly once: the second console job by the
        # generate that now owns the database (left from an earlier run), not twice.
        assert sorted(_submitted_prompts(apixo)) == [
            "a garden",
            "the first cat",
            "the second cat",
        ]

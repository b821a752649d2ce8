from __future__ import annotations

import asyncio
import logging

import pytest

from bot.core.clock import FakeClock
from bot.core.tasks import TaskGroup


async def test_task_failure_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    group = TaskGroup("t")

    async def boom() -> None:
        raise ValueError("kaput")

    task = group.create_task(boom(), name="boom-task")
    with pytest.raises(ValueError):
        await task
    await asyncio.sleep(0)
    assert any("boom-task" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert len(group) == 0


async def test_close_cancels_everything() -> None:
    group = TaskGroup("t")
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = group.create_task(forever())
    await started.wait()
    await group.close()
    assert task.cancelled()
    with pytest.raises(RuntimeError):
        group.create_task(forever())


async def test_fake_clock_wakes_sleepers_in_order() -> None:
    clock = FakeClock()
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(f"{name}@{clock.monotonic():.0f}")

    tasks = [asyncio.create_task(sleeper("b", 60)), asyncio.create_task(sleeper("a", 10))]
    await asyncio.sleep(0)
    await clock.advance(30)
    assert woke == ["a@10"]
    await clock.advance(30)
    assert woke == ["a@10", "b@60"]
    await asyncio.gather(*tasks)

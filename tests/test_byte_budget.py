"""ByteBudget: the cap on result bytes that deliveries hold at once."""

from __future__ import annotations

import asyncio

import aiohttp.payload
import pytest

from bot import memory
from bot.core.engine.budget import ByteBudget
from bot.discord.imaging import SharedBytes, SharedBytesPayload


async def test_waits_past_the_cap_and_is_served_in_order() -> None:
    budget = ByteBudget(100)
    first = await budget.acquire(60)
    second = asyncio.ensure_future(budget.acquire(50))
    third = asyncio.ensure_future(budget.acquire(10))
    await asyncio.sleep(0)
    assert not second.done() and not third.done()  # 10 would fit, but 50 came first
    first.release()
    held_second = await second
    held_third = await third
    assert budget.held == 60
    held_second.release()
    held_third.release()
    assert budget.held == 0 and budget.peak == 60


async def test_one_delivery_alone_may_exceed_the_cap() -> None:
    budget = ByteBudget(100)
    hold = await budget.acquire(500)
    assert budget.held == 500
    hold.release()
    hold.release()  # twice is harmless
    assert budget.held == 0


async def test_resize_to_the_real_size_wakes_waiters() -> None:
    budget = ByteBudget(100)
    hold = await budget.acquire(90)
    waiting = asyncio.ensure_future(budget.acquire(40))
    await asyncio.sleep(0)
    assert not waiting.done()
    hold.resize(50)  # the results were smaller than estimated
    other = await waiting
    assert budget.held == 90
    other.release()
    hold.release()
    assert budget.held == 0


async def test_a_cancelled_waiter_takes_nothing() -> None:
    budget = ByteBudget(100)
    hold = await budget.acquire(80)
    waiting = asyncio.ensure_future(budget.acquire(50))
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    hold.release()
    assert budget.held == 0


def test_estimate_learns_from_observed_sizes() -> None:
    budget = ByteBudget(100)
    before = budget.estimate(4)
    for _ in range(100):
        budget.observe(4, 4 * 1000)
    assert budget.estimate(4) < before
    assert abs(budget.estimate(4) - 4000) < 100


async def test_shared_bytes_are_sent_without_a_copy() -> None:
    data = bytes(range(256)) * 1000
    payload = aiohttp.payload.get_payload(SharedBytes(data))
    assert isinstance(payload, SharedBytesPayload)  # views of the bytes, big writes
    assert payload.size == len(data)
    # aiohttp sized it from a view of the same object, not from a copied buffer.
    with SharedBytes(data).getbuffer() as view:
        assert view.obj is data
    written = bytearray()

    class Writer:
        async def write(self, chunk: bytes) -> None:
            written.extend(chunk)

    await payload.write(Writer())  # type: ignore[arg-type]
    assert bytes(written) == data


async def test_draining_the_budget_calls_its_hook_once_per_burst() -> None:
    budget = ByteBudget(100)
    drained: list[int] = []
    budget.on_drained = drained.append
    first = await budget.acquire(30)
    second = await budget.acquire(30)
    first.release()
    assert drained == []  # still holding the second delivery's bytes
    second.release()
    assert drained == [60]  # the most held during the burst
    third = await budget.acquire(10)
    third.release()
    assert drained == [60, 10]


async def test_trims_after_a_drain_are_spaced_with_one_after_the_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(memory, "trim", lambda: calls.append(1) or True)
    trimmer = memory.Trimmer(None, min_interval=60.0)
    trimmer.drained(memory.MIN_BURST_BYTES - 1)  # a small burst: not worth a trim
    assert trimmer._running is None
    trimmer.drained()
    assert trimmer._running is not None
    await trimmer._running
    assert calls == [1] and trimmer.trims == 1
    trimmer.drained()  # within the interval: no trim now, one is scheduled for later
    trimmer.drained()
    assert calls == [1] and trimmer._later is not None
    trimmer.close()
    assert trimmer._later is None

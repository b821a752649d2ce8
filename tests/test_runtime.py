"""The composition root: built from settings, runs a job with the offline mock provider,
serves callbacks when enabled, and closes everything it opened."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from bot.core.clock import FakeClock
from bot.core.models import Job, JobState
from bot.runtime import Runtime
from bot.settings import load_settings
from tests.engine_doubles import (
    RecordingPort,
    ScriptedProvider,
    eventually,
    eventually_async,
    request,
    requester,
)
from tests.reliability.process import free_port
from tests.store_backends import space


async def test_a_job_runs_end_to_end_with_the_mock_provider(
    tmp_path: Path, clock: FakeClock
) -> None:
    settings = load_settings(
        env_file=None,
        wan_provider="mock",
        mock_latency_seconds=3.0,
        database_path=tmp_path / "bot.sqlite3",
        progress_update_seconds=1.0,
    )
    rt = Runtime(settings, clock=clock)
    port = RecordingPort()
    rt.engine.register_delivery("test", port)
    await rt.start()
    try:
        assert rt.provider.name == "mock" and rt.callback_server is None
        job = await rt.engine.submit(requester(), request(count=2))
        # SQLite and the renderer work in threads (real time): move the fake clock
        # only once the engine has nothing under way.
        while not port.delivered(job.id):
            assert clock.monotonic() < 60, "not delivered after 60 fake seconds"
            await eventually(lambda: rt.engine.in_flight == 0, timeout=10, what="idle")
            await clock.advance(0.5)
        [(_, images, failed)] = port.delivered(job.id)
        assert len(images) == 2 and failed == 0
        assert all(image.data.startswith(b"\x89PNG") for image in images)
        stored = await rt.jobs.get(job.id)
        assert stored is not None
        usage = await rt.quotas.usage(space("g1", "test"), "u1")
        assert usage.used == 2
    finally:
        await rt.close()
    assert rt.http.closed
    with pytest.raises(RuntimeError):
        _ = rt.db.conn  # the database is closed


async def test_the_callback_server_runs_with_the_runtime(tmp_path: Path, clock: FakeClock) -> None:
    listen = free_port()
    settings = load_settings(
        env_file=None,
        wan_provider="mock",
        database_path=tmp_path / "bot.sqlite3",
        callback_enabled=True,
        callback_public_url="https://bot.example/hooks",
        callback_host="127.0.0.1",
        callback_port=listen,
    )
    provider = ScriptedProvider(clock, supports_callback=True)
    async with aiohttp.ClientSession() as http:
        async with Runtime(settings, clock=clock, provider=provider, http=http) as rt:
            assert rt.engine.callbacks_enabled
            rt.engine.register_delivery("test", RecordingPort())
            await rt.start()
            async with http.get(f"http://127.0.0.1:{listen}/healthz") as response:
                assert response.status == 200
            job = await rt.engine.submit(requester(), request())
            stored = await _wait_running(rt, job.id)
            assert provider.tasks[stored.task_id or ""].callback_url == (
                f"https://bot.example/hooks/callback/scripted/{job.id}/{stored.callback_token}"
            )
        assert not http.closed  # passed in: not ours to close
        with pytest.raises(aiohttp.ClientConnectionError):
            async with http.get(f"http://127.0.0.1:{listen}/healthz"):
                pass


async def _wait_running(rt: Runtime, job_id: str) -> Job:
    found: list[Job] = []

    async def running() -> bool:
        job = await rt.jobs.get(job_id)
        if job is not None and job.state is JobState.RUNNING:
            found.append(job)
        return bool(found)

    await eventually_async(running, what="the job to run")
    return found[0]

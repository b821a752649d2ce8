"""Forged provider callbacks change nothing: the callback server (bot/callback_server.py)
trusts no body, only a per-job secret in the URL, and even a valid call merely makes
the bot ask the provider. Results, states and money only ever come from the
provider's own status answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.core.clock import FakeClock
from bot.core.models import Job, JobState
from tests.fakes.providers import FakeFileServer, make_png
from tests.reliability.audit import check_money, result_messages
from tests.reliability.flows import imagine, job_for, settled_job
from tests.reliability.process import free_port
from tests.reliability.world import open_world

ATTACKER_PNG = make_png(700, 700, (255, 0, 0))


@pytest.fixture
async def attacker() -> AsyncIterator[FakeFileServer]:
    async with FakeFileServer() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def forged_body(task_id: str, urls: list[str]) -> dict[str, Any]:
    """APIXO's callback body, claiming success with the attacker's images."""
    return {
        "code": 200,
        "message": "success",
        "data": {
            "taskId": task_id,
            "state": "success",
            "resultJson": f'{{"resultUrls": {urls!r}}}'.replace("'", '"'),
        },
    }


async def post(http: aiohttp.ClientSession, url: str, body: Any) -> int:
    async with http.post(url, json=body) as response:
        return response.status


async def test_forged_callbacks_change_nothing(
    tmp_path: Path, clock: FakeClock, attacker: FakeFileServer, http: aiohttp.ClientSession
) -> None:
    port = free_port()
    evil = attacker.add("evil.png", ATTACKER_PNG)
    async with open_world(
        tmp_path,
        clock,
        complete_after=None,
        callback_enabled=True,
        callback_public_url=f"http://127.0.0.1:{port}",
        callback_host="127.0.0.1",
        callback_port=port,
    ) as world:
        assert world.rt.callback_server is not None
        base = f"http://127.0.0.1:{port}/callback"
        interaction = await imagine(world, count=1)
        await world.settle()
        task = await world.apixo.next_task()
        job = await job_for(world, interaction)
        assert job is not None and job.state is JobState.RUNNING
        token = job.callback_token
        assert token is not None
        assert task.callback_url == f"{base}/apixo/{job.id}/{token}"
        other = await imagine(world, count=1)
        await world.settle()
        other_job = await job_for(world, other)
        assert other_job is not None
        body = forged_body(task.id, [evil])

        async def status_calls() -> int:
            await world.settle()
            return len(world.apixo.requests_for("status"))

        calls = await status_calls()
        for url in [
            f"{base}/apixo/zzzzzzzzzz/{token}",  # an unknown job
            f"{base}/apixo/{job.id}/wrong-token",
            f"{base}/apixo/{job.id}/{token[:-1]}",  # almost right
            f"{base}/apixo/{other_job.id}/{token}",  # someone else's job with this token
            f"{base}/evolink/{job.id}/{token}",  # another provider
            f"{base}/mock/{job.id}/{token}",
        ]:
            assert await post(http, url, body) == 404, url
        assert await status_calls() == calls  # not even a status query

        # The right URL with a lying body: the bot only asks the provider, which says
        # the task is still running. Nothing is fetched from the attacker.
        assert await post(http, f"{base}/apixo/{job.id}/{token}", body) == 200
        assert await status_calls() == calls + 1
        job = await world.job(job.id)
        assert job.state is JobState.RUNNING and job.result_urls == []
        assert attacker.requests == []

        # The provider finishes: its own results are delivered, never the attacker's.
        world.apixo.complete(task.id)
        assert await world.apixo.send_callback(task.id, f"{base}/apixo/{job.id}/{token}") == 200
        done = await world.drive(lambda: settled_job(world, interaction))
        assert done.state is JobState.DONE and done.result_urls == []  # dropped once posted
        [message] = result_messages(world.fake, done.id)
        [attachment] = message["attachments"]
        posted = next(a for a in world.fake.attachments.values() if a.url == attachment["url"])
        assert posted.data == world.apixo.result_png(task.id, 0)
        assert attacker.requests == []

        # Replays after the end: 404, nothing posted again, nothing charged again.
        ledger = await world.rows("SELECT * FROM ledger ORDER BY id")
        for _ in range(3):
            assert await post(http, f"{base}/apixo/{job.id}/{token}", body) == 404
        await world.settle()
        assert await world.rows("SELECT * FROM ledger ORDER BY id") == ledger
        assert len(result_messages(world.fake, done.id)) == 1

        # A big body is refused before it is read, and the server stays up.
        status = await post(http, f"{base}/apixo/{other_job.id}/x", {"pad": "x" * 200_000})
        assert status == 413  # refused from its Content-Length, unread (issue 13, rule 12)
        async with http.get(f"http://127.0.0.1:{port}/healthz") as health:
            assert health.status == 200

        world.apixo.complete()
        jobs: list[Job] = await world.drive(lambda: world.all_final())
        await world.drive(lambda: settled_job(world, other))
        await check_money(world.rt.db, world.fake, jobs)

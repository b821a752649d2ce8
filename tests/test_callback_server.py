"""Provider callbacks over real HTTP: the fake EvoLink server calls our callback server,
which only makes the engine query the status now. Forged calls change nothing."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import aiohttp
import pytest
from pydantic import SecretStr

from bot.callback_server import CallbackServer
from bot.core.clock import FakeClock
from bot.core.download import SafeDownloader
from bot.core.engine import CALLBACK_TOKEN, EngineConfig, JobEngine
from bot.core.models import JobState
from bot.core.providers.base import RetryPolicy, Timeouts
from bot.core.providers.evolink import EvolinkProvider
from storage.sqlite.db import Database
from tests.engine_doubles import (
    RecordingPort,
    TrackedStore,
    eventually,
    eventually_async,
    ledger,
    make_store,
    quiesce,
    request,
    requester,
)
from tests.fakes.providers import FakeEvolink


@pytest.fixture
async def fake() -> AsyncIterator[FakeEvolink]:
    async with FakeEvolink(require_https_callback=False) as server:
        yield server


@pytest.fixture
def store(db: Database, clock: FakeClock) -> TrackedStore:
    return make_store(db, clock)


class Wired:
    def __init__(
        self, engine: JobEngine, server: CallbackServer, port: RecordingPort, base: str
    ) -> None:
        self.engine, self.server, self.port, self.base = engine, server, port, base


@pytest.fixture
async def wired(
    session: aiohttp.ClientSession, fake: FakeEvolink, store: TrackedStore, clock: FakeClock
) -> AsyncIterator[Wired]:
    provider = EvolinkProvider(
        session,
        SecretStr(fake.api_key),
        fake.base_url,
        fake.files_url,
        clock,
        timeouts=Timeouts(submit=2, status=2, connect=1),
        retry=RetryPolicy(attempts=1),
        downloader=SafeDownloader(session, ["127.0.0.1"], max_bytes=1_000_000, timeout=2),
        rng=random.Random(1),
    )
    # The public URL is only known once the server is bound: build the engine after.
    holder: dict[str, JobEngine] = {}

    class Late:
        async def on_callback_request(self, provider: str, job_id: str, token: str) -> bool:
            return await holder["engine"].on_callback_request(provider, job_id, token)

    server = CallbackServer(Late(), "127.0.0.1", 0)
    await server.start()
    base = f"http://127.0.0.1:{server.bound_port}"
    config = EngineConfig(callback_base_url=base, status_rps=100.0, status_burst=100)
    engine = JobEngine(store, provider, clock=clock, config=config)  # type: ignore[arg-type]
    holder["engine"] = engine
    port = RecordingPort()
    port.clock = clock
    engine.register_delivery("test", port)
    await engine.start()
    try:
        yield Wired(engine, server, port, base)
    finally:
        await engine.close()
        await server.close()


async def _running(store: TrackedStore, job_id: str) -> None:
    async def running() -> bool:
        job = await store.get(job_id)
        return job is not None and job.state is JobState.RUNNING

    await eventually_async(running, what="the job to be running")


async def test_a_callback_brings_the_result_without_waiting_for_a_poll(
    wired: Wired, fake: FakeEvolink, store: TrackedStore, db: Database
) -> None:
    assert wired.engine.callbacks_enabled
    job = await wired.engine.submit(requester(), request(count=2))
    task = await fake.next_task()
    await _running(store, job.id)
    stored = await store.get(job.id)
    assert stored is not None
    token = stored.callback_token  # its own column, not in the front end's data
    assert token is not None and CALLBACK_TOKEN not in stored.delivery
    assert task.callback_url == f"{wired.base}/callback/evolink/{job.id}/{token}"
    assert len(token) >= 20  # unguessable

    fake.complete(task.id)
    assert await fake.send_callback(task.id) == 200
    await eventually(lambda: bool(wired.port.delivered(job.id)), what="the delivery")
    # The fake clock never moved: the callback, not a poll timer, fetched the result.
    assert len(fake.requests_for("status")) == 1
    assert len(fake.requests_for("result")) == 2
    await eventually_async(lambda: _is_done(store, job.id), what="the job to be settled")
    assert await ledger(db, job.id) == {"reserve": 2, "charge": 2, "refund": 0}

    # Final: the store clears the token (migration 0008), and the same callback again
    # is refused before any status query; the settled job stays as it is.
    row = await db.fetchone("SELECT callback_token FROM jobs WHERE id = ?", (job.id,))
    assert row is not None and row[0] is None
    assert await fake.send_callback(task.id) == 404
    assert not await wired.engine.on_callback_request("evolink", job.id, token)
    assert len(fake.requests_for("status")) == 1
    done = await store.get(job.id)
    assert done is not None and done.state is JobState.DONE and done.callback_token is None
    assert await ledger(db, job.id) == {"reserve": 2, "charge": 2, "refund": 0}


async def _is_done(store: TrackedStore, job_id: str) -> bool:
    job = await store.get(job_id)
    return job is not None and job.state is JobState.DONE


async def test_forged_callbacks_change_nothing(
    wired: Wired,
    fake: FakeEvolink,
    store: TrackedStore,
    session: aiohttp.ClientSession,
    clock: FakeClock,
) -> None:
    job = await wired.engine.submit(requester(), request(count=1))
    task = await fake.next_task()
    await _running(store, job.id)
    stored = await store.get(job.id)
    assert stored is not None
    token = stored.callback_token  # its own column, not in the front end's data
    assert token is not None and CALLBACK_TOKEN not in stored.delivery
    forged_body = {
        "id": task.id,
        "status": "completed",
        "progress": 100,
        "results": ["https://evil.example/planted.png"],
    }

    async def post(path: str) -> int:
        async with session.post(wired.base + path, json=forged_body) as response:
            return response.status

    # Unknown job, wrong token, wrong provider: refused, and no status query made.
    assert await post(f"/callback/evolink/{'x' * 10}/{token}") == 404
    assert await post(f"/callback/evolink/{job.id}/{'A' * len(token)}") == 404
    assert await post(f"/callback/apixo/{job.id}/{token}") == 404
    assert await post(f"/callback/evolink/{job.id}/t%C3%B6ken") == 404
    assert await wired.engine.on_provider_callback("evolink", "task-unknown") is False
    assert fake.requests_for("status") == []

    # The right URL with a planted body: the engine asks the provider, which says the
    # task is still running; the planted URL is never fetched, nothing is delivered.
    assert await post(f"/callback/evolink/{job.id}/{token}") == 200
    await eventually(lambda: len(fake.requests_for("status")) == 1, what="a status query")
    await quiesce(store)
    current = await store.get(job.id)
    assert current is not None and current.state is JobState.RUNNING
    assert current.result_urls == [] and wired.port.deliveries == []

    # Results only ever come from a status query: the real ones, from the provider.
    fake.complete(task.id)
    # The first safety-net poll: at the late end of the estimate (30 s + 50 %).
    await clock.advance(fake.estimated_time * (1 + wired.engine.config.poll.hint_error_ratio))
    await eventually(lambda: bool(wired.port.delivered(job.id)), what="the delivery")
    await eventually_async(lambda: _is_done(store, job.id), what="the job to be settled")
    done = await store.get(job.id)
    assert done is not None
    assert fake.requests_for("result")[0].path in fake.result_url(task.id, 0)
    assert done.result_urls == []  # dropped once delivered
    assert all("evil" not in r.path for r in fake.requests)


async def test_polling_is_only_a_slow_safety_net_with_callbacks(
    wired: Wired, fake: FakeEvolink, store: TrackedStore, clock: FakeClock
) -> None:
    job = await wired.engine.submit(requester(), request())
    await fake.next_task()
    await _running(store, job.id)
    for _ in range(4):
        await clock.advance(15.0)
        await quiesce(store)
    polls = len(fake.requests_for("status"))
    assert 1 <= polls <= 2  # 60 s with a 30 s safety net, instead of ~11 polls


async def test_the_server_ignores_other_paths_and_big_bodies(
    wired: Wired, session: aiohttp.ClientSession
) -> None:
    async with session.get(wired.base + "/healthz") as response:
        assert response.status == 200
    async with session.get(wired.base + "/callback/evolink/a/b") as response:
        assert response.status == 405
    async with session.post(wired.base + "/anything") as response:
        assert response.status == 404
    big = b"x" * (200 * 1024)
    async with session.post(wired.base + "/callback/evolink/a/b", data=big) as response:
        assert response.status in (404, 413)


async def test_a_body_over_the_limit_is_refused_before_the_engine_hears_of_it(
    wired: Wired, fake: FakeEvolink, store: TrackedStore, session: aiohttp.ClientSession
) -> None:
    from bot.callback_server import MAX_BODY

    job = await wired.engine.submit(requester(), request())
    await fake.next_task()
    await _running(store, job.id)
    stored = await store.get(job.id)
    assert stored is not None
    url = f"{wired.base}/callback/evolink/{job.id}/{stored.callback_token}"
    calls: list[str] = []
    real = wired.engine.on_callback_request

    async def spy(provider: str, job_id: str, token: str) -> bool:
        calls.append(job_id)
        return await real(provider, job_id, token)

    wired.engine.on_callback_request = spy  # type: ignore[method-assign]

    # 1 MB with a Content-Length: refused from the header.
    async with session.post(url, data=b"x" * 1_000_000) as response:
        assert response.status == 413
        assert response.headers.get("Connection", "").lower() == "close"

    # Chunked (no length): refused once more than MAX_BODY bytes have arrived.
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(16):
            yield b"y" * 65536

    async with session.post(url, data=chunks()) as response:
        assert response.status == 413
    assert calls == [] and wired.engine.stats.callbacks == 0
    assert fake.requests_for("status") == []

    # A small chunked body at the same URL is an ordinary callback.
    async def small() -> AsyncIterator[bytes]:
        yield b"{}"

    async with session.post(url, data=small()) as response:
        assert response.status == 200
    assert calls == [job.id] and MAX_BODY == 64 * 1024

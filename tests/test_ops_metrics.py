"""Health and metrics over loopback: a job run through the real Runtime (scripted
provider, fake clock) shows up in a Prometheus scrape; /healthz names what failed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from bot.core.clock import FakeClock
from bot.core.errors import ProviderError
from bot.core.models import FailureCategory, JobState
from bot.ops.health import TRANSIENT_LIMIT, ProviderHealth
from bot.ops.metrics import PromMetrics
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
from tests.fakes.discord import FakeDiscord, FakeUser
from tests.fakes.discord.harness import running_bot
from tests.reliability.process import free_port


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


class World:
    def __init__(self, rt: Runtime, provider: ScriptedProvider, port: RecordingPort, url: str):
        self.rt, self.provider, self.port, self.url = rt, provider, port, url


@pytest.fixture
async def world(tmp_path: Path, clock: FakeClock) -> AsyncIterator[World]:
    listen = free_port()
    settings = load_settings(
        env_file=None,
        wan_provider="mock",
        database_path=tmp_path / "bot.sqlite3",
        price_per_image_usd=0.05,
        metrics_port=listen,
        metrics_host="127.0.0.1",
    )
    provider = ScriptedProvider(clock)
    rt = Runtime(settings, clock=clock, provider=provider)
    port = RecordingPort()
    rt.engine.register_delivery("test", port)
    await rt.start()
    try:
        yield World(rt, provider, port, f"http://127.0.0.1:{listen}")
    finally:
        await rt.close()


async def _run_to_done(world: World, clock: FakeClock, count: int) -> str:
    job = await world.rt.engine.submit(requester(guild="g7"), request(count=count))
    while not world.port.delivered(job.id):
        assert clock.monotonic() < 600, "not delivered after 600 fake seconds"
        await eventually(lambda: world.rt.engine.in_flight == 0, timeout=10, what="idle")
        await clock.advance(1.0)

    async def settled() -> bool:
        stored = await world.rt.jobs.get(job.id)
        return stored is not None and stored.state is JobState.DONE

    await eventually_async(settled, timeout=10, what="the job to be settled")
    return job.id


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, str, Any]:
    async with session.get(url) as response:
        text = await response.text()
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, text, body


async def test_a_finished_job_is_counted_in_the_scrape(world: World, clock: FakeClock) -> None:
    # One status query fails transiently (retried), then the job runs to the end.
    world.provider.status_errors.append(
        ProviderError(FailureCategory.TRANSIENT, "http_503", status=503)
    )
    job_id = await _run_to_done(world, clock, count=2)

    async with aiohttp.ClientSession() as session:
        status, text, _ = await _get(session, world.url + "/metrics")
    assert status == 200
    got = _samples(text)
    guild = (("guild", "g7"), ("platform", "test"))
    assert got[("wanbot_images_total", guild)] == 2
    assert got[("wanbot_spend_usd_total", guild)] == pytest.approx(0.10)
    assert got[("wanbot_jobs", (("state", "done"),))] == 1
    assert got[("wanbot_jobs", (("state", "running"),))] == 0
    assert got[("wanbot_jobs_in_flight", ())] == 0
    calls = len(world.provider.status_calls)
    assert calls >= 2
    assert got[("wanbot_status_calls_total", (("provider", "scripted"),))] == calls
    assert got[("wanbot_submits_total", (("provider", "scripted"),))] == 1
    failures = (("category", "transient"), ("provider", "scripted"))
    assert got[("wanbot_provider_failures_total", failures)] == 1
    assert got[("wanbot_delivery_lag_seconds_count", (("platform", "test"),))] == 1

    # The delivered job keeps no provider URLs.
    stored = await world.rt.jobs.get(job_id)
    assert stored is not None and stored.result_urls == [] and stored.delivered == 2


async def test_healthz_says_which_check_failed(world: World) -> None:
    async with aiohttp.ClientSession() as session:
        status, _, body = await _get(session, world.url + "/healthz")
        assert (status, body["ok"], body["failed"]) == (200, True, [])

        connected = {"discord": True}
        world.rt.health.watch_frontend("discord", lambda: connected["discord"])
        connected["discord"] = False
        status, _, body = await _get(session, world.url + "/healthz")
        assert (status, body["failed"]) == (503, ["frontends"])
        assert body["checks"]["frontends"]["detail"] == "not connected: discord"
        connected["discord"] = True

        await world.rt.db.close()
        status, _, body = await _get(session, world.url + "/healthz")
        assert (status, body["failed"]) == (503, ["database"])
        assert "unreachable" in body["checks"]["database"]["detail"]


async def test_a_refused_key_makes_the_provider_check_fail(world: World, clock: FakeClock) -> None:
    world.provider.submit_errors.append(
        ProviderError(FailureCategory.CONFIG, "unauthorized", status=401)
    )
    job = await world.rt.engine.submit(requester(), request())
    await eventually(lambda: bool(world.port.failed(job.id)), what="the failure notice")
    async with aiohttp.ClientSession() as session:
        status, text, body = await _get(session, world.url + "/healthz")
        assert (status, body["failed"]) == (503, ["provider"])
        _, text, _ = await _get(session, world.url + "/metrics")
    got = _samples(text)
    assert (
        got[("wanbot_provider_failures_total", (("category", "config"), ("provider", "scripted")))]
        == 1
    )
    assert (
        got[("wanbot_job_failures_total", (("kind", "provider_config"), ("platform", "test")))] == 1
    )


def test_provider_health_needs_a_streak_of_transient_failures() -> None:
    health = ProviderHealth()
    for _ in range(TRANSIENT_LIMIT - 1):
        health.failed("transient")
    health.failed("user")  # the user's prompt: not the provider failing
    assert health.problem() is None
    health.failed("transient")
    assert health.problem() is not None
    health.ok()
    assert health.problem() is None
    health.failed("config")
    assert health.problem() is not None and "key" in health.problem()  # type: ignore[operator]


def test_registries_are_private_and_ack_latency_is_a_histogram() -> None:
    first = PromMetrics(CollectorRegistry(), price_per_image_usd=0.1)
    second = PromMetrics(CollectorRegistry(), price_per_image_usd=0.1)
    first.interaction_ack("discord", 0.2)
    got = _samples(first.render().decode())
    assert got[("wanbot_interaction_ack_seconds_count", (("platform", "discord"),))] == 1
    assert (
        got[("wanbot_interaction_ack_seconds_bucket", (("le", "0.25"), ("platform", "discord")))]
        == 1
    )
    assert ("wanbot_interaction_ack_seconds_count", (("platform", "discord"),)) not in _samples(
        second.render().decode()
    )


async def test_one_server_when_metrics_share_the_callback_port(
    tmp_path: Path, clock: FakeClock
) -> None:
    listen = free_port()
    common: dict[str, Any] = dict(
        env_file=None,
        wan_provider="mock",
        database_path=tmp_path / "bot.sqlite3",
        callback_enabled=True,
        callback_public_url="https://bot.example/hooks",
        callback_host="127.0.0.1",
        callback_port=listen,
    )
    provider = ScriptedProvider(clock, supports_callback=True)
    rt = Runtime(load_settings(**common, metrics_port=listen), clock=clock, provider=provider)
    rt.engine.register_delivery("test", RecordingPort())
    await rt.start()
    try:
        assert len(rt.http_servers) == 1 and rt.callback_server is rt.http_servers[0]
        async with aiohttp.ClientSession() as session:
            status, text, _ = await _get(session, f"http://127.0.0.1:{listen}/metrics")
            assert status == 200 and "wanbot_jobs_in_flight" in text
            async with session.post(f"http://127.0.0.1:{listen}/callback/scripted/x/y") as r:
                assert r.status == 404  # the callback route is there: an unknown job
    finally:
        await rt.close()

    other = free_port()
    rt = Runtime(load_settings(**common, metrics_port=other), clock=clock, provider=provider)
    try:
        assert len(rt.http_servers) == 2 and rt.callback_server is rt.http_servers[0]
    finally:
        await rt.close()


async def test_discord_interaction_acks_are_measured(
    fake: FakeDiscord, alice: FakeUser, clock: FakeClock, tmp_path: Path
) -> None:
    listen = free_port()
    overrides = {"metrics_port": listen, "metrics_host": "127.0.0.1"}
    async with running_bot(fake, tmp_path / "bot.sqlite3", clock, settings=overrides) as run:
        interaction = await fake.slash("imagine", alice, {"prompt": "a red fox"})
        await fake.wait_callback(interaction)
        await run.wait_results()
        async with aiohttp.ClientSession() as session:
            status, text, _ = await _get(session, f"http://127.0.0.1:{listen}/metrics")
    assert status == 200
    got = _samples(text)
    assert got[("wanbot_interaction_ack_seconds_count", (("platform", "discord"),))] == 1
    assert 0 <= got[("wanbot_interaction_ack_seconds_sum", (("platform", "discord"),))] < 3

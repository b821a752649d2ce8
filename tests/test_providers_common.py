"""Shared provider pieces: sizes, retry timing, Retry-After, the factory, capabilities."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest
from pydantic import SecretStr

from bot.core.clock import FakeClock
from bot.core.models import Mode
from bot.core.providers import (
    ApixoProvider,
    DashscopeProvider,
    EvolinkProvider,
    MockProvider,
    build_provider,
    task_id_from_callback,
)
from bot.core.providers.base import RetryPolicy, parse_retry_after
from bot.core.providers.sizes import SIZED_ASPECT_RATIOS, size_for


@pytest.mark.parametrize("ratio", SIZED_ASPECT_RATIOS)
def test_sizes_fit_the_documented_bounds(ratio: str) -> None:
    width, height = size_for(ratio)
    a, b = (int(part) for part in ratio.split(":"))
    assert 768 * 768 <= width * height <= 1440 * 1440
    assert width % 16 == 0 and height % 16 == 0
    assert abs(width / height - a / b) / (a / b) < 0.01


def test_impossible_ratio_is_refused() -> None:
    with pytest.raises(ValueError):
        size_for("5:1")


def test_backoff_grows_and_jitters_within_bounds() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0, jitter=0.5)
    rng = random.Random(0)
    for retry, ceiling in enumerate([0.5, 1.0, 2.0, 4.0, 4.0]):
        delay = policy.backoff(retry, rng)
        assert ceiling / 2 <= delay <= ceiling


def test_retry_after_forms() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("5", now) == 5.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now) == pytest.approx(30, abs=1)
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_factory_builds_each_provider(clock: FakeClock) -> None:
    key = SecretStr("k")
    session = object()  # never used before a call
    built = {
        name: build_provider(name, clock=clock, session=session, api_key=key)  # type: ignore[arg-type]
        for name in ("apixo", "evolink", "dashscope", "mock")
    }
    assert isinstance(built["apixo"], ApixoProvider)
    assert isinstance(built["evolink"], EvolinkProvider)
    assert isinstance(built["dashscope"], DashscopeProvider)
    assert isinstance(built["mock"], MockProvider)
    assert {name: p.name for name, p in built.items()} == {n: n for n in built}


@pytest.mark.parametrize(
    ("name", "key", "message"),
    [("nope", "k", "unknown provider"), ("apixo", None, "APIXO_API_KEY"), ("evolink", " ", "key")],
)
def test_factory_refuses_what_cannot_work(
    clock: FakeClock, name: str, key: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build_provider(
            name,
            clock=clock,
            session=object(),  # type: ignore[arg-type]
            api_key=SecretStr(key) if key is not None else None,
        )


def test_capabilities_match_the_documented_limits() -> None:
    apixo, evolink, dashscope = (
        ApixoProvider.capabilities,
        EvolinkProvider.capabilities,
        DashscopeProvider.capabilities,
    )
    assert (apixo.max_input_images, evolink.max_input_images, dashscope.max_input_images) == (
        3,
        2,
        3,
    )
    assert apixo.aspect_ratios(Mode.TEXT_TO_IMAGE) == ["1:1", "3:4", "4:3", "9:16", "16:9"]
    assert set(apixo.aspect_ratios(Mode.IMAGE_TO_IMAGE)) >= {"2:3", "3:2", "21:9"}
    assert not evolink.supports_negative_prompt
    assert apixo.supports_callback and evolink.supports_callback
    assert not dashscope.supports_callback
    assert dashscope.accepts_data_uri and MockProvider.capabilities.accepts_data_uri
    assert apixo.price_per_image_usd == 0.03
    assert all(c.max_count == 4 for c in (apixo, evolink, dashscope))


def test_callback_task_ids() -> None:
    assert task_id_from_callback("apixo", {"code": 200, "data": {"taskId": "t1"}}) == "t1"
    assert task_id_from_callback("evolink", {"id": "task-unified-1"}) == "task-unified-1"
    assert task_id_from_callback("apixo", {"unexpected": True}) is None
    assert task_id_from_callback("dashscope", {"output": {}}) is None

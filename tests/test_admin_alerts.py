"""Issue 13, rule 9: "admins have been told" is true. Billing/key/setup failures, an
outage over 5 minutes and a server budget used up reach the server's admins: a message
in the channel set with /config alerts, else a DM to the owner; always the log; at most
one message per cause per server per hour. Real WanBot and Runtime against the fake
Discord and fake APIXO, on the injected clock; plus the throttle alone."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.chat.wording import ADMINS_TOLD
from bot.cli import build_parser
from bot.console.alerts import drop_alert_log_lines
from bot.console.generate import generate
from bot.core.alerts import AlertThrottle
from bot.core.clock import FakeClock
from bot.core.models import AdminAlert, AlertCause, ErrorKind, Job
from bot.discord.alerts import DiscordAlerts
from bot.logging_setup import JsonFormatter
from bot.runtime import Runtime
from bot.settings import load_settings
from tests.fakes.discord import FakeChannel, FakeDiscord, FakeInteraction
from tests.fakes.providers import FakeApixo, Fault
from tests.reliability.audit import failure_shown, kind_shown, private_answer
from tests.reliability.flows import everyone_told, imagine, job_for
from tests.reliability.world import World, open_world
from tests.store_backends import space

HOUR = 3600.0


@contextlib.asynccontextmanager
async def alert_world(tmp_path: Path, clock: FakeClock, **settings: Any) -> AsyncIterator[World]:
    """The world wired as bot/discord/runner.py wires production."""
    async with open_world(tmp_path, clock, **settings) as world:
        world.rt.alert_sinks.add(DiscordAlerts(world.bot, world.rt.chat.configs))
        yield world


def bot_posts(fake: FakeDiscord, channel: FakeChannel) -> list[str]:
    return [
        m["content"]
        for m in fake.messages_in(channel)
        if m["author"]["id"] == fake.bot.id and m["content"]
    ]


async def set_alerts_channel(world: World, channel: FakeChannel) -> FakeInteraction:
    fake = world.fake
    run = await fake.slash("config", fake.owner, {"channel": channel}, subcommand="alerts")

    async def saved() -> bool:
        config = await world.rt.quotas.guild_config(space(fake.guild_id))
        return config.alerts_channel_id == channel.id and bool(run.answer(ephemeral=True))

    await world.drive(saved)
    return run


async def billing_failure(world: World, prompt: str) -> Job:
    """One /imagine that the provider refuses for billing (402): failed, user told."""
    world.apixo.script_submit_fault(Fault.http(402))
    interaction = await imagine(world, prompt=prompt)

    async def told() -> Job | None:
        job = await job_for(world, interaction)
        if job is None or not job.state.final or failure_shown(world.fake, job) is None:
            return None
        return job

    job = await world.drive(told)
    assert job.error_kind is ErrorKind.PROVIDER_CONFIG
    return job


async def request_failure(world: World, prompt: str) -> Job:
    """One /imagine whose task fails with MissingParameter (the bot's own request)."""
    world.apixo.fail_new_tasks("MissingParameter", "input.size is required")
    interaction = await imagine(world, prompt=prompt)

    async def told() -> Job | None:
        job = await job_for(world, interaction)
        return job if job is not None and failure_shown(world.fake, job) else None

    return await world.drive(told)


def card(world: World, job: Job) -> str:
    shown = failure_shown(world.fake, job)
    assert shown is not None and kind_shown(shown) is ErrorKind.PROVIDER_CONFIG
    return shown


async def test_billing_trouble_goes_to_the_alerts_channel_once_an_hour(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with alert_world(tmp_path, clock) as world:
        fake = world.fake
        alerts = await fake.create_channel("bot-alerts")
        setup = await set_alerts_channel(world, alerts)
        assert f"<#{alerts.id}>" in setup.text()
        # Two users hit the billing outage: one message for the server.
        world.apixo.script_submit_fault(Fault.http(402), Fault.http(402))
        await imagine(world, prompt="a red kite")
        await imagine(world, prompt="a blue kite")
        jobs = await world.drive(lambda: everyone_told(world))
        [message] = bot_posts(fake, alerts)
        assert "refuses the bot's requests" in message and "402" in message
        for job in jobs:
            assert ADMINS_TOLD in card(world, job)
        assert fake.dm_messages == []  # the channel is set: the owner is not DMed
        # Within the hour: no second message, and the card is still true.
        await clock.advance(HOUR / 2)
        job = await billing_failure(world, "a green kite")
        assert ADMINS_TOLD in card(world, job)
        assert len(bot_posts(fake, alerts)) == 1
        # An hour after the first message, the trouble is told again.
        await clock.advance(HOUR / 2 + 60)
        await billing_failure(world, "a yellow kite")
        assert len(bot_posts(fake, alerts)) == 2


async def test_without_a_channel_the_owner_gets_a_dm(tmp_path: Path, clock: FakeClock) -> None:
    async with alert_world(tmp_path, clock) as world:
        fake = world.fake
        job = await billing_failure(world, "a moth")
        [dm] = fake.dms_to(fake.owner)
        assert "refuses the bot's requests" in dm["content"]
        assert "/config alerts" in dm["content"]
        [opened] = fake.find_requests("POST", r"/users/@me/channels")
        assert str(opened.json["recipient_id"]) == fake.owner.id
        assert ADMINS_TOLD in card(world, job)
        assert not any(bot_posts(fake, c) for c in fake.channels.values())


async def test_the_card_claims_nothing_when_nobody_could_be_told(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with alert_world(tmp_path, clock) as world:
        fake = world.fake
        fake.refuse_dms(fake.owner)  # no alerts channel, and the owner takes no DMs
        with caplog.at_level(logging.ERROR, logger="bot.core.alerts"):
            job = await billing_failure(world, "a beetle")
        shown = card(world, job)
        assert ADMINS_TOLD not in shown and "admins have been told" not in shown.lower()
        assert fake.dm_messages == []
        assert [r.status for r in fake.find_requests("POST", r"/channels/\d+/messages")] == [403]
        # The log always has it.
        assert any("refuses the bot's requests" in r.getMessage() for r in caplog.records)


async def test_an_alerts_channel_the_bot_cannot_post_in_falls_back_to_the_owner(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with alert_world(tmp_path, clock) as world:
        fake = world.fake
        alerts = await fake.create_channel("bot-alerts")
        await set_alerts_channel(world, alerts)
        fake.fail_next("POST", rf"/channels/{alerts.id}/messages", 403, code=50013)
        job = await billing_failure(world, "a wasp")
        assert bot_posts(fake, alerts) == []
        assert len(fake.dms_to(fake.owner)) == 1
        assert ADMINS_TOLD in card(world, job)


async def test_a_budget_used_up_is_told_once(tmp_path: Path, clock: FakeClock) -> None:
    async with alert_world(tmp_path, clock) as world:
        fake = world.fake
        alerts = await fake.create_channel("bot-alerts")
        await set_alerts_channel(world, alerts)
        await world.rt.quotas.set_server_budget(space(fake.guild_id), 1)
        await imagine(world, prompt="the last one")
        for prompt in ("one too many", "and another"):
            refused = await imagine(world, prompt=prompt)
            answer = await world.drive(lambda r=refused: private_answer(fake, r))
            assert "budget" in answer
        [message] = bot_posts(fake, alerts)
        assert "budget is used up" in message and "/quota budget" in message


async def test_an_outage_over_five_minutes_is_told(tmp_path: Path, clock: FakeClock) -> None:
    async with alert_world(tmp_path, clock) as world:
        fake = world.fake
        alerts = await fake.create_channel("bot-alerts")
        await set_alerts_channel(world, alerts)
        # A storm of 429s: the first job gives up after its retries, a minute in.
        world.apixo.script_submit_fault(*[Fault.rate_limited()] * 3)
        await imagine(world, prompt="a storm")
        await world.drive(lambda: everyone_told(world))
        assert bot_posts(fake, alerts) == []  # not 5 minutes yet
        await clock.advance(6 * 60)
        world.apixo.script_submit_fault(*[Fault.rate_limited()] * 3)
        await imagine(world, prompt="still a storm")
        await world.drive(lambda: everyone_told(world))
        [message] = bot_posts(fake, alerts)
        assert "image service outage" in message and "failing or overloaded for 6" in message


# --- the throttle alone --------------------------------------------------------------


class Recorder:
    def __init__(self, told: bool = True) -> None:
        self.sent: list[AdminAlert] = []
        self.told = told
        self.gate: asyncio.Event | None = None

    async def alert(self, alert: AdminAlert) -> bool:
        self.sent.append(alert)
        if self.gate is not None:
            await self.gate.wait()
        return self.told


def fact(cause: AlertCause, guild: str | None = "g1") -> AdminAlert:
    return AdminAlert(cause=cause, guild_id=guild, detail="details")


async def test_the_throttle_sends_one_per_cause_and_server_per_hour(clock: FakeClock) -> None:
    sink = Recorder()
    throttle = AlertThrottle(sink, clock)
    setup, outage = AlertCause.PROVIDER_SETUP, AlertCause.PROVIDER_OUTAGE
    assert await throttle.alert(fact(setup))
    assert await throttle.alert(fact(setup))  # told already: still true, not sent again
    assert await throttle.alert(fact(outage))  # another cause
    assert await throttle.alert(fact(setup, "g2"))  # another server
    assert await throttle.alert(fact(setup, None))  # no server (the operator)
    assert len(sink.sent) == 4
    await clock.advance(HOUR - 1)
    await throttle.alert(fact(setup))
    assert len(sink.sent) == 4
    await clock.advance(1)
    await throttle.alert(fact(setup))
    assert len(sink.sent) == 5


async def test_the_same_server_id_on_two_platforms_is_two_places(clock: FakeClock) -> None:
    # A Slack workspace and a Discord server may share an id: each gets its own alert,
    # and Discord never tries to deliver a Slack workspace's alert.
    sink = Recorder()
    throttle = AlertThrottle(sink, clock)
    on = {
        p: fact(AlertCause.PROVIDER_SETUP).model_copy(update={"platform": p})
        for p in ("discord", "slack")
    }
    assert await throttle.alert(on["discord"]) and await throttle.alert(on["slack"])
    assert len(sink.sent) == 2
    not_a_client: Any = object()  # never used: the alert is not Discord's
    assert await DiscordAlerts(not_a_client, not_a_client).alert(on["slack"]) is False


async def test_the_throttle_shares_an_alert_in_flight_and_remembers_failure(
    clock: FakeClock,
) -> None:
    sink = Recorder(told=False)
    sink.gate = asyncio.Event()
    throttle = AlertThrottle(sink, clock)
    waiting = [asyncio.create_task(throttle.alert(fact(AlertCause.PROVIDER_SETUP)))]
    await asyncio.sleep(0)
    waiting.append(asyncio.create_task(throttle.alert(fact(AlertCause.PROVIDER_SETUP))))
    await asyncio.sleep(0)
    assert len(sink.sent) == 1 and not any(task.done() for task in waiting)
    sink.gate.set()
    assert await asyncio.gather(*waiting) == [False, False]  # nobody could be told
    assert await throttle.alert(fact(AlertCause.PROVIDER_SETUP)) is False
    assert len(sink.sent) == 1


async def test_a_request_the_provider_cannot_accept_is_told_as_the_bots_side(
    tmp_path: Path, clock: FakeClock
) -> None:
    # MissingParameter is the bot's own request (docs/providers.md): the admins hear
    # that, not advice about the API key or balance.
    async with alert_world(tmp_path, clock) as world:
        fake = world.fake
        job = await request_failure(world, "a heron")
        [dm] = fake.dms_to(fake.owner)
        assert "could not accept a request the bot built (MissingParameter)" in dm["content"]
        assert "API key" not in dm["content"]
        assert ADMINS_TOLD in card(world, job)


async def test_the_bots_request_and_the_account_are_two_causes(
    tmp_path: Path, clock: FakeClock
) -> None:
    # Within the same hour, a refused request the bot built must not silence billing
    # trouble: the owner hears of both, and each card's claim is true of its own cause.
    async with alert_world(tmp_path, clock) as world:
        fake = world.fake
        await request_failure(world, "a heron")
        world.apixo.stop_failing_new_tasks()  # the bot's request is fine again
        job = await billing_failure(world, "a stork")
        dms = fake.dms_to(fake.owner)
        assert len(dms) == 2
        assert "could not accept a request the bot built" in dms[0]["content"]
        assert "Check the API key, balance and access" in dms[1]["content"]
        assert ADMINS_TOLD in card(world, job)


# --- the console ---------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_the_console_shows_an_alert_once_and_the_log_keeps_it(
    tmp_path: Path, clock: FakeClock
) -> None:
    # `wanbot generate` with the log on the same terminal (text): the alert is one line
    # there, not also a log line; a JSON log (or one going to a file) still has it.
    terminal, json_log = _Terminal(), io.StringIO()
    text_handler = logging.StreamHandler(terminal)
    text_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    json_handler = logging.StreamHandler(json_log)
    json_handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(text_handler)
    root.addHandler(json_handler)
    try:
        drop_alert_log_lines(root.handlers)
        async with FakeApixo(api_key="sk-right") as apixo:
            apixo.script_submit_fault(Fault.http(402))
            settings = load_settings(
                env_file=None,
                wan_provider="apixo",
                apixo_api_key="sk-right",
                apixo_base_url=apixo.base_url,
                database_path=tmp_path / "db.sqlite3",
                output_dir=tmp_path / "out",
            )
            err = io.StringIO()
            args = build_parser().parse_args(["generate", "a cat"])
            work = generate(
                settings,
                args,
                asyncio.Event(),
                io.StringIO(),
                err,
                lambda s: Runtime(s, clock=clock),
            )
            assert await asyncio.wait_for(work, timeout=30) == 1
    finally:
        root.removeHandler(text_handler)
        root.removeHandler(json_handler)
    assert err.getvalue().count("wanbot alert (image service billing, key or setup)") == 1
    assert ADMINS_TOLD in err.getvalue()
    assert "wanbot alert" not in terminal.getvalue()
    [logged] = [line for line in json_log.getvalue().splitlines() if "wanbot alert" in line]
    assert json.loads(logged)["level"] == "ERROR"

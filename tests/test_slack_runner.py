"""`wanbot run` with Slack tokens, and `wanbot doctor`'s Slack checks, against the fake
Slack (real Bolt, real Runtime with the mock provider)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import aiohttp
import pytest

from bot.discord.endpoints import endpoints
from bot.discord.runner import apply_endpoint_settings, serve
from bot.fronts import beside_discord, serve_slack
from bot.ops.doctor import doctor, settings_provider
from bot.ops.doctor.slack import check_slack
from bot.settings import Settings
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack, SlackChannel, SlackUser

pytest_plugins = ("tests.fakes.slack.fixtures",)


def slack_settings(tmp_path: Path, slack: FakeSlack, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_path": tmp_path / "wanbot.sqlite3",
        "wan_provider": "mock",
        "slack_bot_token": BOT_TOKEN,
        "slack_app_token": APP_TOKEN,
        "slack_api_base_url": slack.api_base,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


async def test_run_serves_slack_until_stopped(
    tmp_path: Path, slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    stop = asyncio.Event()
    serving = asyncio.create_task(serve_slack(slack_settings(tmp_path, slack), stop))
    try:
        await slack.wait_connected()
        ack = await slack.acked(await slack.slash_command(member, general, "/wanbot", "help"))
        assert ack.latency < 3.0
        answer = await slack.wait_call("chat.postEphemeral")
        assert "Wan 2.5 images" in str(answer.args.get("blocks"))
    finally:
        stop.set()
        assert await asyncio.wait_for(serving, 10) == 0


async def test_run_with_a_refused_token_says_so(
    tmp_path: Path, slack: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = slack_settings(tmp_path, slack, slack_bot_token="xoxb-wrong")
    assert await asyncio.wait_for(serve_slack(settings, asyncio.Event()), 10) == 2
    err = capsys.readouterr().err
    assert "Slack refused a token (invalid_auth)" in err and "xoxb-wrong" not in err


async def test_doctor_checks_both_tokens(tmp_path: Path, slack: FakeSlack) -> None:
    async with aiohttp.ClientSession() as session:
        good = await check_slack(slack_settings(tmp_path, slack), session)
        assert [(c.name, c.status) for c in good] == [("slack", "OK"), ("socket mode", "OK")]
        assert "wanbot" in good[0].detail
        swapped = slack_settings(
            tmp_path, slack, slack_bot_token=APP_TOKEN, slack_app_token=BOT_TOKEN
        )
        bad = await check_slack(swapped, session)
        assert [c.status for c in bad] == ["FAIL", "FAIL"]
        assert all("wrong kind of token" in c.detail for c in bad)
        off = await check_slack(
            slack_settings(tmp_path, slack, slack_bot_token="", slack_app_token=""), session
        )
        assert [c.status for c in off] == ["SKIP"]


async def test_discord_and_slack_run_together_on_one_engine(
    tmp_path: Path, slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    async with FakeDiscord() as discord_fake:
        settings = slack_settings(
            tmp_path,
            slack,
            discord_token="token",
            discord_api_base_url=discord_fake.api_base,
            discord_gateway_url=discord_fake.gateway_url,
        )
        stop = asyncio.Event()
        with endpoints(None, None):  # restores discord.py's endpoints afterwards
            apply_endpoint_settings(settings)
            task = asyncio.create_task(
                serve(settings, "token", stop, beside=beside_discord(settings))
            )
            try:
                await discord_fake.wait_connected()
                await slack.wait_connected()
                ack = await slack.acked(
                    await slack.slash_command(member, general, "/wanbot", "usage")
                )
                assert ack.latency < 3.0
                answer = await slack.wait_call("chat.postEphemeral")
                assert "Your image quota" in str(answer.args.get("blocks"))
            finally:
                stop.set()
                assert await asyncio.wait_for(task, timeout=10) == 0
    assert discord_fake.identifies  # Discord connected too
    assert slack.sockets == [] or all(s.closed for s in slack.sockets)  # Slack closed


async def test_wanbot_doctor_reports_the_slack_tokens(tmp_path: Path, slack: FakeSlack) -> None:
    out = io.StringIO()
    settings = slack_settings(tmp_path, slack, slack_app_token="xapp-revoked")
    code = await doctor(settings, out, settings_provider)
    shown = out.getvalue()
    assert code == 1
    assert "bot token accepted: wanbot in Fake Workspace" in shown
    assert "Slack refused SLACK_APP_TOKEN (invalid_auth)" in shown
    assert "xapp-revoked" not in shown and BOT_TOKEN not in shown

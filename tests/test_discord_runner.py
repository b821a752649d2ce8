"""The entry points: settings point the bot at the fake Discord, `serve` runs until
stopped, `sync` registers the commands (in one server, or globally)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import discord.http
import pytest

from bot.discord.endpoints import endpoints
from bot.discord.runner import apply_endpoint_settings, run_discord, serve, sync_commands
from tests.fakes.discord import FakeDiscord
from tests.fakes.discord.harness import settings_for_tests


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server


async def test_serve_connects_and_stops_cleanly(fake: FakeDiscord, tmp_path: Path) -> None:
    settings = settings_for_tests(
        tmp_path / "db.sqlite3",
        discord_api_base_url=fake.api_base,
        discord_gateway_url=fake.gateway_url,
    )
    stop = asyncio.Event()
    with endpoints(None, None):  # restores discord.py's endpoints afterwards
        apply_endpoint_settings(settings)
        assert fake.api_base == discord.http.Route.BASE
        task = asyncio.create_task(serve(settings, "token", stop))
        await fake.wait_connected()
        stop.set()
        assert await asyncio.wait_for(task, timeout=10) == 0
    assert fake.identifies and fake.identifies[0]["token"] == "token"
    assert not fake.find_requests("PUT", r"/applications/.*")  # never syncs on start


async def test_sync_to_a_guild_echoes_every_command(fake: FakeDiscord, tmp_path: Path) -> None:
    settings = settings_for_tests(tmp_path / "db.sqlite3")
    with endpoints(fake.api_base, fake.gateway_url):
        assert await sync_commands(settings, "token", int(fake.guild_id)) == 0
    [put] = fake.find_requests("PUT", rf"/applications/{fake.application_id}/guilds/\d+/commands")
    names = {c["name"] for c in put.json}
    assert {"imagine", "usage", "quota", "config", "help", "show", "jobs", "cancel"} <= names
    assert "Edit image" in names
    imagine = next(c for c in put.json if c["name"] == "imagine")
    options = {o["name"]: o for o in imagine["options"]}
    assert imagine["options"][0]["name"] == "prompt"
    assert {"image1", "image2", "image3"} <= set(options)  # the mock takes 3 images
    assert options["count"]["max_value"] == 4
    quota = next(c for c in put.json if c["name"] == "quota")
    assert int(quota["default_member_permissions"]) == 1 << 5  # Manage Server


def test_run_without_a_token_explains_and_fails(tmp_path: Path) -> None:
    assert run_discord(settings_for_tests(tmp_path / "db.sqlite3")) == 2

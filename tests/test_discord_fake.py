"""The fake Discord itself, driven by a plain discord.py client: wire format, deadlines,
limits, permissions, nonces and scripted failures behave like Discord's."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

import aiohttp
import discord
import pytest
from aiohttp import web
from discord import app_commands

from bot.core.clock import FakeClock
from bot.discord.endpoints import endpoints
from tests.fakes.discord import ATTACH_FILES, SEND_MESSAGES, FakeDiscord
from tests.fakes.discord.wire import GatewayConnection


@dataclass
class Client:
    client: discord.Client
    interactions: asyncio.Queue[discord.Interaction]

    async def next_interaction(self) -> discord.Interaction:
        return await asyncio.wait_for(self.interactions.get(), timeout=5.0)


@contextlib.asynccontextmanager
async def connected(
    fake: FakeDiscord, intents: discord.Intents | None = None
) -> AsyncIterator[Client]:
    queue: asyncio.Queue[discord.Interaction] = asyncio.Queue()
    client = discord.Client(intents=intents or discord.Intents.default(), guild_ready_timeout=0.05)
    tree = app_commands.CommandTree(client)

    @tree.command(name="probe", description="hands the interaction to the test")
    async def probe(interaction: discord.Interaction, text: str = "") -> None:
        await queue.put(interaction)

    with endpoints(fake.api_base, fake.gateway_url):
        task = asyncio.create_task(client.start("token"))
        ready = asyncio.create_task(client.wait_until_ready())
        try:
            await asyncio.wait({task, ready}, timeout=5.0, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()  # login or the gateway failed: raise it
            assert ready.done(), "the client did not get ready"
            yield Client(client, queue)
        finally:
            ready.cancel()
            await client.close()
            with contextlib.suppress(Exception):
                await task


@pytest.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[Client]:
    async with connected(fake) as client:
        yield client


async def test_json_answers_carry_the_exact_content_type(fake: FakeDiscord) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{fake.api_base}/users/@me", headers={"Authorization": "Bot x"}) as response,
    ):
        assert response.headers["Content-Type"] == "application/json"
        assert (await response.json())["id"] == fake.bot.id


async def test_login_identify_ready_and_guild(fake: FakeDiscord, bot: Client) -> None:
    guild = bot.client.get_guild(int(fake.guild_id))
    assert guild is not None and guild.me is not None
    assert guild.get_channel(int(fake.general.id)) is not None
    assert fake.identifies[0]["token"] == "token"
    assert [r.path for r in fake.requests[:2]] == ["/users/@me", "/oauth2/applications/@me"]


async def test_callback_after_three_seconds_is_unknown_interaction(
    fake: FakeDiscord, bot: Client, clock: FakeClock
) -> None:
    alice = fake.add_user("alice")
    await fake.slash("probe", alice)
    interaction = await bot.next_interaction()
    await clock.advance(3.5)
    with pytest.raises(discord.NotFound) as caught:
        await interaction.response.defer()
    assert caught.value.code == 10062


async def test_follow_up_after_fifteen_minutes_is_an_invalid_token(
    fake: FakeDiscord, bot: Client, clock: FakeClock
) -> None:
    alice = fake.add_user("alice")
    record = await fake.slash("probe", alice)
    interaction = await bot.next_interaction()
    await interaction.response.defer()
    assert record.callback_type == 5 and record.ack_real_seconds is not None
    await interaction.followup.send("in time")
    await clock.advance(15 * 60 + 1)
    with pytest.raises(discord.HTTPException) as caught:
        await interaction.followup.send("too late")
    assert caught.value.status == 401 and caught.value.code == 50027


async def test_first_follow_up_replaces_the_thinking_message(
    fake: FakeDiscord, bot: Client
) -> None:
    alice = fake.add_user("alice")
    record = await fake.slash("probe", alice)
    interaction = await bot.next_interaction()
    await interaction.response.defer(ephemeral=True)
    first = await interaction.followup.send("done", wait=True)
    second = await interaction.followup.send("more", ephemeral=False, wait=True)
    assert str(first.id) == record.original_message_id
    assert fake.messages[str(first.id)]["flags"] & 64  # stays ephemeral, like the deferral
    assert not fake.messages[str(second.id)]["flags"] & 64


async def test_upload_limits_and_file_count(fake: FakeDiscord, bot: Client) -> None:
    fake.attachment_size_limit = 1000
    channel = bot.client.get_channel(int(fake.general.id))
    assert isinstance(channel, discord.TextChannel)
    with pytest.raises(discord.HTTPException) as too_big:
        await channel.send(file=discord.File(io.BytesIO(b"x" * 1001), "big.bin"))
    assert too_big.value.status == 413 and too_big.value.code == 40005
    files = [discord.File(io.BytesIO(b"x"), f"{i}.bin") for i in range(11)]
    with pytest.raises(discord.HTTPException) as too_many:
        await channel.send(files=files)
    assert too_many.value.status == 400 and too_many.value.code == 30015
    ok = await channel.send(
        "two", files=[discord.File(io.BytesIO(b"ab"), f"{i}.png") for i in (1, 2)]
    )
    [upload] = fake.find_requests("POST", rf"/channels/{fake.general.id}/messages")[-1:]
    assert upload.json["content"] == "two" and [f.data for f in upload.files] == [b"ab", b"ab"]
    assert [a.filename for a in ok.attachments] == ["1.png", "2.png"]
    assert await ok.attachments[0].read() == b"ab"  # served by the fake CDN


async def test_channel_permissions_are_enforced(fake: FakeDiscord, bot: Client) -> None:
    muted = fake.add_channel("muted", bot_deny=SEND_MESSAGES)
    await fake.set_bot_deny(fake.general, ATTACH_FILES)
    channel = bot.client.get_partial_messageable(int(muted.id))
    with pytest.raises(discord.Forbidden) as caught:
        await channel.send("hello")
    assert caught.value.code == 50013
    general = bot.client.get_channel(int(fake.general.id))
    assert isinstance(general, discord.TextChannel)
    await fake.wait_until(lambda: not general.permissions_for(general.guild.me).attach_files)
    with pytest.raises(discord.Forbidden):
        await general.send(file=discord.File(io.BytesIO(b"x"), "x.png"))
    await general.send("text is still fine")


async def test_a_repeated_nonce_returns_the_first_message(fake: FakeDiscord, bot: Client) -> None:
    channel = bot.client.get_partial_messageable(int(fake.general.id))
    first = await channel.send("once", nonce="wbjob0")
    again = await channel.send("once", nonce="wbjob0")
    assert first.id == again.id
    assert len([m for m in fake.messages_in(fake.general) if m["content"] == "once"]) == 1


class _GoneSocket:
    """A gateway client killed a moment ago: its transport is closing, its session not
    yet dropped."""

    closed = False

    async def send_str(self, data: str) -> None:
        raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")

    async def close(self, **_: object) -> bool:
        return False


async def test_a_post_is_answered_whoever_has_left_the_gateway(
    fake: FakeDiscord, bot: Client
) -> None:
    gone = GatewayConnection(cast(web.WebSocketResponse, _GoneSocket()), ready=True)
    fake._connections.insert(0, gone)
    seen = asyncio.get_running_loop().create_future()

    async def on_message(message: discord.Message) -> None:
        if not seen.done():
            seen.set_result(message.id)

    bot.client.event(on_message)
    channel = bot.client.get_partial_messageable(int(fake.general.id))
    sent = await channel.send("still answered")
    assert await asyncio.wait_for(seen, 5) == sent.id  # the live session still hears it
    assert fake.errors == []


async def test_nonces_are_only_remembered_for_a_few_minutes(
    fake: FakeDiscord, bot: Client, clock: FakeClock
) -> None:
    channel = bot.client.get_partial_messageable(int(fake.general.id))
    first = await channel.send("twice", nonce="wbjob0")
    await clock.advance(fake.NONCE_WINDOW + 1)
    later = await channel.send("twice", nonce="wbjob0")
    assert later.id != first.id  # like Discord: a new message after the window
    assert len([m for m in fake.messages_in(fake.general) if m["content"] == "twice"]) == 2


async def test_history_pages_newest_first_around_an_anchor(fake: FakeDiscord, bot: Client) -> None:
    channel = bot.client.get_partial_messageable(int(fake.general.id))
    sent = [await channel.send(f"m{n}", nonce=f"n{n}") for n in range(6)]
    newest = [m.content async for m in channel.history(limit=3)]
    assert newest == ["m5", "m4", "m3"]
    after = [m.content async for m in channel.history(after=sent[1], limit=2)]
    assert after == ["m2", "m3"]  # discord.py turns them oldest first
    before = [m.content async for m in channel.history(before=sent[2], limit=10)]
    assert before == ["m1", "m0"]
    around = sorted([m.content async for m in channel.history(around=sent[3], limit=3)])
    assert around == ["m2", "m3", "m4"]
    [page] = fake.find_requests("GET", rf"/channels/{fake.general.id}/messages$")[:1]
    assert page.ok and all("nonce" not in m for m in page.response)
    await fake.set_bot_deny(fake.general, 1 << 16)  # no Read Message History: nothing
    assert [m async for m in channel.history(limit=5)] == []


async def test_rate_limit_with_via_is_retried_and_without_via_raises(
    fake: FakeDiscord, bot: Client
) -> None:
    channel = bot.client.get_partial_messageable(int(fake.general.id))
    pattern = rf"/channels/{fake.general.id}/messages"
    fake.fail_next("POST", pattern, 429, retry_after=0.01)
    message = await channel.send("after a 429")
    assert [r.status for r in fake.find_requests("POST", pattern)][-2:] == [429, 200]
    assert message.content == "after a 429"
    fake.fail_next("POST", pattern, 429, retry_after=0.01, via=False)
    with pytest.raises(discord.HTTPException) as caught:
        await channel.send("banned?")
    assert caught.value.status == 429


async def test_threads_from_messages_take_the_message_id(fake: FakeDiscord, bot: Client) -> None:
    channel = bot.client.get_channel(int(fake.general.id))
    assert isinstance(channel, discord.TextChannel)
    message = await channel.send("start")
    thread = await message.create_thread(name="results")
    assert thread.id == message.id and fake.channels[str(thread.id)].is_thread
    with pytest.raises(discord.HTTPException) as caught:
        await message.create_thread(name="again")
    assert caught.value.code == 160004


async def test_message_content_needs_the_intent_and_the_portal_switch(fake: FakeDiscord) -> None:
    fake.message_content_allowed = False
    alice = fake.add_user("alice")
    intents = discord.Intents.default()
    intents.message_content = True
    with pytest.raises(discord.PrivilegedIntentsRequired):
        async with connected(fake, intents):
            pass
    seen: list[discord.Message] = []
    async with connected(fake) as client:  # default intents: no message content

        async def on_message(message: discord.Message) -> None:
            seen.append(message)

        client.client.event(on_message)
        await fake.post_user_message(alice, "secret words")
        await fake.post_user_message(alice, "hello bot", mention_bot=True)
        await fake.wait_until(lambda: len(seen) == 2)
    assert seen[0].content == "" and "hello bot" in seen[1].content

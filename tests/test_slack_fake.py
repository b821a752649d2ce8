"""The fake Slack itself, driven by the REAL slack_bolt AsyncApp over Socket Mode and
the real slack_sdk AsyncWebClient: wire format, acks, uploads, rate limits, retries."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.clock import FakeClock
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, SIGN_IN_PAGE, FakeSlack, SlackChannel, SlackUser
from tests.image_corpus import solid

ACK_DEADLINE = 3.0  # Slack's window for acking commands, actions and views

# The shared Slack fixtures: slack, member, general.
pytest_plugins = ("tests.fakes.slack.fixtures",)


def web_client(slack: FakeSlack, **kw: Any) -> AsyncWebClient:
    return AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_base, **kw)


@contextlib.asynccontextmanager
async def bolt(slack: FakeSlack, app: AsyncApp) -> AsyncIterator[AsyncSocketModeHandler]:
    # Built inside the running loop (the handler's aiohttp session needs one).
    handler = AsyncSocketModeHandler(app, APP_TOKEN)
    await handler.connect_async()
    try:
        await slack.wait_connected()
        yield handler
    finally:
        await handler.close_async()


def new_app(slack: FakeSlack, **kw: Any) -> AsyncApp:
    # No signing secret: Bolt skips request verification for mode == "socket_mode".
    return AsyncApp(client=web_client(slack, **kw), signing_secret="")


async def test_answers_use_slacks_envelope_and_content_type(slack: FakeSlack) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            slack.api_base + "chat.postMessage",
            data={"channel": "C404", "text": "hi"},
            headers={"Authorization": f"Bearer {BOT_TOKEN}"},
        ) as response:
            assert response.status == 200  # errors are 200 with ok:false
            assert response.headers["Content-Type"] == "application/json; charset=utf-8"
            assert await response.json() == {"ok": False, "error": "channel_not_found"}
        async with http.post(slack.api_base + "auth.test") as response:
            assert (await response.json())["error"] == "not_authed"
        async with http.post(
            slack.api_base + "apps.connections.open",
            headers={"Authorization": f"Bearer {BOT_TOKEN}"},
        ) as response:
            assert (await response.json())["error"] == "not_allowed_token_type"


async def test_base_url_gets_its_trailing_slash(slack: FakeSlack) -> None:
    # slack_sdk joins base_url and the method with urljoin, so "http://h/api" would
    # call "http://h/auth.test"; slack_sdk 3.48 appends the missing "/" itself (the
    # spec, checked on 3.47, says it is required): keep the slash in settings anyway.
    client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_base.rstrip("/"))
    assert client.base_url == slack.api_base
    assert (await client.auth_test())["user_id"] == slack.bot_user_id
    assert [c.method for c in slack.calls] == ["auth.test"]


async def test_slash_command_is_acked_in_time_and_the_post_lands(
    slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    app = new_app(slack)
    posted = asyncio.Event()

    @app.command("/imagine")
    async def imagine(ack: Any, command: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await client.chat_postMessage(
            channel=command["channel_id"], text=f"on it: {command['text']}"
        )
        posted.set()

    async with bolt(slack, app):
        envelope = await slack.slash_command(member, general, "/imagine", "a red fox")
        ack = await slack.acked(envelope)
        await asyncio.wait_for(posted.wait(), 5)
    assert ack.latency < ACK_DEADLINE and ack.payload is None
    [message] = slack.bot_messages(general.id)
    assert message["text"] == "on it: a red fox"
    # Bolt resolves the bot identity with auth.test before the first listener runs.
    assert slack.calls_of("auth.test") and slack.calls_of("apps.connections.open")
    assert slack.errors == []


async def test_ack_with_text_carries_the_payload(slack: FakeSlack, general: SlackChannel) -> None:
    app = new_app(slack)

    @app.command("/wanbot")
    async def wanbot(ack: Any, respond: Any) -> None:
        await ack(text="usage: /wanbot help")
        await respond(text="later, through response_url", replace_original=False)

    bob = slack.add_user("bob")
    general.members.add(bob.id)
    async with bolt(slack, app):
        envelope = await slack.slash_command(bob, general, "/wanbot", "")
        ack = await slack.acked(envelope)
        async with asyncio.timeout(5):
            while not slack.world.responses:
                await asyncio.sleep(0.01)
    assert ack.payload is not None and ack.payload["text"] == "usage: /wanbot help"
    [response] = slack.world.responses
    assert response["url"] == envelope.payload["response_url"]
    assert response["text"] == "later, through response_url"


async def test_unhandled_event_is_not_acked_by_bolt(
    slack: FakeSlack, general: SlackChannel
) -> None:
    # The trap: no listener -> Bolt answers 404 -> no ack -> Slack redelivers.
    app = new_app(slack)
    async with bolt(slack, app):
        envelope = await slack.event({"type": "reaction_added", "user": "U1", "reaction": "x"})
        with pytest.raises(TimeoutError):
            await slack.acked(envelope, timeout=0.5)


async def test_file_upload_v2_lands_in_the_thread(slack: FakeSlack, general: SlackChannel) -> None:
    client = web_client(slack)
    root = await client.chat_postMessage(channel=general.id, text="Working on it")
    image = solid((64, 48))
    result = await client.files_upload_v2(
        channel=general.id,
        thread_ts=root["ts"],
        file=image,
        filename="wan-1.png",
        title="Result 1",
        alt_txt="a red fox",
    )
    file_id = result["file"]["id"]
    assert [f.id for f in slack.world.files_in(general.id, root["ts"])] == [file_id]
    stored = slack.world.files[file_id]
    assert stored.data == image and stored.mimetype == "image/png" and stored.title == "Result 1"
    assert slack.world.messages[(general.id, root["ts"])]["reply_count"] == 1
    # The upload returns no message ts: files.info has it under shares once shared.
    info = await client.files_info(file=file_id)
    [share] = info["file"]["shares"]["public"][general.id]
    assert share["thread_ts"] == root["ts"]
    [get_url] = slack.calls_of("files.getUploadURLExternal")
    assert get_url.args["length"] == str(len(image))  # sent in the query string


async def test_upload_into_a_channel_without_the_bot_is_not_in_channel(slack: FakeSlack) -> None:
    secret = slack.add_channel("secret", bot_member=False)
    client = web_client(slack)
    with pytest.raises(SlackApiError) as caught:
        await client.files_upload_v2(channel=secret.id, file=solid((8, 8)), filename="x.png")
    assert caught.value.response["error"] == "not_in_channel"
    with pytest.raises(SlackApiError) as caught:
        await client.chat_postMessage(channel=secret.id, text="hi")
    assert caught.value.response["error"] == "not_in_channel"


async def test_scripted_not_in_channel_and_ratelimited(
    slack: FakeSlack, general: SlackChannel
) -> None:
    client = web_client(slack)
    slack.fail_next("chat.postMessage", "not_in_channel")
    with pytest.raises(SlackApiError) as caught:
        await client.chat_postMessage(channel=general.id, text="x")
    assert caught.value.response.status_code == 200
    assert caught.value.response["error"] == "not_in_channel"
    assert (await client.chat_postMessage(channel=general.id, text="x"))["ok"]


async def test_429_without_a_retry_handler_surfaces_with_retry_after(
    slack: FakeSlack, general: SlackChannel
) -> None:
    client = web_client(slack)
    ts = (await client.chat_postMessage(channel=general.id, text="queued"))["ts"]
    slack.rate_limit_next("chat.update", retry_after=7)
    with pytest.raises(SlackApiError) as caught:
        await client.chat_update(channel=general.id, ts=ts, text="running")
    response = caught.value.response
    assert response.status_code == 429 and response["error"] == "ratelimited"
    assert response.headers["Retry-After"] == "7"
    assert len(slack.calls_of("chat.update")) == 1  # AsyncWebClient does not retry by default


async def test_429_on_chat_update_is_retried_after_retry_after(
    slack: FakeSlack, general: SlackChannel
) -> None:
    client = web_client(slack, retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)])
    ts = (await client.chat_postMessage(channel=general.id, text="queued"))["ts"]
    slack.rate_limit_next("chat.update", retry_after=1)
    started = time.monotonic()
    result = await client.chat_update(channel=general.id, ts=ts, text="running")
    elapsed = time.monotonic() - started
    assert result["ok"] and slack.world.messages[(general.id, ts)]["text"] == "running"
    first, second = slack.calls_of("chat.update")
    assert first.status == 429 and second.ok
    # The handler sleeps Retry-After plus up to 1 s of jitter (real time, not a clock).
    assert second.real_at - first.real_at >= 1.0 and elapsed >= 1.0


async def test_event_redelivered_keeps_its_event_id(
    slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    app = new_app(slack)
    seen: list[tuple[str, list[str] | None]] = []

    @app.event("app_mention")
    async def mention(body: dict[str, Any], context: Any, req: Any = None) -> None:
        seen.append((body["event_id"], None))

    @app.message()
    async def message() -> None:
        pass

    @app.middleware
    async def retries(req: Any, resp: Any, next: Any) -> Any:
        if req.body.get("type") == "event_callback" and req.body["event"]["type"] == "app_mention":
            seen.append((req.body["event_id"], req.headers.get("x-slack-retry-num")))
        return await next()

    async with bolt(slack, app):
        mention_env, message_env = await slack.mention(member, general, "draw a cat")
        first = await slack.acked(mention_env)
        await slack.acked(message_env)
        again = await slack.redeliver(mention_env)
        await slack.acked(again)
    assert mention_env.payload["event_id"] == again.payload["event_id"]
    assert again.envelope_id != mention_env.envelope_id and again.retry_attempt == 1
    assert first.latency < ACK_DEADLINE
    retry_nums = [num for _, num in seen if num is not None]
    assert retry_nums == [["0"], ["1"]]  # Bolt >= 1.29 copies retry_attempt as a header
    ids = {event_id for event_id, _ in seen}
    assert ids == {mention_env.payload["event_id"]}


async def test_block_action_shortcut_and_view_submission(
    slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    app = new_app(slack)
    views: list[str] = []
    submitted: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    @app.action("wan_reroll")
    async def reroll(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        await submitted.put({"action": body["actions"][0]["value"]})

    @app.shortcut("wan_edit")
    async def edit(ack: Any, shortcut: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        view = await client.views_open(
            trigger_id=shortcut["trigger_id"],
            view={
                "type": "modal",
                "callback_id": "wan_edit_modal",
                "title": {"type": "plain_text", "text": "Edit image"},
                "submit": {"type": "plain_text", "text": "Edit"},
                "private_metadata": f"{shortcut['channel']['id']}|{shortcut['message_ts']}",
                "blocks": [],
            },
        )
        views.append(view["view"]["id"])

    @app.view("wan_edit_modal")
    async def on_submit(ack: Any, view: dict[str, Any]) -> None:
        await ack(response_action="errors", errors={"prompt": "Describe the change"})
        [file] = view["state"]["values"]["images"]["files"]["files"]
        await submitted.put({"metadata": view["private_metadata"], "file": file["id"]})

    client = web_client(slack)
    card = await client.chat_postMessage(channel=general.id, text="Done", blocks=[])
    async with bolt(slack, app):
        click = await slack.block_action(member, general, card["ts"], "wan_reroll", "job-7")
        assert (await slack.acked(click)).latency < ACK_DEADLINE
        assert await asyncio.wait_for(submitted.get(), 5) == {"action": "job-7"}
        photo = slack.user_message(
            member, general, "look", files=[slack.add_file(member, "a.png", solid((8, 8)))]
        )
        await slack.acked(await slack.message_shortcut(member, general, photo["ts"]))
        await slack.wait_call("views.open")
        assert views, slack.calls_of("views.open")[0].response
        photo_file = slack.world.files[photo["files"][0]["id"]]
        values = {"images": {"files": slack.file_input([photo_file])}}
        ack = await slack.acked(await slack.view_submission(member, views[0], values))
        assert await asyncio.wait_for(submitted.get(), 5) == {
            "metadata": f"{general.id}|{photo['ts']}",
            "file": photo_file.id,
        }
    assert ack.payload == {"response_action": "errors", "errors": {"prompt": "Describe the change"}}


async def test_trigger_ids_expire_and_work_once() -> None:
    clock = FakeClock()
    async with FakeSlack(clock=clock) as slack:
        client = web_client(slack)
        view = {"type": "modal", "title": {"type": "plain_text", "text": "Imagine"}, "blocks": []}
        trigger = slack.issue_trigger("U1")
        assert (await client.views_open(trigger_id=trigger, view=view))["ok"]
        with pytest.raises(SlackApiError) as caught:
            await client.views_open(trigger_id=trigger, view=view)
        assert caught.value.response["error"] == "exchanged_trigger_id"
        late = slack.issue_trigger("U1")
        await clock.advance(3.5)
        with pytest.raises(SlackApiError) as caught:
            await client.views_open(trigger_id=late, view=view)
        assert caught.value.response["error"] == "expired_trigger_id"


async def test_private_files_need_the_bearer_token(
    slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    image = solid((16, 16))
    file = slack.add_file(member, "cat.png", image)
    async with aiohttp.ClientSession() as http:
        async with http.get(
            file.url_private_download, headers={"Authorization": f"Bearer {BOT_TOKEN}"}
        ) as r:
            assert r.status == 200 and await r.read() == image
        async with http.get(file.url_private_download) as r:
            # Slack's answer to a missing token: a 200 sign-in page, not a 401.
            assert r.status == 200 and r.content_type == "text/html"
            assert await r.read() == SIGN_IN_PAGE
        slack.file_script.sign_in_page.add(file.id)
        async with http.get(
            file.url_private, headers={"Authorization": f"Bearer {BOT_TOKEN}"}
        ) as r:
            assert await r.read() == SIGN_IN_PAGE


async def test_a_hung_call_is_recorded_and_released_on_close(
    slack: FakeSlack, general: SlackChannel
) -> None:
    client = web_client(slack, timeout=30)
    slack.hang_next("chat.postMessage")
    task = asyncio.create_task(client.chat_postMessage(channel=general.id, text="x"))
    async with asyncio.timeout(5):
        while not slack.hung:
            await asyncio.sleep(0.01)
    assert not task.done() and slack.bot_messages(general.id) == []
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_socket_reconnects_after_disconnect(
    slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    app = new_app(slack)

    @app.command("/imagine")
    async def imagine(ack: Any) -> None:
        await ack()

    async with bolt(slack, app):
        first_socket = slack.sockets[0]
        await slack.disconnect_socket()
        async with asyncio.timeout(5):
            while (
                not slack.sockets
                or slack.sockets[-1] is first_socket
                or first_socket in slack.sockets
            ):
                await asyncio.sleep(0.01)
        ack = await slack.acked(await slack.slash_command(member, general))
    assert ack.latency < ACK_DEADLINE
    assert len(slack.calls_of("apps.connections.open")) >= 1


async def test_the_sdk_pings_are_answered_and_silence_means_reconnect(
    slack: FakeSlack, general: SlackChannel
) -> None:
    app = new_app(slack)
    handler = AsyncSocketModeHandler(app, APP_TOKEN, ping_interval=0.2)
    await handler.connect_async()
    try:
        # The SDK pings "sdk-ping-pong:<t>" at once; the fake's pong records the time.
        async with asyncio.timeout(5):
            while handler.client.last_ping_pong_time is None:
                await asyncio.sleep(0.01)
        # A link that stops answering pings: the SDK's ws_connect(heartbeat=ping_interval)
        # closes it and its monitor opens a new one (apps.connections.open again).
        slack.answer_pings = False
        first = slack.sockets[0]
        async with asyncio.timeout(5):
            while len(slack.calls_of("apps.connections.open")) < 2:
                await asyncio.sleep(0.01)
        assert first.closed or first not in slack.sockets
    finally:
        await handler.close_async()


async def test_work_after_the_ack_does_not_delay_it(
    slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    app = new_app(slack)
    release = asyncio.Event()
    finished = asyncio.Event()

    @app.command("/imagine")
    async def imagine(ack: Any) -> None:
        await ack()
        await release.wait()  # a slow job: Bolt has already sent the ack
        finished.set()

    async with bolt(slack, app):
        ack = await slack.acked(await slack.slash_command(member, general, text="slow"))
        assert not finished.is_set()
        release.set()
        await asyncio.wait_for(finished.wait(), 5)
    assert ack.latency < ACK_DEADLINE


async def test_fifty_commands_at_once_are_all_acked(
    slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    app = new_app(slack)

    @app.command("/imagine")
    async def imagine(ack: Any) -> None:
        await ack()

    async with bolt(slack, app):
        envelopes = await asyncio.gather(
            *(slack.slash_command(member, general, text=f"cat {i}") for i in range(50))
        )
        acks = await asyncio.gather(*(slack.acked(e) for e in envelopes))
    assert len({a.envelope_id for a in acks}) == 50
    assert max(a.latency for a in acks) < ACK_DEADLINE


async def test_the_other_web_methods(
    slack: FakeSlack, general: SlackChannel, member: SlackUser
) -> None:
    client = web_client(slack)
    boss = slack.add_user("boss", owner=True)
    info = (await client.users_info(user=boss.id))["user"]
    assert info["is_admin"] and info["is_owner"] and not info["is_primary_owner"]
    assert not (await client.users_info(user=member.id))["user"]["is_admin"]

    channel = (await client.conversations_info(channel=general.id))["channel"]
    assert channel["is_member"] and channel["name"] == "general"
    root = slack.user_message(member, general, "a photo")
    reply = await client.chat_postMessage(channel=general.id, thread_ts=root["ts"], text="card")
    thread = (await client.conversations_replies(channel=general.id, ts=root["ts"]))["messages"]
    assert [m["ts"] for m in thread] == [root["ts"], reply["ts"]]
    history = (await client.conversations_history(channel=general.id))["messages"]
    assert [m["ts"] for m in history] == [root["ts"]]  # replies stay in their thread

    ephemeral = await client.chat_postEphemeral(channel=general.id, user=member.id, text="only you")
    assert slack.world.ephemerals[0]["ts"] == ephemeral["message_ts"]
    assert slack.world.ephemerals[0]["to"] == member.id

    await client.chat_delete(channel=general.id, ts=reply["ts"])
    assert (general.id, reply["ts"]) not in slack.world.messages
    with pytest.raises(SlackApiError) as caught:
        await client.chat_delete(channel=general.id, ts=root["ts"])  # not the bot's
    assert caught.value.response["error"] == "cant_delete_message"

    trigger = slack.issue_trigger(member.id)
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "Imagine"}, "blocks": []}
    opened = (await client.views_open(trigger_id=trigger, view=modal))["view"]
    updated = await client.views_update(
        view_id=opened["id"], hash=opened["hash"], view={**modal, "private_metadata": "C1|1.2"}
    )
    assert updated["view"]["private_metadata"] == "C1|1.2"
    with pytest.raises(SlackApiError) as caught:
        await client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal)
    assert caught.value.response["error"] == "hash_conflict"
    with pytest.raises(SlackApiError) as caught:
        await client.views_open(
            trigger_id=slack.issue_trigger(member.id),
            view={**modal, "title": {"type": "plain_text", "text": "x" * 25}},
        )
    assert caught.value.response["error"] == "invalid_arguments"  # title over 24 chars


async def test_the_upload_url_takes_multipart_too(slack: FakeSlack, general: SlackChannel) -> None:
    client = web_client(slack)
    url = await client.files_getUploadURLExternal(filename="r.png", length=10)
    form = aiohttp.FormData()
    image = solid((4, 4))
    form.add_field("file", image, filename="r.png", content_type="image/png")
    async with aiohttp.ClientSession() as http, http.post(url["upload_url"], data=form) as r:
        assert r.status == 200 and await r.text() == f"OK - {len(image)}"
    async with aiohttp.ClientSession() as http, http.post(url["upload_url"], data=b"x") as r:
        assert r.status == 404  # an upload URL works once
    done = await client.files_completeUploadExternal(
        files=[{"id": url["file_id"], "title": "r"}], channel_id=general.id
    )
    assert done["files"][0]["id"] == url["file_id"]
    assert slack.world.files_in(general.id)[0].data == image

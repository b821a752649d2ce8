"""The Bolt app: a listener for every command, shortcut, action, view and subscribed
event of the manifest. Each acks at once (Slack's 3 s window) and leaves the work to
SlackFront as a kept task; events are acked by Bolt itself and de-duplicated here
(Slack redelivers an event it thinks was missed, and one post that mentions the bot
arrives both as `app_mention` and as a `message` [bolt-python#925]).

De-duplication is in two steps: this process's memory first (free), then the database's
SeenEvents keyed on the post (channel, ts), which every process shares and which
survives a restart. With several processes each holding a Socket Mode connection, Slack
hands each envelope to one of them, but a retry may land at another, and the two events
of one post may land at two; the post's key catches all three. Slash commands, shortcuts,
buttons and form submissions are not retried by Slack (a late ack shows the user an
error; they try again with a new trigger_id), so each reaches one process once: they
skip the database and keep the 3 s path (views.open) free of a round trip.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.app.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.errors import NotAllowed
from bot.core.ports import SeenEvents
from bot.slack import modals
from bot.slack.blocks import ACTION_PREFIX, parse_action
from bot.slack.commands import run_wanbot
from bot.slack.front import SlackFront
from bot.slack.inputs import image_files
from bot.slack.manifest import EDIT_SHORTCUT, IMAGINE, WANBOT

log = logging.getLogger(__name__)

_SEEN_LIMIT = 20_000  # events remembered (Slack's retries come within ~5 minutes)
PLATFORM = "slack"  # SeenEvents' platform; its keys are posts, "channel:ts"


class Seen:
    """Keys seen recently, oldest forgotten first."""

    def __init__(self, limit: int = _SEEN_LIMIT) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._limit = limit

    def first_time(self, key: str) -> bool:
        if key in self._keys:
            return False
        self._keys[key] = None
        while len(self._keys) > self._limit:
            self._keys.popitem(last=False)
        return True


def build_app(front: SlackFront, client: AsyncWebClient, seen_events: SeenEvents) -> AsyncApp:
    # Socket Mode needs no signing secret: Bolt skips verification for it.
    app = AsyncApp(client=client, signing_secret="", process_before_response=False)
    events = Seen()
    posts = Seen()

    async def first_everywhere(key: str) -> bool:
        """No process has handled `key` yet (nor this one before a restart). When the
        database cannot answer, the post is handled anyway, with a log line: dropping it
        would leave the person unanswered, while a duplicate needs the same post at two
        processes during the same fault, and the job's own store calls then fail with an
        answer to the person."""
        try:
            return await seen_events.first_time(PLATFORM, key)
        except Exception as exc:
            log.warning("could not check Slack post %s in the database (%s): handling it", key, exc)
            return True

    async def member_or_told(channel: str, respond: Any) -> bool:
        """The bot is in `channel`; else the person is told how to invite it."""
        try:
            await front.require_member(channel)
        except NotAllowed as exc:
            await respond(response_type="ephemeral", text=exc.message)
            return False
        return True

    # ------------------------------------------------------------ /imagine
    @app.command(IMAGINE)
    async def imagine(ack: Any, command: dict[str, Any], respond: Any) -> None:
        await ack()
        text = str(command.get("text") or "").strip()
        channel = str(command["channel_id"])
        if not text:
            # The trigger lives 3 s: the modal opens now, not in a queued task; a form
            # that could not post anything is not opened at all.
            if not await member_or_told(channel, respond):
                return
            view = modals.imagine_modal(front.chat.deps.provider.capabilities, channel)
            await client.views_open(trigger_id=command["trigger_id"], view=view)
            return

        async def conv() -> Any:
            return await front.conversation(
                command["team_id"], command["user_id"], channel, respond=respond
            )

        front.spawn(front.guarded(conv, lambda c: front.imagine_text(c, text)), "slack-imagine")

    @app.view(modals.IMAGINE_MODAL)
    async def imagine_submitted(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        team = str((body.get("team") or {}).get("id") or view.get("team_id") or "")
        problems = front.modal_problems(view, team)
        if problems:
            await ack(response_action="errors", errors=problems)
            return
        await ack()
        user = str(body["user"]["id"])
        channel = str(modals.metadata(view).get("c") or "")
        count = modals.value(view, "count")

        async def conv() -> Any:
            return await front.conversation(team, user, channel)

        async def work(c: Any) -> None:
            await front.start(
                c,
                modals.value(view, "prompt"),
                modals.value(view, "negative"),
                modals.value(view, "aspect"),
                int(count) if count else None,
                image_files(modals.files(view)),
            )

        front.spawn(front.guarded(conv, work), "slack-imagine-modal")

    # ------------------------------------------------------------- /wanbot
    @app.command(WANBOT)
    async def wanbot(ack: Any, command: dict[str, Any], respond: Any) -> None:
        await ack()
        text = str(command.get("text") or "")

        async def conv() -> Any:
            return await front.conversation(
                command["team_id"], command["user_id"], command["channel_id"], respond=respond
            )

        front.spawn(front.guarded(conv, lambda c: run_wanbot(front, c, text)), "slack-wanbot")

    # ------------------------------------------------------ mentions, messages
    async def mentioned(body: dict[str, Any], event: dict[str, Any], bot_user_id: str) -> None:
        event_id = body.get("event_id")
        if event_id and not events.first_time(str(event_id)):
            return  # delivered again: Slack thought the first was missed
        if event.get("bot_id") or event.get("user") in (None, bot_user_id):
            return
        channel, ts = str(event.get("channel")), str(event.get("ts"))
        post = f"{channel}:{ts}"
        if not posts.first_time(post):
            return  # the same post as app_mention and as message: one job
        thread = str(event.get("thread_ts") or ts)
        team = str(body.get("team_id") or event.get("team") or "")

        async def conv() -> Any:
            return await front.conversation(team, str(event["user"]), channel, thread_ts=thread)

        async def once() -> None:
            # In the kept task: the database round trip is work after the ack.
            if await first_everywhere(post):
                await front.guarded(conv, lambda c: front.mention(c, event, bot_user_id))

        front.spawn(once(), "slack-mention")

    @app.event("app_mention")
    async def app_mention(body: dict[str, Any], event: dict[str, Any], context: Any) -> None:
        await mentioned(body, event, str(context.bot_user_id))

    @app.event("message")
    async def message(body: dict[str, Any], event: dict[str, Any], context: Any) -> None:
        # Every message.* subscription lands here; only those that mention the bot
        # matter (an upload with a mention may come only as a file_share message).
        bot = str(context.bot_user_id)
        if f"<@{bot}" in str(event.get("text") or "") and event.get("subtype") in (
            None,
            "file_share",
            "thread_broadcast",
        ):
            await mentioned(body, event, bot)

    # --------------------------------------------------- Edit image shortcut
    @app.shortcut(EDIT_SHORTCUT)
    async def edit_shortcut(ack: Any, shortcut: dict[str, Any], respond: Any) -> None:
        await ack()
        message = shortcut.get("message") or {}
        files = image_files(message.get("files"))
        caps = front.chat.deps.provider.capabilities
        if not files:
            await respond(
                response_type="ephemeral",
                text="That message has no image I can edit. Use Edit image on a message "
                "with an image, or /imagine with no text to upload one.",
            )
            return
        channel = str(shortcut["channel"]["id"])
        if not await member_or_told(channel, respond):
            return
        root = str(message.get("thread_ts") or shortcut["message_ts"])
        ids = [str(f["id"]) for f in files[: caps.max_input_images]]
        view = modals.prompt_modal(
            modals.EDIT_MODAL,
            "Edit image",
            {"c": channel, "t": root, "f": ids},
            caps.max_prompt_chars,
        )
        await client.views_open(trigger_id=shortcut["trigger_id"], view=view)

    async def prompt_submitted(
        ack: Any,
        body: dict[str, Any],
        view: dict[str, Any],
        images: int,
        work: Callable[[Any, str], Awaitable[Any]],
        name: str,
    ) -> None:
        """A prompt form (edit an image): its instant checks answer in the form; the
        work runs after the acknowledgement."""
        meta = modals.metadata(view)
        prompt = modals.value(view, "prompt") or ""
        problems = front.prompt_problems(prompt, images)
        if problems:
            await ack(response_action="errors", errors=problems)
            return
        await ack()
        team = str((body.get("team") or {}).get("id") or view.get("team_id") or "")

        async def conv() -> Any:
            return await front.conversation(
                team, str(body["user"]["id"]), str(meta.get("c")), thread_ts=meta.get("t")
            )

        front.spawn(front.guarded(conv, lambda c: work(c, prompt)), name)

    @app.view(modals.EDIT_MODAL)
    async def edit_submitted(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        ids = [str(i) for i in modals.metadata(view).get("f") or []]

        async def work(c: Any, prompt: str) -> None:
            files = await front.files_by_id(ids)
            await front.start(c, prompt, None, None, 1, files)

        await prompt_submitted(ack, body, view, len(ids), work, "slack-edit")

    # ---------------------------------------------------------------- buttons
    @app.action(re.compile(f"^{ACTION_PREFIX}"))
    async def clicked(ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        await ack()
        kind, job_id, index = parse_action(str(action["action_id"]), str(action.get("value") or ""))
        message = body.get("message") or {}
        channel = str((body.get("channel") or {}).get("id") or "")
        if kind == "edit":
            caps = front.chat.deps.provider.capabilities
            meta = {
                "j": job_id,
                "i": index,
                "c": channel,
                "t": message.get("thread_ts") or message.get("ts"),
            }
            view = modals.prompt_modal(
                modals.EDIT_RESULT_MODAL,
                f"Edit image {(index or 0) + 1}",
                meta,
                caps.max_prompt_chars,
            )
            await client.views_open(trigger_id=body["trigger_id"], view=view)
            return
        team = str((body.get("team") or {}).get("id") or "")
        thread = message.get("thread_ts") or message.get("ts")

        async def conv() -> Any:
            return await front.conversation(
                team, str(body["user"]["id"]), channel, thread_ts=thread, respond=respond
            )

        front.spawn(
            front.guarded(conv, lambda c: front.button(c, kind, job_id, message)), f"slack-{kind}"
        )

    @app.view(modals.EDIT_RESULT_MODAL)
    async def edit_result_submitted(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        meta = modals.metadata(view)

        async def work(c: Any, prompt: str) -> None:
            await front.edit_result(c, str(meta.get("j")), int(meta.get("i") or 0), prompt)

        await prompt_submitted(ack, body, view, 1, work, "slack-edit-result")

    return app

"""The Slack side of every use case: turn a Slack request into a conversation, ask the
chat layer, draw its answer. The Bolt listeners (app.py) ack first and hand the work
here; no flow of its own lives here.

Every error gets one private answer: a WanbotError (a refusal, a quota, a bad image)
in the chat layer's words; anything else is logged with an error id that the user
is given.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.chat import cards
from bot.chat.actions import result_index
from bot.chat.meta import ChatMeta
from bot.chat.options import CommandError, parse_imagine, tokenize
from bot.chat.service import ChatService
from bot.chat.wording import refusal
from bot.core.clock import Clock
from bot.core.errors import NotAllowed, WanbotError
from bot.core.models import Job, ServerReport, Space
from bot.core.tasks import TaskGroup
from bot.core.validation import check_options
from bot.reports.chart import FILENAME as CHART_FILENAME
from bot.reports.chart import spend_chart
from bot.slack import modals
from bot.slack.admins import SlackAdmins
from bot.slack.conversation import Respond, SlackConversation
from bot.slack.inputs import SlackFile, SlackInputs, described, image_files
from bot.slack.style import STYLE
from bot.slack.surface import SlackRef, SlackSurface, slack_error

log = logging.getLogger(__name__)

MEMBER_SECONDS = 300.0  # how long "the bot is in this channel" is believed
Card_or_None = cards.Card | str | None  # what a use case answers privately
_SLACK_USER = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_SLACK_CHANNEL = re.compile(r"<#([CG][A-Z0-9]+)(?:\|[^>]*)?>")


def not_in_channel_text(channel_id: str) -> str:
    return (
        f"I'm not in {STYLE.channel(channel_id)} yet, so I can't post images there. Invite "
        "me with `/invite @wanbot` in the channel (or mention @wanbot and choose Invite), "
        "then try again. Nothing was charged."
    )


IMAGES_NEED_A_MESSAGE = (
    "Slash commands can't carry images. To edit or combine images, share them in a "
    "message that mentions @wanbot, use the Edit image shortcut on a message with an "
    "image, or run /imagine with no text for the form."
)


def plain_ids(text: str) -> str:
    """`<@U1|alice>` -> `<@U1>` and `<#C1|general>` -> `C1`, for the option parser."""
    return _SLACK_CHANNEL.sub(r"\1", _SLACK_USER.sub(r"<@\1>", text))


class SlackFront:
    def __init__(
        self,
        chat: ChatService,
        surface: SlackSurface,
        inputs: SlackInputs,
        admins: SlackAdmins,
        clock: Clock,
        tasks: TaskGroup,
    ) -> None:
        self.chat = chat
        self.surface = surface
        self.inputs = inputs
        self.admins = admins
        self.clock = clock
        self.tasks = tasks
        self._members: dict[str, float] = {}  # channel -> believed until (monotonic)

    @property
    def client(self) -> Any:
        return self.surface.client

    # ------------------------------------------------------------------ plumbing
    def spawn(self, work: Awaitable[None], name: str) -> None:
        """Work after the ack: kept, its errors answered or logged, cancelled on close."""
        self.tasks.create_task(work, name=name)  # type: ignore[arg-type]

    async def conversation(
        self,
        team_id: str,
        user_id: str,
        channel_id: str,
        *,
        thread_ts: str | None = None,
        respond: Respond | None = None,
    ) -> SlackConversation:
        return SlackConversation(
            surface=self.surface,
            team_id=team_id,
            user_id=user_id,
            channel_id=channel_id,
            is_admin=await self.admins.is_admin(user_id),
            thread_ts=thread_ts,
            respond=respond,
            host_session=self.inputs.session,
        )

    async def guarded(
        self,
        make_conv: Callable[[], Awaitable[SlackConversation]],
        work: Callable[[SlackConversation], Awaitable[Card_or_None]],
    ) -> None:
        """Run `work`; whatever it returns (a card or a sentence) is answered privately,
        and so is any error."""
        conv: SlackConversation | None = None
        try:
            conv = await make_conv()
            shown = await work(conv)
            if shown is not None:
                await conv.answer(shown)
        except Exception as exc:
            if conv is None:
                log.exception("a Slack request failed before it was understood")
                return
            text = self.error_text(exc)
            try:
                await conv.answer(text)
            except Exception as answer_exc:  # nobody left to tell: the log has it
                log.warning("could not tell the user about an error: %s", answer_exc)

    def error_text(self, exc: BaseException) -> str:
        if isinstance(exc, WanbotError):
            return refusal(exc, STYLE, self.clock.now())
        if isinstance(exc, CommandError):
            return f"I can't read that: {exc}"
        error_id = secrets.token_hex(4)
        log.error("unexpected error in a Slack request (error id %s)", error_id, exc_info=exc)
        return (
            "Sorry, something went wrong on our side. If it keeps happening, give a "
            f"workspace admin this error id: `{error_id}`."
        )

    async def require_member(self, channel_id: str) -> None:
        """The bot can post in the channel (a DM always works)."""
        if channel_id.startswith("D"):
            return
        now = self.clock.monotonic()
        if self._members.get(channel_id, 0.0) > now:
            return
        try:
            info = await self.client.conversations_info(channel=channel_id)
            member = bool(info["channel"].get("is_member"))
        except SlackApiError as exc:
            if slack_error(exc) not in ("channel_not_found", "not_in_channel"):
                raise
            member = False
        if not member:
            self._members.pop(channel_id, None)
            raise NotAllowed(not_in_channel_text(channel_id), code="not_in_channel")
        self._members[channel_id] = now + MEMBER_SECONDS

    def normalize(self, team_id: str) -> bool:
        config = self.chat.configs.peek(Space(platform="slack", id=team_id))
        return config.normalize_images if config is not None else True

    # --------------------------------------------------------------- start a job
    async def start(
        self,
        conv: SlackConversation,
        prompt: str | None,
        negative: str | None,
        aspect: str | None,
        count: int | None,
        files: Sequence[SlackFile] = (),
        *,
        parent_job_id: str | None = None,
    ) -> Job:
        """Instant checks, the bot's place, then (with images) hosting, the quota
        pre-check and the download, then the chat layer's start."""
        options = self.chat.check(
            prompt,
            negative,
            aspect,
            count,
            described(files),
            normalize=self.normalize(conv.team_id),
        )
        await self.require_member(conv.channel_id)
        sources = described(files)
        conv.input_files = [str(f["id"]) for f in files if f.get("id")]
        return await self.chat.starter.start(
            conv, options, sources, parent_job_id=parent_job_id, fetch=self.inputs.fetcher
        )

    async def edit_result(
        self, conv: SlackConversation, job_id: str, index: int, prompt: str
    ) -> Job:
        """Edit result image `index` of a job: the posted Slack file (the provider's
        links are not kept once the results are posted)."""
        job = await self.chat.actions.job_for(conv, job_id)
        posted = [] if ChatMeta.of(job).results_deleted else SlackRef.of(job).slack_file_ids
        files = await self.files_by_id(posted)
        mine = [f for f in files if result_index(job.id, str(f.get("name") or "")) == index]
        if not mine:
            # Deleted, or never posted: the chat layer says which, in its words.
            return await self.chat.actions.edit_result(conv, job_id, index, prompt, None)
        return await self.start(conv, prompt, None, None, 1, mine[:1], parent_job_id=job.id)

    async def imagine_text(
        self, conv: SlackConversation, text: str, files: Sequence[SlackFile] = ()
    ) -> None:
        command = parse_imagine(tokenize(plain_ids(text)))
        if command.images:
            raise CommandError(IMAGES_NEED_A_MESSAGE)
        await self.start(
            conv, command.prompt, command.negative, command.aspect, command.count, files
        )

    async def mention(
        self, conv: SlackConversation, event: Mapping[str, Any], bot_user_id: str
    ) -> None:
        """A message that mentions the bot: its images (or, in a thread, the parent's)
        with the rest of the text as the prompt."""
        text = re.sub(
            rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", str(event.get("text") or "")
        )
        files = image_files(event.get("files"))
        thread_ts = event.get("thread_ts")
        if not files and thread_ts and thread_ts != event.get("ts"):
            files = await self.thread_parent_images(conv.channel_id, str(thread_ts))
        if not text.strip() and not files:
            raise CommandError(
                "tell me what to draw: mention me with a prompt, e.g. `@wanbot a red fox "
                "in the snow --aspect 16:9`, or with an image and what to change"
            )
        await self.imagine_text(conv, text, files)

    async def thread_parent_images(self, channel_id: str, thread_ts: str) -> list[SlackFile]:
        response = await self.client.conversations_replies(
            channel=channel_id, ts=thread_ts, limit=1
        )
        messages = response.get("messages") or []
        return image_files(messages[0].get("files")) if messages else []

    def send_chart(self, user_id: str, report: ServerReport) -> None:
        """The spend chart of `/wanbot quota report`, to the admin by direct message
        (an ephemeral answer cannot carry a file); drawn on the image pool."""
        self.spawn(self._send_chart(user_id, report), "slack-chart")

    async def _send_chart(self, user_id: str, report: ServerReport) -> None:
        try:
            deps = self.chat.deps
            png = await spend_chart(report, now=deps.clock.now(), executor=deps.image_executor)
            opened = await self.client.conversations_open(users=user_id)
            await self.client.files_upload_v2(
                channel=opened["channel"]["id"],
                file=png,
                filename=CHART_FILENAME,
                title="Image spend this month",
                initial_comment="The chart of your `/wanbot quota report`.",
            )
        except Exception:  # the numbers were answered already; the picture is extra
            log.warning("could not send the spend chart to %s", user_id, exc_info=True)

    async def files_by_id(self, file_ids: Sequence[str]) -> list[SlackFile]:
        """The files that still exist (a deleted one is left out)."""
        found = []
        for file_id in file_ids:
            try:
                found.append((await self.client.files_info(file=file_id))["file"])
            except SlackApiError as exc:
                if slack_error(exc) not in ("file_not_found", "file_deleted"):
                    raise
        return found

    # ------------------------------------------------------------------ modals
    def modal_problems(self, view: dict[str, Any], team_id: str) -> dict[str, str]:
        """The imagine modal's instant checks, as Slack's per-block errors."""
        count_text = modals.value(view, "count")
        try:
            self.chat.check(
                modals.value(view, "prompt"),
                modals.value(view, "negative"),
                modals.value(view, "aspect"),
                int(count_text) if count_text else None,
                described(image_files(modals.files(view))),
                normalize=self.normalize(team_id),
            )
        except WanbotError as exc:
            problems = getattr(exc, "problems", None) or [str(exc)]
            return {"prompt": "; ".join(problems)[:1900]}
        return {}

    def prompt_problems(self, prompt: str | None, images: int) -> dict[str, str]:
        try:
            check_options(prompt, None, None, 1, images, self.chat.deps.provider.capabilities)
        except WanbotError as exc:
            problems = getattr(exc, "problems", None) or [str(exc)]
            return {"prompt": "; ".join(problems)[:1900]}
        return {}

    # ----------------------------------------------------------------- buttons
    async def button(
        self, conv: SlackConversation, kind: str, job_id: str, message: Mapping[str, Any]
    ) -> Card_or_None:
        """A result (or failure) card's button; `message`: the card clicked."""
        card_ts = message.get("ts")
        actions = self.chat.actions
        if kind == "info":
            return await actions.info(conv, job_id)
        if kind == "delete":
            job = await actions.job_for(conv, job_id)

            async def remove() -> None:
                await self.surface.delete_results(job, card_ts)

            await actions.delete(conv, job_id, remove)
            return None
        if kind == "reroll":
            await self.require_member(conv.channel_id)
            await actions.reroll(conv, job_id)
            return None
        if kind == "retry":
            await self.require_member(conv.channel_id)
            await actions.retry(conv, job_id)
            if card_ts:
                # Tried again: the button goes, so the card cannot start a second job.
                kept = [b for b in message.get("blocks") or [] if b.get("type") != "actions"]
                with contextlib.suppress(SlackApiError):
                    await self.client.chat_update(
                        channel=conv.channel_id,
                        ts=card_ts,
                        blocks=kept,
                        text=message.get("text") or "",
                    )
            return None
        raise CommandError(f"unknown button {kind!r}")

    # ----------------------------------------------------------------- /wanbot
    def help_card(self) -> cards.Card:
        return cards.help_card(
            self.chat.deps.provider.capabilities,
            STYLE,
            imagine=(
                "`/imagine PROMPT [--negative TEXT] [--aspect 16:9] [-n 1-4]`, or `/imagine` "
                "alone for a form that also takes images"
            ),
            edit_how=(
                "Mention @wanbot in a message with up to 3 images and say what to change; "
                "mention it in the thread of a message with an image to edit that image; "
                "or use the *Edit image* shortcut (⋮ on any message with an image)."
            ),
        )

"""SlackSurface: where a Slack job's cards and images go (the chat layer's
`ChatSurface`).

Each job has a status message in its thread (the thread of the mention or of the
shortcut's message; for a slash command the status message is a new channel message
that becomes the thread root), edited with `chat.update` at the chat layer's
throttled rate. Results are uploaded with `files_upload_v2` into that thread, then a
card with the buttons is posted beside them (a file share carries no blocks when it
has a comment [docs.slack.dev/reference/methods/files.completeUploadExternal]).

Posting once: result files are named after the job (`wan_<job>_<n>.png`) and the card
carries a block id with the job id; the file ids and the card's ts are stored with the
job. A job this process did not see before its delivery (recovered after a restart)
is first looked for in its thread with `conversations.replies` (uploads return no
message ts [python-slack-sdk#1329]).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.chat.actions import result_filename, result_index, url_filename
from bot.chat.cards import Card, result_card
from bot.chat.meta import ChatMeta
from bot.chat.surface import DeliveryProblem, InputSources, Posted
from bot.chat.throttle import Tuning
from bot.chat.wording import clip, plural
from bot.core.clock import Clock
from bot.core.models import ErrorKind, Job, ResultImage, UserError
from bot.core.validation import Fetcher, ImageMeta, ImageSource
from bot.slack import blocks
from bot.slack.style import STYLE

log = logging.getLogger(__name__)

# chat.update is Tier 3 (about 50 a minute per workspace, shared by every job) and
# chat.postMessage about 1 a second per channel [docs.slack.dev/apis/web-api/
# rate-limits]: fewer, larger steps than Discord's per-message limit allows.
SLACK = Tuning(min_interval=15.0, min_step=25, eta_shift=60.0, eta_ratio=0.25)
REPLIES_SCAN = 200
_UPLOADED_LIMIT = 1000  # thread messages searched for an earlier post of the results

# Upload and post errors that retrying cannot fix, told in facts the user reads.
_PERMANENT = {
    "not_in_channel": (
        "I was removed from this channel before I could post the images. Invite me "
        "back with `/invite @wanbot` and use Try again."
    ),
    "channel_not_found": "The channel was deleted or I can no longer see it.",
    "is_archived": "The channel was archived before I could post the images.",
    "thread_not_found": "The thread was deleted before I could post the images.",
    "file_upload_size_restricted": "This workspace does not allow files this large.",
    "file_uploads_disabled": "This workspace does not allow file uploads by apps.",
    "file_uploads_except_images_disabled": "This workspace does not allow these uploads.",
    "restricted_action": "A workspace admin does not allow me to post here.",
}


class SlackRef(BaseModel):
    """Where a Slack job's messages are: its typed reference, stored with the job."""

    model_config = ConfigDict(extra="ignore")

    slack_channel: str = ""  # defaults to the requester's channel
    slack_thread_ts: str | None = None  # the thread the job's posts go in
    slack_status_ts: str | None = None
    slack_file_ids: list[str] = Field(default_factory=list)
    slack_result_ts: str | None = None  # the card with the buttons
    slack_input_files: list[str] = Field(default_factory=list)  # for Reroll with images

    @classmethod
    def of(cls, job: Job) -> SlackRef:
        ref = cls.model_validate(job.delivery)
        ref.slack_channel = ref.slack_channel or job.requester.channel_id or ""
        return ref

    def stored(self) -> dict[str, Any]:
        return self.model_dump(exclude_defaults=True)


class _Found(BaseModel):
    file_ids: list[str] = Field(default_factory=list)
    indexes: list[int] = Field(default_factory=list)  # the result images they are
    card_ts: str | None = None


def slack_error(exc: SlackApiError) -> str:
    return str(exc.response.get("error") or "") if exc.response is not None else ""


class SlackSurface:
    platform = "slack"
    style = STYLE
    tuning = SLACK

    def __init__(self, client: AsyncWebClient, clock: Clock, files: Fetcher) -> None:
        """`files`: fetches Slack's private file links with the bot token."""
        self.client = client
        self._clock = clock
        self._files = files
        # Uploaded, but the card after them failed: a retry in this process must not
        # upload again (the engine retries a delivery that raised).
        self._uploaded: OrderedDict[str, list[str]] = OrderedDict()

    # ------------------------------------------------------------------ cards
    async def show_status(self, job: Job, card: Card) -> None:
        ref = SlackRef.of(job)
        if ref.slack_status_ts:
            await self._update(ref, card)

    async def show_done(self, job: Job, card: Card) -> None:
        await self.show_status(job, card)

    async def _update(self, ref: SlackRef, card: Card) -> None:
        assert ref.slack_status_ts is not None
        await self.client.chat_update(
            channel=ref.slack_channel,
            ts=ref.slack_status_ts,
            blocks=blocks.blocks(card),
            text=blocks.fallback_text(card),
        )

    async def show_failure(self, job: Job, card: Card) -> None:
        ref = SlackRef.of(job)
        if ref.slack_status_ts:
            try:
                await self._update(ref, card)
                return
            except SlackApiError as exc:
                log.info("job %s: could not show the failure on its status (%s)", job.id, exc)
        mention = STYLE.user(job.requester.user_id)
        await self.client.chat_postMessage(
            channel=ref.slack_channel,
            thread_ts=ref.slack_thread_ts,
            blocks=blocks.blocks(card, mention=mention),
            text=f"{mention} {blocks.fallback_text(card)}",
        )

    def results_link(self, job: Job, posted: Posted) -> str | None:
        return f"{plural(posted.images, 'image')} in the thread"

    # ---------------------------------------------------------------- results
    async def post_results(
        self, job: Job, images: list[ResultImage], card: Card, *, look_first: bool
    ) -> Posted:
        ref = SlackRef.of(job)
        found = await self._find(job, ref) if look_first else _Found()
        try:
            if found.file_ids:
                log.info("job %s: results already posted (%s)", job.id, found.file_ids)
                file_ids = found.file_ids
            elif job.id in self._uploaded:
                file_ids = self._uploaded[job.id]
            else:
                file_ids = await self._upload(job, ref, images)
                self._uploaded[job.id] = file_ids
                while len(self._uploaded) > _UPLOADED_LIMIT:
                    self._uploaded.popitem(last=False)
            card_ts = found.card_ts or await self._post_card(ref, card)
            self._uploaded.pop(job.id, None)
        except SlackApiError as exc:
            reason = _PERMANENT.get(slack_error(exc))
            if reason is None:
                raise  # a 5xx or a rate limit past the client's retries: the engine retries
            raise DeliveryProblem(
                UserError(
                    kind=ErrorKind.INTERNAL,
                    code=slack_error(exc),
                    message=reason,
                    job_id=job.id,
                )
            ) from exc
        return Posted(
            images=len(file_ids),
            ref={"slack_file_ids": file_ids, "slack_result_ts": card_ts},
        )

    async def _upload(self, job: Job, ref: SlackRef, images: list[ResultImage]) -> list[str]:
        uploads = []
        for image in images:
            extension = image.filename.rsplit(".", 1)[-1] if "." in image.filename else "png"
            uploads.append(
                {
                    "file": image.data,
                    "filename": result_filename(job.id, image.index, extension),
                    "title": f"Image {image.index + 1}",
                    "alt_txt": clip(job.request.prompt, 1000),
                }
            )
        response = await self.client.files_upload_v2(
            channel=ref.slack_channel,
            thread_ts=ref.slack_thread_ts,
            file_uploads=uploads,
            initial_comment=STYLE.user(job.requester.user_id),
        )
        files = response.get("files") or [response.get("file")]
        return [str(f["id"]) for f in files if f]

    async def _post_card(self, ref: SlackRef, card: Card) -> str:
        """The buttons beside the uploaded files (the card has an Edit per image posted)."""
        response = await self.client.chat_postMessage(
            channel=ref.slack_channel,
            thread_ts=ref.slack_thread_ts,
            blocks=blocks.blocks(card),
            text=blocks.fallback_text(card),
        )
        return str(response["ts"])

    async def find_posted(self, job: Job) -> Posted | None:
        ref = SlackRef.of(job)
        found = await self._find(job, ref)
        if not found.file_ids:
            return None
        ref_update: dict[str, Any] = {"slack_file_ids": found.file_ids}
        if found.card_ts is None:
            # The images are up but their buttons are not: post the card now.
            found.card_ts = await self._post_card(ref, result_card(job, found.indexes, []))
        ref_update["slack_result_ts"] = found.card_ts
        return Posted(images=len(found.file_ids), ref=ref_update)

    async def _find(self, job: Job, ref: SlackRef) -> _Found:
        """The job's result files and card already in its thread (or channel)."""
        found = _Found()
        try:
            if ref.slack_thread_ts:
                response = await self.client.conversations_replies(
                    channel=ref.slack_channel, ts=ref.slack_thread_ts, limit=REPLIES_SCAN
                )
            else:
                response = await self.client.conversations_history(
                    channel=ref.slack_channel, oldest=str(job.created_at), limit=REPLIES_SCAN
                )
        except SlackApiError as exc:
            # Without the lookup a post made just before a crash may be repeated once.
            log.warning("job %s: could not look for results posted earlier (%s)", job.id, exc)
            return found
        block_id = f"{blocks.RESULT_BLOCK}{job.id}"
        for message in response.get("messages") or []:
            for file in message.get("files") or []:
                index = result_index(job.id, str(file.get("name") or ""))
                if index is not None:
                    found.file_ids.append(str(file["id"]))
                    found.indexes.append(index)
            if any(b.get("block_id") == block_id for b in message.get("blocks") or []):
                found.card_ts = str(message["ts"])
        return found

    def timeout_error(self, job: Job) -> UserError:
        return UserError(
            kind=ErrorKind.INTERNAL, code="upload_timeout", detail="Slack", job_id=job.id
        )

    # ----------------------------------------------------------------- inputs
    async def release_inputs(self, job: Job) -> None:
        # Slack inputs are hosted as data: URIs, on the provider's own file host, or by
        # the runtime's MediaHost, which drops a job's images itself when it ends.
        return None

    async def input_sources(self, job: Job) -> InputSources | None:
        """The user's own Slack files (the provider got hosted copies), fetched again."""
        originals = ChatMeta.of(job).originals
        if not originals:
            return None
        sources = [
            ImageSource.from_url(url, ImageMeta(index=i, filename=url_filename(url)), private=True)
            for i, url in enumerate(originals, start=1)
        ]
        return InputSources(sources=sources, fetch=self._files)

    async def result_urls(self, job: Job) -> list[str] | None:
        """Links to the posted result files (Slack permalinks, for workspace members);
        None when every one was deleted; the provider's links when none were stored."""
        ref = SlackRef.of(job)
        if not ref.slack_file_ids:
            return list(job.result_urls)
        urls: list[str] = []
        gone = 0
        for file_id in ref.slack_file_ids:
            try:
                info = await self.client.files_info(file=file_id)
            except SlackApiError as exc:
                gone += slack_error(exc) in ("file_not_found", "file_deleted")
                continue
            url = info["file"].get("permalink") or info["file"].get("url_private")
            if url:
                urls.append(str(url))
        if gone == len(ref.slack_file_ids):
            return None
        return urls or list(job.result_urls)

    async def delete_results(self, job: Job, card_ts: str | None) -> None:
        """The Delete button: the result card and the messages that share the files."""
        ref = SlackRef.of(job)
        targets: list[str] = [ts for ts in (card_ts or ref.slack_result_ts,) if ts]
        for file_id in ref.slack_file_ids:
            try:
                info = await self.client.files_info(file=file_id)
            except SlackApiError:
                continue
            shares = info["file"].get("shares") or {}
            for scope in ("public", "private"):
                for share in (shares.get(scope) or {}).get(ref.slack_channel) or []:
                    targets.append(str(share["ts"]))
        for ts in dict.fromkeys(targets):
            try:
                await self.client.chat_delete(channel=ref.slack_channel, ts=ts)
            except SlackApiError as exc:
                if slack_error(exc) != "message_not_found":
                    raise

"""DiscordSurface: where a Discord job's cards and images go (the chat layer's
`ChatSurface`).

Each job has a status message (the interaction's answer, or the bot's reply to a
message), edited through the interaction token while it lives (by the injected
clock) and through the channel afterwards, and after a restart. Results are posted
with `channel.send` in the job's thread (or inline) as real attachments with embeds
and buttons. Posts carry a nonce derived from the job id, so posting again soon
after a crash returns the message already posted; Discord remembers nonces for a
few minutes only, so a job this process did not see before its delivery is first
looked for in the destination's history (attachments are named after the job).
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import discord
from pydantic import BaseModel, ConfigDict, Field

from bot.chat.actions import result_filename, result_index
from bot.chat.cards import Card
from bot.chat.meta import ChatMeta
from bot.chat.surface import DeliveryProblem, InputSources, Posted
from bot.chat.throttle import CHAT
from bot.chat.wording import clip, lost_permission, plural
from bot.core.clock import Clock
from bot.core.models import ErrorKind, Job, Requester, ResultImage, UserError
from bot.discord import embeds
from bot.discord.hosting import HostedInputs
from bot.discord.imaging import DEFAULT_UPLOAD_LIMIT, SharedBytes, fit_images
from bot.discord.ratelimits import throttle_bucket_sweeps
from bot.discord.respond import token_dead

log = logging.getLogger(__name__)

TOKEN_LIFETIME = 15 * 60.0
TOKEN_MARGIN = 60.0  # stop using a token this long before Discord does
MAX_FILES_PER_MESSAGE = 10
HISTORY_SCAN = 200  # messages after the status searched for an earlier post of the results
THREAD_EXISTS = 160004
UNKNOWN_MESSAGE = 10008
WRONG_CHANNEL_TYPE = 50024
UPLOAD_TOO_LARGE = 40005


class DiscordRef(BaseModel):
    """Where a Discord job's messages are: its typed reference, stored with the job."""

    model_config = ConfigDict(extra="ignore")

    channel_id: str = ""  # where the job was asked: a text channel or a thread
    guild_id: str | None = None
    status_message_id: str | None = None
    status_channel_id: str | None = None  # defaults to channel_id
    in_thread: bool = False
    mode: str = "thread"  # "thread": results in a thread; "inline": in the channel
    upload_limit: int = DEFAULT_UPLOAD_LIMIT
    thread_id: str | None = None  # the results thread, once created
    result_message_ids: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, job: Job) -> DiscordRef:
        ref = cls.model_validate(job.delivery)
        ref.channel_id = ref.channel_id or job.requester.channel_id or ""
        ref.guild_id = ref.guild_id or job.requester.guild_id
        ref.status_message_id = ref.status_message_id or job.status_message_id
        ref.thread_id = ref.thread_id or job.thread_id
        ref.upload_limit = ref.upload_limit or DEFAULT_UPLOAD_LIMIT
        return ref

    def stored(self, requester: Requester | None = None) -> dict[str, Any]:
        """What to keep with the job: defaults and what the requester already says
        (its channel and server) are left out, so every job row stays small."""
        data = self.model_dump(exclude_defaults=True)
        if requester is not None:
            for key, same in (
                ("channel_id", requester.channel_id),
                ("guild_id", requester.guild_id),
            ):
                if data.get(key) == same:
                    del data[key]
        if data.get("status_channel_id") == self.channel_id:
            del data["status_channel_id"]
        return data

    @property
    def status_channel(self) -> str:
        return self.status_channel_id or self.channel_id


@dataclass
class _LiveToken:
    interaction: discord.Interaction
    usable_until: float  # clock.now()


def nonce_for(job_id: str, part: int) -> str:
    # Discord nonces are at most 25 characters; job ids are 10.
    return f"wb{job_id}{part}"[:25]


class DiscordSurface:
    platform = "discord"
    style = embeds.STYLE
    tuning = CHAT

    def __init__(self, client: discord.Client, clock: Clock, executor: Executor | None) -> None:
        self._client = client
        self._clock = clock
        self._executor = executor
        throttle_bucket_sweeps(getattr(client, "http", None))  # CPU: see ratelimits.py
        self._tokens: dict[str, _LiveToken] = {}  # by status message id
        self.inputs = HostedInputs()

    # ------------------------------------------------------------------ tokens
    def remember_interaction(
        self, status_message_id: str, interaction: discord.Interaction
    ) -> None:
        """Status edits for this message may use the interaction's token while it lives."""
        now = self._clock.now()
        # One lifetime for all, kept in insertion order: the expired ones are in front.
        while self._tokens:
            oldest = next(iter(self._tokens))
            if self._tokens[oldest].usable_until > now:
                break
            del self._tokens[oldest]
        self._tokens[status_message_id] = _LiveToken(
            interaction, now + TOKEN_LIFETIME - TOKEN_MARGIN
        )

    def _token_for(self, status_message_id: str) -> discord.Interaction | None:
        live = self._tokens.get(status_message_id)
        if live is None:
            return None
        if self._clock.now() >= live.usable_until:
            del self._tokens[status_message_id]
            return None
        return live.interaction

    def _channel(self, channel_id: str, ref: DiscordRef) -> discord.PartialMessageable:
        guild_id = int(ref.guild_id) if ref.guild_id else None
        return self._client.get_partial_messageable(int(channel_id), guild_id=guild_id)

    # ------------------------------------------------------------------ cards
    async def show_status(self, job: Job, card: Card) -> None:
        ref = DiscordRef.of(job)
        if ref.status_message_id:
            await self._edit_status(ref, embed=embeds.embed(card))

    async def show_done(self, job: Job, card: Card) -> None:
        ref = DiscordRef.of(job)
        if ref.status_message_id:
            await self._edit_status(ref, embed=embeds.embed(card), view=None)

    def results_link(self, job: Job, posted: Posted) -> str | None:
        ref = DiscordRef.of(job)
        destination = ref.thread_id or ref.channel_id
        if not ref.result_message_ids:
            return f"<#{destination}>" if destination != ref.channel_id else None
        link = (
            f"https://discord.com/channels/{ref.guild_id}/{destination}/{ref.result_message_ids[0]}"
        )
        return f"[{plural(posted.images, 'image')}]({link})"

    async def show_failure(self, job: Job, card: Card) -> None:
        ref = DiscordRef.of(job)
        embed, view = embeds.embed(card), embeds.view(card.actions)
        if ref.status_message_id:
            try:
                await self._edit_status(ref, embed=embed, view=view)
                return
            except discord.HTTPException as exc:
                log.info("job %s: could not show the failure on its status (%s)", job.id, exc)
        user = discord.Object(id=int(job.requester.user_id))
        await self._channel(ref.channel_id, ref).send(
            content=f"<@{job.requester.user_id}>",
            embed=embed,
            view=view if view is not None else discord.utils.MISSING,
            nonce=nonce_for(job.id, 9),
            allowed_mentions=discord.AllowedMentions(users=[user]),
        )

    async def _edit_status(self, ref: DiscordRef, **fields: Any) -> None:
        assert ref.status_message_id is not None
        interaction = self._token_for(ref.status_message_id)
        if interaction is not None:
            try:
                await interaction.followup.edit_message(int(ref.status_message_id), **fields)
                return
            except discord.HTTPException as exc:
                if not token_dead(exc):
                    raise
                self._tokens.pop(ref.status_message_id, None)
        channel = self._channel(ref.status_channel, ref)
        await channel.get_partial_message(int(ref.status_message_id)).edit(**fields)

    # ---------------------------------------------------------------- results
    async def post_results(
        self, job: Job, images: list[ResultImage], card: Card, *, look_first: bool
    ) -> Posted:
        ref = DiscordRef.of(job)
        try:
            destination = await self._results_channel(job, ref)
            ids, posted = await self._post(job, ref, destination, images, card, look_first)
        except discord.Forbidden as exc:
            raise DeliveryProblem(_permission_error(job, exc)) from exc
        ref.result_message_ids = ids
        return Posted(images=posted, ref={"thread_id": ref.thread_id, "result_message_ids": ids})

    async def find_posted(self, job: Job) -> Posted | None:
        """Looks where the results would be, without creating anything (a thread
        started from the status message has that message's id)."""
        ref = DiscordRef.of(job)
        if ref.mode == "thread" and not ref.in_thread and ref.status_message_id:
            destination = ref.thread_id or ref.status_message_id
        else:
            destination = ref.channel_id
        parts = max(1, math.ceil(job.request.count / MAX_FILES_PER_MESSAGE))
        found = await self._posted_before(job, ref, self._channel(destination, ref), parts)
        if len(found) < parts:
            return None  # not (all) posted: delivery posts what is missing
        messages = [found[part] for part in sorted(found)]
        thread_id = destination if destination != ref.channel_id else ref.thread_id
        return Posted(
            images=sum(_result_files(job.id, m) for m in messages),
            ref={"thread_id": thread_id, "result_message_ids": [str(m.id) for m in messages]},
        )

    async def _results_channel(self, job: Job, ref: DiscordRef) -> str:
        if ref.mode != "thread" or ref.in_thread or not ref.status_message_id:
            return ref.channel_id
        if ref.thread_id:
            return ref.thread_id
        try:
            data = await self._client.http.start_thread_with_message(
                int(ref.status_channel),
                int(ref.status_message_id),
                name=clip(job.request.prompt.replace("\n", " "), 90) or f"Job {job.id}",
                auto_archive_duration=1440,
            )
            thread_id = str(data["id"])
        except discord.HTTPException as exc:
            if exc.code in (UNKNOWN_MESSAGE, WRONG_CHANNEL_TYPE):
                # The status message was deleted, or sits in a thread: post beside it.
                log.info("job %s: no results thread (%s), posting inline", job.id, exc.code)
                return ref.channel_id
            if exc.code != THREAD_EXISTS:
                raise
            # Made before a crash: a thread started from a message has the message's id.
            thread_id = ref.status_message_id
        ref.thread_id = thread_id
        return thread_id

    async def _post(
        self,
        job: Job,
        ref: DiscordRef,
        destination: str,
        images: list[ResultImage],
        card: Card,
        look_first: bool,
    ) -> tuple[list[str], int]:
        """The result message ids, and how many result images they hold."""
        limit = ref.upload_limit
        guild = self._client.get_guild(int(ref.guild_id)) if ref.guild_id else None
        if guild is not None:
            limit = min(limit, guild.filesize_limit)
        channel = self._channel(destination, ref)
        reply_to = None
        if ref.mode == "inline" and ref.status_message_id and ref.status_channel == destination:
            reply_to = channel.get_partial_message(int(ref.status_message_id))
        starts = range(0, len(images), MAX_FILES_PER_MESSAGE)
        posted = await self._posted_before(job, ref, channel, len(starts)) if look_first else {}
        ids: list[str] = []
        total = 0
        for part, start in enumerate(starts):
            message = posted.get(part)
            if message is None:
                chunk = images[start : start + MAX_FILES_PER_MESSAGE]
                shown = card if part == 0 else card.model_copy(update={"notes": []})
                message = await self._send_chunk(job, channel, chunk, shown, limit, part, reply_to)
            else:
                log.info("job %s: results already posted (message %s)", job.id, message.id)
            ids.append(str(message.id))
            total += _result_files(job.id, message)
        return ids, total

    async def _posted_before(
        self, job: Job, ref: DiscordRef, channel: discord.PartialMessageable, parts: int
    ) -> dict[int, discord.Message]:
        """The job's result messages already in `channel`, by part. Results come after
        the status message (snowflakes order messages in time across channels)."""
        me = self._client.user
        after = discord.Object(int(ref.status_message_id)) if ref.status_message_id else None
        found: dict[int, discord.Message] = {}
        try:
            async for message in channel.history(limit=HISTORY_SCAN, after=after):
                if me is None or message.author.id != me.id:
                    continue
                indexes = [result_index(job.id, a.filename) for a in message.attachments]
                first = min((i for i in indexes if i is not None), default=None)
                if first is not None:
                    found.setdefault(first // MAX_FILES_PER_MESSAGE, message)
                    if len(found) == parts:
                        break
        except discord.NotFound:
            # No such channel or thread (a thread is made with the first post): nothing
            # was posted there.
            log.info("job %s: no earlier results (%s does not exist)", job.id, channel.id)
        except discord.HTTPException as exc:
            # The nonce still guards a recent post; an older one may be posted again.
            log.warning("job %s: could not look for results posted earlier (%s)", job.id, exc)
        return found

    async def _send_chunk(
        self,
        job: Job,
        channel: discord.PartialMessageable,
        images: list[ResultImage],
        card: Card,
        limit: int,
        part: int,
        reply_to: discord.PartialMessage | None,
    ) -> discord.Message:
        for attempt in range(3):
            fitted, fit_notes = await fit_images(images, limit, self._executor)
            fitted = [_named(job.id, img) for img in fitted]
            files = [discord.File(SharedBytes(img.data), filename=img.filename) for img in fitted]
            shown = card.model_copy(update={"notes": [*card.notes, *fit_notes]})
            if part:
                shown.actions = []
            urls = [f"attachment://{img.filename}" for img in fitted]
            edits = {img.index for img in fitted}
            shown.actions = [a for a in shown.actions if a.index is None or a.index in edits]
            user = discord.Object(id=int(job.requester.user_id))
            try:
                extra: dict[str, Any] = {}
                if reply_to is not None:  # a deleted status must not block the results
                    extra["reference"] = reply_to.to_reference(fail_if_not_exists=False)
                view = embeds.view(shown.actions)
                return await channel.send(
                    content=f"<@{job.requester.user_id}>",
                    embeds=embeds.gallery(shown, job.id, urls),
                    files=files,
                    view=view if view is not None else discord.utils.MISSING,
                    nonce=nonce_for(job.id, part),
                    mention_author=False,
                    allowed_mentions=discord.AllowedMentions(
                        everyone=False, roles=False, users=[user], replied_user=False
                    ),
                    **extra,
                )
            except discord.HTTPException as exc:
                # The server's real limit is lower than we were told: halve and retry.
                if (exc.status != 413 and exc.code != UPLOAD_TOO_LARGE) or attempt == 2:
                    raise
                limit = max(256 * 1024, min(limit, max(len(i.data) for i in fitted)) // 2)
                log.info("job %s: upload too large, retrying under %d bytes", job.id, limit)
            finally:
                for file in files:
                    file.fp.close()  # the image bytes go now, not at the next GC pass
        raise AssertionError("unreachable")

    def timeout_error(self, job: Job) -> UserError:
        return UserError(
            kind=ErrorKind.INTERNAL, code="upload_timeout", detail="Discord", job_id=job.id
        )

    # ----------------------------------------------------------------- inputs
    async def release_inputs(self, job: Job) -> None:
        await self.inputs.release(job.id, ChatMeta.of(job).hosted, self._client.http)

    async def input_sources(self, job: Job) -> InputSources | None:
        return None  # the stored links are Discord's own attachments: fetched again as they are

    async def result_urls(self, job: Job) -> list[str] | None:
        """Fresh attachment URLs of the posted results (CDN links expire), else the
        provider's URLs; None when every result message is gone."""
        ref = DiscordRef.of(job)
        channel = self._channel(ref.thread_id or ref.channel_id, ref)
        urls: list[str] = []
        gone = 0
        for message_id in ref.result_message_ids:
            try:
                message = await channel.fetch_message(int(message_id))
            except discord.NotFound:
                gone += 1
                continue
            except discord.HTTPException:
                continue
            urls.extend(a.url for a in message.attachments)
        if ref.result_message_ids and gone == len(ref.result_message_ids):
            return None
        return urls or list(job.result_urls)


def _named(job_id: str, image: ResultImage) -> ResultImage:
    extension = image.filename.rsplit(".", 1)[-1] if "." in image.filename else "png"
    return image.model_copy(update={"filename": result_filename(job_id, image.index, extension)})


def _result_files(job_id: str, message: discord.Message) -> int:
    """How many of `job_id`'s result images `message` carries."""
    return sum(1 for a in message.attachments if result_index(job_id, a.filename) is not None)


# What posting results needs, as the Discord UI names it.
POSTING_NEEDS = (
    "Send Messages",
    "Send Messages in Threads",
    "Create Public Threads",
    "Attach Files",
    "Embed Links",
)


def _permission_error(job: Job, exc: discord.Forbidden) -> UserError:
    reason = f"Discord said: {exc.text or 'Missing Permissions'}"
    return UserError(
        kind=ErrorKind.INTERNAL,
        code="bot_missing_permissions",
        message=lost_permission(reason, POSTING_NEEDS),
        job_id=job.id,
    )

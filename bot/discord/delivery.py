"""DiscordDelivery: the DeliveryPort for jobs asked on Discord.

Each job has a status message (the interaction's answer, or the bot's reply to
a message), edited sparingly. Results are posted with `channel.send` in the
job's thread (or inline), as real attachments with embeds and buttons. Posts
carry a nonce derived from the job id, so delivering again soon after a crash
returns the message already posted instead of posting twice. Discord remembers
nonces for a few minutes only: a job this process did not see before its
delivery (recovered after a restart) or whose delivery is retried is first
looked for in the destination's history (attachments are named after the job),
and a post found there is reused.

The interaction token is kept in memory only: status edits go through it while
it is valid (by the injected clock) and through the channel afterwards, and
after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import discord

from bot.core.clock import Clock
from bot.core.engine.deadline import DeadlinePassed, within
from bot.core.models import (
    ErrorKind,
    Job,
    JobState,
    PostedResults,
    ProgressUpdate,
    ResultImage,
    UserError,
)
from bot.core.ports import POSTED_IMAGES
from bot.discord import render
from bot.discord.imaging import DEFAULT_UPLOAD_LIMIT, SharedBytes, fit_images
from bot.discord.ratelimits import throttle_bucket_sweeps
from bot.discord.respond import token_dead
from bot.discord.views import result_view, retry_view

if TYPE_CHECKING:
    from bot.discord.bot import WanBot

log = logging.getLogger(__name__)

TOKEN_LIFETIME = 15 * 60.0
TOKEN_MARGIN = 60.0  # stop using a token this long before Discord does
MAX_FILES_PER_MESSAGE = 10
PROGRESS_MIN_INTERVAL = 10.0  # seconds between two edits that only change progress
PROGRESS_MIN_STEP = 20  # percent
ETA_MIN_SHIFT = 30.0  # seconds an estimate must move (at least) to be worth an edit
ETA_MIN_SHIFT_RATIO = 0.2  # ... or this share of the time it had left
# The last status edit is cosmetic: a hung one must not hold (or fail) a posted job.
STATUS_EDIT_TIMEOUT = 30.0
HISTORY_SCAN = 200  # messages after the status searched for an earlier post of the results
THREAD_EXISTS = 160004
UNKNOWN_MESSAGE = 10008
WRONG_CHANNEL_TYPE = 50024
UPLOAD_TOO_LARGE = 40005
_RECENT_LIMIT = 5000


@dataclass
class Target:
    """Where a job's messages go; stored in `job.delivery`."""

    channel_id: str  # where the job was asked: a text channel or a thread
    guild_id: str | None = None
    status_message_id: str | None = None
    status_channel_id: str | None = None  # defaults to channel_id
    in_thread: bool = False
    mode: str = "thread"  # "thread": results in a thread; "inline": in the channel
    upload_limit: int = DEFAULT_UPLOAD_LIMIT
    thread_id: str | None = None  # the results thread, once created
    result_message_ids: list[str] = field(default_factory=list)

    def to_delivery(self) -> dict[str, Any]:
        return {
            "channel_id": self.channel_id,
            "guild_id": self.guild_id,
            "status_message_id": self.status_message_id,
            "status_channel_id": self.status_channel_id or self.channel_id,
            "in_thread": self.in_thread,
            "mode": self.mode,
            "upload_limit": self.upload_limit,
            "thread_id": self.thread_id,
            "result_message_ids": list(self.result_message_ids),
        }

    @classmethod
    def from_job(cls, job: Job) -> Target:
        d = job.delivery
        return cls(
            channel_id=str(d.get("channel_id") or job.requester.channel_id or ""),
            guild_id=d.get("guild_id") or job.requester.guild_id,
            status_message_id=d.get("status_message_id") or job.status_message_id,
            status_channel_id=d.get("status_channel_id"),
            in_thread=bool(d.get("in_thread", False)),
            mode=str(d.get("mode", "thread")),
            upload_limit=int(d.get("upload_limit") or DEFAULT_UPLOAD_LIMIT),
            thread_id=d.get("thread_id") or job.thread_id,
            result_message_ids=list(d.get("result_message_ids") or []),
        )


@dataclass
class _LiveToken:
    interaction: discord.Interaction
    usable_until: float  # clock.now()


@dataclass
class _Shown:
    state: JobState
    progress: int | None
    at: float  # clock.monotonic()
    queue_position: int | None = None
    ready_at: float | None = None  # clock.monotonic() of the estimate shown


class DeliveryError(Exception):
    """Results could not be posted; `user_error` says why, in the user's words."""

    def __init__(self, user_error: UserError) -> None:
        super().__init__(user_error.message)
        self.user_error = user_error


def result_filename(job_id: str, index: int, extension: str) -> str:
    """Result files are named after their job and image, so buttons (and a delivery
    after a restart) can find them."""
    return f"{_result_prefix(job_id)}{index + 1}.{extension}"


def _result_prefix(job_id: str) -> str:
    return f"wan_{job_id}_"


def result_index(job_id: str, filename: str) -> int | None:
    """The image index of `job_id`'s result file `filename`, None for any other file."""
    stem = PurePosixPath(filename).stem
    number = stem.removeprefix(_result_prefix(job_id))
    if number == stem or not number.isdigit() or int(number) < 1:
        return None
    return int(number) - 1


def _named(job_id: str, image: ResultImage) -> ResultImage:
    extension = PurePosixPath(image.filename).suffix.lstrip(".") or "png"
    return image.model_copy(update={"filename": result_filename(job_id, image.index, extension)})


def nonce_for(job_id: str, part: int) -> str:
    # Discord nonces are at most 25 characters; job ids are 10.
    return f"wb{job_id}{part}"[:25]


class DiscordDelivery:
    def __init__(self, bot: WanBot, clock: Clock) -> None:
        self._bot = bot
        self._clock = clock
        throttle_bucket_sweeps(getattr(bot, "http", None))  # CPU: see ratelimits.py
        self._tokens: dict[str, _LiveToken] = {}  # by status message id
        self._shown: OrderedDict[str, _Shown] = OrderedDict()  # by job id
        self._finished: OrderedDict[str, None] = OrderedDict()  # jobs past progress
        # Jobs seen before delivery in this process: not posted by an earlier process.
        self._fresh: OrderedDict[str, None] = OrderedDict()
        self._problems: dict[str, UserError] = {}  # why posting failed, by job id
        # Posted, then cut off before deliver() returned (a hung status edit): what a
        # retry answers at once, by job id.
        self._posted: dict[str, dict[str, Any]] = {}

    # ----------------------------------------------------------- tokens
    def remember_interaction(
        self, status_message_id: int, interaction: discord.Interaction
    ) -> None:
        """Status edits for this message may use the interaction's token while it lives."""
        now = self._clock.now()
        # Tokens are kept in insertion order with one lifetime, so the expired ones
        # are at the front: drop those only, instead of scanning thousands per job.
        while self._tokens:
            oldest = next(iter(self._tokens))
            if self._tokens[oldest].usable_until > now:
                break
            del self._tokens[oldest]
        self._tokens[str(status_message_id)] = _LiveToken(
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

    # -------------------------------------------------------- port: progress
    async def progress(self, job: Job, update: ProgressUpdate) -> None:
        if update.state is not JobState.DELIVERING:
            self._remember(self._fresh, job.id)
        if job.id in self._finished:
            return
        target = Target.from_job(job)
        if not target.status_message_id or not self._worth_showing(job.id, update):
            return
        embed = render.status_embed(
            job.request,
            update,
            job_id=job.id,
            requester_id=job.requester.user_id,
            notes=input_notes(job),
            now=self._clock.now(),
        )
        try:
            await self._edit_status(target, embed=embed)
        except discord.HTTPException as exc:
            # Progress is cosmetic: never let it fail the job.
            log.info("job %s: status edit failed (%s)", job.id, exc)

    def _worth_showing(self, job_id: str, update: ProgressUpdate) -> bool:
        """Edit on every state change, else only after a while and for a real change (a
        progress step, a new queue position, a moved estimate): Discord rate limits
        edits and counts failed requests against the bot."""
        if update.state in (JobState.SUBMITTING, JobState.DELIVERING):
            # Both usually last well under a second, and the next edit (Generating, or
            # the results) follows at once: an edit for them is a wasted REST call.
            return False
        now = self._clock.monotonic()
        ready_at = None if update.eta_seconds is None else now + update.eta_seconds
        last = self._shown.get(job_id)
        if last is not None and last.state is update.state:
            if now - last.at < PROGRESS_MIN_INTERVAL:
                return False
            step = abs((update.progress or 0) - (last.progress or 0))
            moved = update.queue_position != last.queue_position
            if step < PROGRESS_MIN_STEP and not moved and not _eta_moved(last, ready_at, now):
                return False
        self._shown[job_id] = _Shown(
            update.state, update.progress, now, update.queue_position, ready_at
        )
        self._shown.move_to_end(job_id)
        while len(self._shown) > _RECENT_LIMIT:
            self._shown.popitem(last=False)
        return True

    def _mark_finished(self, job_id: str) -> None:
        self._shown.pop(job_id, None)
        self._remember(self._finished, job_id)

    @staticmethod
    def _remember(recent: OrderedDict[str, None], job_id: str) -> None:
        recent[job_id] = None
        recent.move_to_end(job_id)
        while len(recent) > _RECENT_LIMIT:
            recent.popitem(last=False)

    # --------------------------------------------------------- port: deliver
    async def deliver(
        self, job: Job, images: list[ResultImage], notes: list[str]
    ) -> dict[str, Any]:
        self._mark_finished(job.id)
        if (posted_before := self._posted.pop(job.id, None)) is not None:
            self._problems.pop(job.id, None)
            return posted_before  # the images are up: only the status edit was cut off
        # Seen before delivery in this process and not tried yet: nothing to look for.
        fresh = job.id in self._fresh
        self._fresh.pop(job.id, None)
        target = Target.from_job(job)
        try:
            destination = await self._results_channel(job, target)
            all_notes = [*input_notes(job), *notes]
            ids, posted = await self._post_results(
                job, target, destination, images, all_notes, look_first=not fresh
            )
        except discord.Forbidden as exc:
            # The engine retries, then fails the job (refunded) and calls `fail`, which
            # shows this cause rather than a generic one.
            error = self._permission_error(job, exc)
            self._problems[job.id] = error
            raise DeliveryError(error) from exc
        except asyncio.CancelledError:
            # The engine gave up waiting for Discord (a hung upload): if it fails the job
            # for good, `fail` says so. A retry first looks for a post stored meanwhile.
            self._problems[job.id] = self._upload_timeout_error(job)
            raise
        self._problems.pop(job.id, None)
        # The images actually on Discord (an earlier post found may hold other ones).
        result = {"thread_id": target.thread_id, "result_message_ids": ids, POSTED_IMAGES: posted}
        self._posted[job.id] = result
        await self._show_done(job, target, destination, ids, posted)
        del self._posted[job.id]
        return result

    async def find_posted(self, job: Job) -> PostedResults | None:
        """`PostLookup`: the job's results, if a process posted them before a crash and
        could not record it. Looks where they would be without creating anything (a
        thread started from the status message has that message's id)."""
        target = Target.from_job(job)
        if target.mode == "thread" and not target.in_thread and target.status_message_id:
            destination = target.thread_id or target.status_message_id
        else:
            destination = target.channel_id
        channel = self._bot.get_partial_messageable(
            int(destination), guild_id=int(target.guild_id) if target.guild_id else None
        )
        parts = max(1, math.ceil(job.request.count / MAX_FILES_PER_MESSAGE))
        found = await self._posted_before(job, target, channel, parts)
        if len(found) < parts:
            return None  # not (all) posted: deliver() posts what is missing
        self._mark_finished(job.id)
        self._fresh.pop(job.id, None)
        if destination != target.channel_id:
            target.thread_id = destination
        messages = [found[part] for part in sorted(found)]
        ids = [str(message.id) for message in messages]
        posted = sum(_result_files(job.id, message) for message in messages)
        log.info("job %s: results were posted before the restart (%s)", job.id, ids)
        await self._show_done(job, target, destination, ids, posted)
        return PostedResults(
            images=posted, delivery={"thread_id": target.thread_id, "result_message_ids": ids}
        )

    async def _show_done(
        self, job: Job, target: Target, destination: str, ids: list[str], posted: int
    ) -> None:
        target.result_message_ids = ids
        where = f"<#{destination}>" if destination != target.channel_id else None
        if ids:
            link = f"https://discord.com/channels/{target.guild_id}/{destination}/{ids[0]}"
            where = f"[{posted} image{'s' if posted != 1 else ''}]({link})"
        edit = self._edit_status(target, embed=render.done_embed(job, where, posted), view=None)
        try:
            await within(self._clock, STATUS_EDIT_TIMEOUT, edit)
        except (discord.HTTPException, DeadlinePassed) as exc:
            log.info("job %s: final status edit failed (%s)", job.id, exc)

    @staticmethod
    def _upload_timeout_error(job: Job) -> UserError:
        return UserError(
            kind=ErrorKind.INTERNAL,
            code="upload_timeout",
            message=(
                "Something went wrong inside the bot while posting the images: Discord did "
                "not take the upload in time, even after retries. You were not charged. "
                "Please try again."
            ),
            job_id=job.id,
        )

    async def _results_channel(self, job: Job, target: Target) -> str:
        if target.mode != "thread" or target.in_thread or not target.status_message_id:
            return target.channel_id
        if target.thread_id:
            return target.thread_id
        status_channel = target.status_channel_id or target.channel_id
        try:
            data = await self._bot.http.start_thread_with_message(
                int(status_channel),
                int(target.status_message_id),
                name=render.clip(job.request.prompt.replace("\n", " "), 90) or f"Job {job.id}",
                auto_archive_duration=1440,
            )
            thread_id = str(data["id"])
        except discord.HTTPException as exc:
            if exc.code in (UNKNOWN_MESSAGE, WRONG_CHANNEL_TYPE):
                # The status message was deleted, or sits in a thread: post beside it.
                log.info("job %s: no results thread (%s), posting inline", job.id, exc.code)
                return target.channel_id
            if exc.code != THREAD_EXISTS:
                raise
            # Made before a crash: a thread started from a message has the message's id.
            thread_id = target.status_message_id
        target.thread_id = thread_id
        return thread_id

    async def _post_results(
        self,
        job: Job,
        target: Target,
        destination: str,
        images: list[ResultImage],
        notes: list[str],
        *,
        look_first: bool,
    ) -> tuple[list[str], int]:
        """The result message ids, and how many result images they hold."""
        limit = target.upload_limit
        guild = self._bot.get_guild(int(target.guild_id)) if target.guild_id else None
        if guild is not None:
            limit = min(limit, guild.filesize_limit)
        channel = self._bot.get_partial_messageable(
            int(destination), guild_id=int(target.guild_id) if target.guild_id else None
        )
        reply_to = None
        if target.mode == "inline" and target.status_message_id:
            status_channel = target.status_channel_id or target.channel_id
            if status_channel == destination:
                reply_to = channel.get_partial_message(int(target.status_message_id))
        starts = range(0, len(images), MAX_FILES_PER_MESSAGE)
        posted = await self._posted_before(job, target, channel, len(starts)) if look_first else {}
        ids: list[str] = []
        images_posted = 0
        for part, start in enumerate(starts):
            message = posted.get(part)
            if message is None:
                chunk = images[start : start + MAX_FILES_PER_MESSAGE]
                message = await self._send_chunk(
                    job, channel, chunk, notes if part == 0 else [], limit, part, reply_to
                )
            else:
                log.info("job %s: results already posted (message %s)", job.id, message.id)
            ids.append(str(message.id))
            images_posted += _result_files(job.id, message)
        return ids, images_posted

    async def _posted_before(
        self, job: Job, target: Target, channel: discord.PartialMessageable, parts: int
    ) -> dict[int, discord.Message]:
        """The job's result messages already in `channel`, by part: posted before a crash
        or a lost answer, once Discord may have forgotten the nonce. Results come after
        the status message (snowflakes order messages in time across channels)."""
        me = self._bot.user
        after = discord.Object(int(target.status_message_id)) if target.status_message_id else None
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
        except discord.HTTPException as exc:
            # The nonce still guards a recent post; an older one may be posted again.
            log.warning("job %s: could not look for results posted earlier (%s)", job.id, exc)
        return found

    async def _send_chunk(
        self,
        job: Job,
        channel: discord.PartialMessageable,
        images: list[ResultImage],
        notes: list[str],
        limit: int,
        part: int,
        reply_to: discord.PartialMessage | None,
    ) -> discord.Message:
        for attempt in range(3):
            fitted, fit_notes = await fit_images(images, limit, self._bot.rt.image_executor)
            fitted = [_named(job.id, img) for img in fitted]
            files = [discord.File(SharedBytes(img.data), filename=img.filename) for img in fitted]
            mention = discord.Object(id=int(job.requester.user_id))
            try:
                extra: dict[str, Any] = {}
                if reply_to is not None:  # a deleted status must not block the results
                    extra["reference"] = reply_to.to_reference(fail_if_not_exists=False)
                message = await channel.send(
                    content=f"<@{job.requester.user_id}>",
                    embeds=render.result_embeds(job, fitted, [*notes, *fit_notes]),
                    files=files,
                    view=result_view(job.id, [img.index for img in fitted]),
                    nonce=nonce_for(job.id, part),
                    mention_author=False,
                    allowed_mentions=discord.AllowedMentions(
                        everyone=False, roles=False, users=[mention], replied_user=False
                    ),
                    **extra,
                )
                return message
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

    @staticmethod
    def _permission_error(job: Job, exc: discord.Forbidden) -> UserError:
        return UserError(
            kind=ErrorKind.INTERNAL,
            code="bot_missing_permissions",
            message=(
                "I lost the permission to post the results here "
                f"(Discord said: {exc.text or 'Missing Permissions'}). A server admin needs "
                "to give the bot Send Messages, Send Messages in Threads, Create Public "
                "Threads, Attach Files and Embed Links in this channel."
            ),
            job_id=job.id,
        )

    # ------------------------------------------------------------ port: fail
    async def fail(self, job: Job, error: UserError) -> None:
        self._mark_finished(job.id)
        self._fresh.pop(job.id, None)
        self._posted.pop(job.id, None)
        problem = self._problems.pop(job.id, None)
        if problem is not None and error.kind is ErrorKind.INTERNAL:
            error = problem
        await self._show_failure(job, Target.from_job(job), error)

    async def _show_failure(self, job: Job, target: Target, error: UserError) -> None:
        if error.job_id is None:
            error = error.model_copy(update={"job_id": job.id})
        embed = render.failure_embed(job.request, error)
        if error.code == "bot_missing_permissions":
            embed.description = error.message
        # Try again, when the request was not resent for fear of paying twice.
        view = retry_view(job.id) if error.retry else None
        if target.status_message_id:
            try:
                await self._edit_status(target, embed=embed, view=view)
                return
            except discord.HTTPException as exc:
                log.info("job %s: could not show the failure on its status (%s)", job.id, exc)
        try:
            channel = self._bot.get_partial_messageable(int(target.channel_id))
            await channel.send(
                content=f"<@{job.requester.user_id}>",
                embed=embed,
                view=view if view is not None else discord.utils.MISSING,
                nonce=nonce_for(job.id, 9),
                allowed_mentions=discord.AllowedMentions(
                    users=[discord.Object(id=int(job.requester.user_id))]
                ),
            )
        except (discord.HTTPException, ValueError) as exc:
            log.warning("job %s failed and the user could not be told: %s", job.id, exc)

    # ---------------------------------------------------------------- edits
    async def _edit_status(self, target: Target, **fields: Any) -> None:
        assert target.status_message_id is not None
        interaction = self._token_for(target.status_message_id)
        if interaction is not None:
            try:
                await interaction.followup.edit_message(int(target.status_message_id), **fields)
                return
            except discord.HTTPException as exc:
                if not token_dead(exc):
                    raise
                self._tokens.pop(target.status_message_id, None)
        channel = self._bot.get_partial_messageable(
            int(target.status_channel_id or target.channel_id)
        )
        await channel.get_partial_message(int(target.status_message_id)).edit(**fields)


def _result_files(job_id: str, message: discord.Message) -> int:
    """How many of `job_id`'s result images `message` carries."""
    return sum(1 for a in message.attachments if result_index(job_id, a.filename) is not None)


def _eta_moved(last: _Shown, ready_at: float | None, now: float) -> bool:
    """Whether the estimated end moved enough to show: by ETA_MIN_SHIFT seconds and a
    ETA_MIN_SHIFT_RATIO share of the time that was left."""
    if last.ready_at is None or ready_at is None:
        return last.ready_at != ready_at
    left = max(0.0, last.ready_at - now)
    return abs(ready_at - last.ready_at) >= max(ETA_MIN_SHIFT, ETA_MIN_SHIFT_RATIO * left)


INPUT_NOTES = "input_notes"
# Set in job.delivery when the results were deleted with the Delete button.
RESULTS_DELETED = "results_deleted"


def input_notes(job: Job) -> list[str]:
    """What validation changed in the user's images, kept with the job."""
    return [str(note) for note in job.delivery.get(INPUT_NOTES, [])]

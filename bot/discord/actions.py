"""What the result buttons and the job commands (/show, /jobs, /cancel) do."""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import discord

from bot.core.errors import NotAllowed, NotFound, ValidationFailed
from bot.core.ids import normalize_job_id
from bot.core.models import Job, JobState
from bot.core.validation import (
    Fetched,
    Fetcher,
    ImageMeta,
    ImageSource,
    InputFetchFailed,
    check_options,
)
from bot.discord import render
from bot.discord.delivery import RESULTS_DELETED, Target, result_filename
from bot.discord.jobs import JobOrigin, url_filename
from bot.discord.permissions import is_admin
from bot.discord.respond import answer, defer
from bot.discord.views import PromptModal, result_view

if TYPE_CHECKING:
    from bot.discord.bot import WanBot

log = logging.getLogger(__name__)

RETRIED_AS = "retried_as"  # Job.delivery key: the job its Try again started
INPUTS_GONE = (
    "the original input images are no longer available (Discord's image links expire "
    "after about a day): attach them again with /imagine"
)


class JobActions:
    def __init__(self, bot: WanBot) -> None:
        self._bot = bot
        self._retrying: set[str] = set()  # jobs whose Try again is being handled

    async def on_button(
        self, interaction: discord.Interaction, action: str, job_id: str, index: int | None
    ) -> None:
        if action == "edit":
            await self.open_edit(interaction, job_id, index or 0)
        elif action == "reroll":
            await self.reroll(interaction, job_id)
        elif action == "delete":
            await self.delete(interaction, job_id)
        elif action == "info":
            await self.info(interaction, job_id)
        elif action == "retry":
            await self.retry(interaction, job_id)

    async def job_for(self, interaction: discord.Interaction, job_id: str) -> Job:
        """The job, if it exists and belongs to this server."""
        canonical = normalize_job_id(job_id)
        job = await self._bot.rt.engine.get(canonical) if canonical else None
        guild_id = str(interaction.guild_id) if interaction.guild_id else None
        if job is None or job.requester.platform != "discord" or job.requester.guild_id != guild_id:
            raise NotFound(f"There is no job `{job_id}` on this server.", code="job_not_found")
        return job

    # ---------------------------------------------------------------- buttons
    async def reroll(self, interaction: discord.Interaction, job_id: str) -> None:
        origin = JobOrigin.from_interaction(interaction)
        self._bot.starter.precheck(origin, self._bot.configs.peek(str(origin.guild.id)))
        await defer(interaction)
        job = await self.job_for(interaction, job_id)
        config = await self._bot.configs.get(str(origin.guild.id))
        self._bot.starter.precheck(origin, config)
        if not job.request.images:
            request = job.request.model_copy(update={"seed": None})
            await self._bot.starter.submit(origin, request, config, parent_job_id=job.id)
            return
        await self._reroll_with_images(origin, job)

    async def retry(self, interaction: discord.Interaction, job_id: str) -> None:
        """Try again: the same request as a NEW job (quota checked as usual), only on
        its requester's click. The failed job's submit was never resent, so this is
        the only way it runs again."""
        job = await self.job_for(interaction, job_id)
        if str(interaction.user.id) != job.requester.user_id:
            raise NotAllowed(
                "Only the person who asked for this can try it again.", code="not_owner"
            )
        if job.state is not JobState.FAILED:
            raise NotAllowed(
                f"Job `{job.id}` has not failed, so there is nothing to try again.",
                code="not_failed",
            )
        done = job.delivery.get(RETRIED_AS)
        if job.id in self._retrying or done:
            again = f" as job `{done}`" if done else ""
            raise NotAllowed(f"Job `{job.id}` was already tried again{again}.", code="retrying")
        origin = JobOrigin.from_interaction(interaction)
        self._bot.starter.precheck(origin, self._bot.configs.peek(str(origin.guild.id)))
        self._retrying.add(job.id)  # a double click must not start (and charge) two jobs
        try:
            await defer(interaction)
            config = await self._bot.configs.get(str(origin.guild.id))
            self._bot.starter.precheck(origin, config)
            if job.request.images:
                new = await self._reroll_with_images(origin, job)  # fetched and checked anew
            else:
                new = await self._bot.starter.submit(
                    origin, job.request, config, parent_job_id=job.id
                )
            # Once per failed job, after restarts too (a stale card keeps its button).
            await self._bot.rt.jobs.update(job.id, delivery={**job.delivery, RETRIED_AS: new.id})
            if interaction.message is not None:
                # Tried again: the button goes, so the card cannot start a second job.
                with contextlib.suppress(discord.HTTPException):
                    await interaction.message.edit(view=None)
        finally:
            self._retrying.discard(job.id)

    async def _reroll_with_images(self, origin: JobOrigin, job: Job) -> Job:
        """Stored input links expire (Discord's CDN after about a day), and the provider
        would refuse a dead one as if the user had sent a bad image: fetch and check them
        again like new attachments, and say so plainly when they are gone."""
        request = job.request
        sources = [
            ImageSource.from_url(ref.url, ImageMeta(index=i, filename=url_filename(ref.url)))
            for i, ref in enumerate(request.images, start=1)
        ]
        options = check_options(
            request.prompt,
            request.negative_prompt,
            request.aspect_ratio,
            request.count,
            len(sources),
            self._bot.rt.provider.capabilities,
        )
        fetch = _NoticingFetcher(self._bot.rt.downloader)
        try:
            return await self._bot.starter.start(
                origin, options, sources, parent_job_id=job.id, fetch=fetch
            )
        except InputFetchFailed:
            raise  # the links may be fine: their host did not answer right now
        except ValidationFailed as exc:
            if fetch.failed:
                raise ValidationFailed([INPUTS_GONE]) from exc
            raise

    async def open_edit(self, interaction: discord.Interaction, job_id: str, index: int) -> None:
        # A modal must be the first answer: nothing slow before it.
        url = result_image_url(interaction.message, job_id, index)
        modal = PromptModal(
            title=f"Edit image {index + 1}",
            on_prompt=functools.partial(self._edit_submitted, job_id=job_id, index=index, url=url),
            max_length=self._bot.rt.provider.capabilities.max_prompt_chars,
        )
        await interaction.response.send_modal(modal)

    async def _edit_submitted(
        self,
        interaction: discord.Interaction,
        prompt: str,
        *,
        job_id: str,
        index: int,
        url: str | None,
    ) -> None:
        caps = self._bot.rt.provider.capabilities
        options = check_options(prompt, None, None, 1, 1, caps)
        origin = JobOrigin.from_interaction(interaction)
        self._bot.starter.precheck(origin, self._bot.configs.peek(str(origin.guild.id)))
        await defer(interaction)
        if url is None:
            job = await self.job_for(interaction, job_id)
            if job.delivery.get(RESULTS_DELETED):
                raise NotFound(_deleted_text(job), code="results_deleted")
            if index >= len(job.result_urls):
                raise NotFound(f"Job `{job_id}` has no image {index + 1}.", code="image_not_found")
            url = job.result_urls[index]
        meta = ImageMeta(index=1, filename=result_filename(job_id, index, "png"))
        await self._bot.starter.start(
            origin, options, [ImageSource.from_url(url, meta)], parent_job_id=job_id
        )

    async def delete(self, interaction: discord.Interaction, job_id: str) -> None:
        await interaction.response.defer()  # a silent acknowledgement: nothing is shown
        job = await self.job_for(interaction, job_id)
        mine = str(interaction.user.id) == job.requester.user_id
        if not (mine or is_admin(interaction.permissions)):
            raise NotAllowed(
                "Only the person who asked for these images or a server admin can delete them.",
                code="not_owner",
            )
        if interaction.message is None:
            raise NotFound("That message is already gone.", code="message_not_found")
        await interaction.message.delete()
        # /show must not bring them back from the provider's links.
        await self._bot.rt.jobs.update(job.id, delivery={**job.delivery, RESULTS_DELETED: True})
        log.info("job %s: results deleted by %s", job.id, interaction.user.id)

    async def info(self, interaction: discord.Interaction, job_id: str) -> None:
        await defer(interaction, ephemeral=True)
        job = await self.job_for(interaction, job_id)
        embed = render.info_embed(job, self._bot.price_per_image)
        await answer(interaction, embed=embed, ephemeral=True)

    # --------------------------------------------------------------- commands
    async def show(self, interaction: discord.Interaction, job_id: str) -> None:
        await defer(interaction, ephemeral=True)
        job = await self.job_for(interaction, job_id)
        if job.state is not JobState.DONE:
            embed = render.info_embed(job, self._bot.price_per_image)
            await answer(interaction, embed=embed, ephemeral=True)
            return
        urls = await self._result_urls(job)
        if urls is None:
            await answer(interaction, _deleted_text(job), ephemeral=True)
            return
        embeds = []
        for position, url in enumerate(urls[:10]):
            embed = discord.Embed(url=f"https://wanbot.invalid/jobs/{job.id}", colour=render.GREEN)
            embed.set_image(url=url)
            if position == 0:
                embed.title = render.clip(job.request.prompt, 250)
                embed.description = f"{render.describe_request(job.request)} · job `{job.id}`"
            embeds.append(embed)
        if not embeds:
            embeds = [render.info_embed(job, self._bot.price_per_image)]
        view = result_view(job.id, list(range(len(urls))), deletable=False)
        await answer(interaction, embeds=embeds, view=view, ephemeral=True)

    async def _result_urls(self, job: Job) -> list[str] | None:
        """Fresh attachment URLs of the posted results (CDN links expire), else the
        provider's URLs; None when the results were deleted (with the Delete button, or
        every result message is gone)."""
        if job.delivery.get(RESULTS_DELETED):
            return None
        target = Target.from_job(job)
        destination = target.thread_id or target.channel_id
        urls: list[str] = []
        gone = 0
        for message_id in target.result_message_ids:
            try:
                channel = self._bot.get_partial_messageable(int(destination))
                message = await channel.fetch_message(int(message_id))
            except discord.NotFound:
                gone += 1
                continue
            except discord.HTTPException:
                continue
            urls.extend(a.url for a in message.attachments)
        if target.result_message_ids and gone == len(target.result_message_ids):
            return None
        return urls or list(job.result_urls)

    async def jobs(self, interaction: discord.Interaction) -> None:
        await defer(interaction, ephemeral=True)
        jobs = await self._bot.rt.jobs.user_jobs("discord", str(interaction.user.id), limit=10)
        here = [j for j in jobs if j.requester.guild_id == str(interaction.guild_id)]
        await answer(interaction, embed=render.jobs_embed(here), ephemeral=True)

    async def cancel(self, interaction: discord.Interaction, job_id: str) -> None:
        await defer(interaction, ephemeral=True)
        job = await self.job_for(interaction, job_id)
        origin = JobOrigin.from_interaction(interaction)
        job = await self._bot.rt.engine.cancel(job.id, origin.requester())  # owner or admin
        text = f"Job `{job.id}` is cancelled. Nothing was charged for it."
        await answer(interaction, text, ephemeral=True)


def _deleted_text(job: Job) -> str:
    return f"The results of job `{job.id}` were deleted, so they can't be shown or edited."


class _NoticingFetcher:
    """Passes downloads through and notes whether any failed."""

    def __init__(self, inner: Fetcher) -> None:
        self._inner = inner
        self.failed = False

    async def fetch(
        self, url: str, *, max_bytes: int | None = None, any_type: bool = False
    ) -> Fetched:
        try:
            return await self._inner.fetch(url, max_bytes=max_bytes, any_type=any_type)
        except Exception:
            self.failed = True
            raise


def result_image_url(message: discord.Message | None, job_id: str, index: int) -> str | None:
    """The URL of result image `index` of `job_id` on a result message or card."""
    if message is None:
        return None
    stem = PurePosixPath(result_filename(job_id, index, "x")).stem
    for attachment in message.attachments:
        if PurePosixPath(attachment.filename).stem == stem:
            return attachment.url
    for embed in message.embeds:
        url = embed.image.url
        if url and PurePosixPath(url.split("?", 1)[0]).stem == stem:
            return url
    return None

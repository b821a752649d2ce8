"""What the bot shows: embeds and texts built from core models (no I/O here)."""

from __future__ import annotations

from collections.abc import Sequence

import discord

from bot.core.errors import QuotaDenied, ValidationFailed, WanbotError
from bot.core.models import (
    ErrorKind,
    GenerationRequest,
    Job,
    JobState,
    ProgressUpdate,
    ResultImage,
    ServerReport,
    UsageReport,
    UserError,
)
from bot.core.validation import InputFetchFailed

BLURPLE = discord.Colour.blurple()
GREEN = discord.Colour.green()
RED = discord.Colour.red()
GREY = discord.Colour.light_grey()

_STATE_LABELS = {
    JobState.QUEUED: "⏳ Waiting for a free slot",
    JobState.SUBMITTING: "📨 Sending to the image service",
    JobState.RUNNING: "🎨 Generating",
    JobState.DELIVERING: "📦 Posting the results",
    JobState.DONE: "✅ Done",
    JobState.FAILED: "❌ Failed",
    JobState.CANCELLED: "🚫 Cancelled",
}


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def timestamp(seconds: float, style: str = "R") -> str:
    """A Discord timestamp tag, shown in each reader's own time zone."""
    return f"<t:{int(seconds)}:{style}>"


def progress_bar(percent: int, width: int = 10) -> str:
    filled = max(0, min(width, round(percent / 100 * width)))
    return "█" * filled + "░" * (width - filled) + f" {percent}%"


def describe_request(request: GenerationRequest) -> str:
    parts = [
        request.mode.value,
        f"{request.count} image{'s' if request.count != 1 else ''}",
        request.aspect_ratio,
    ]
    if request.images:
        parts.append(f"{len(request.images)} input image{'s' if len(request.images) != 1 else ''}")
    return " · ".join(parts)


def status_embed(
    request: GenerationRequest,
    update: ProgressUpdate,
    *,
    job_id: str | None = None,
    requester_id: str | None = None,
    notes: Sequence[str] = (),
    now: float | None = None,
) -> discord.Embed:
    embed = discord.Embed(
        title=_STATE_LABELS.get(update.state, update.state.value),
        description=clip(request.prompt, 1000),
        colour=GREY if update.state is JobState.QUEUED else BLURPLE,
    )
    embed.add_field(name="Mode", value=describe_request(request), inline=False)
    if request.negative_prompt:
        embed.add_field(name="Negative", value=clip(request.negative_prompt, 300), inline=False)
    if update.queue_position is not None and update.state is JobState.QUEUED:
        embed.add_field(name="Queue", value=f"#{update.queue_position}", inline=True)
    if update.progress is not None and update.state is JobState.RUNNING:
        embed.add_field(name="Progress", value=progress_bar(update.progress), inline=True)
    waiting = update.state in (JobState.QUEUED, JobState.RUNNING)
    if update.eta_seconds is not None and now is not None and waiting:
        embed.add_field(name="Ready", value=f"~{timestamp(now + update.eta_seconds)}", inline=True)
    if requester_id:
        embed.add_field(name="For", value=f"<@{requester_id}>", inline=True)
    all_notes = [*notes, update.note] if update.note else list(notes)
    if all_notes:
        embed.add_field(name="Notes", value=clip("\n".join(all_notes), 1000), inline=False)
    if job_id:
        embed.set_footer(text=f"Job {job_id}")
    return embed


def result_embeds(
    job: Job, images: Sequence[ResultImage], notes: Sequence[str]
) -> list[discord.Embed]:
    """One embed per image, sharing a URL so clients show them as one gallery."""
    gallery_url = f"https://wanbot.invalid/jobs/{job.id}"
    embeds = []
    for position, image in enumerate(images):
        embed = discord.Embed(url=gallery_url, colour=GREEN)
        embed.set_image(url=f"attachment://{image.filename}")
        if position == 0:
            embed.title = clip(job.request.prompt, 250)
            embed.description = f"{describe_request(job.request)} · for <@{job.requester.user_id}>"
            if notes:
                embed.add_field(name="Notes", value=clip("\n".join(notes), 1000), inline=False)
            embed.set_footer(text=f"Job {job.id}")
        embeds.append(embed)
    return embeds


def done_embed(job: Job, where: str | None, delivered: int) -> discord.Embed:
    embed = discord.Embed(
        title=_STATE_LABELS[JobState.DONE],
        description=clip(job.request.prompt, 1000),
        colour=GREEN,
    )
    embed.add_field(name="Mode", value=describe_request(job.request), inline=False)
    embed.add_field(name="Delivered", value=f"{delivered} image{'s' if delivered != 1 else ''}")
    if where:
        embed.add_field(name="Results", value=where)
    embed.set_footer(text=f"Job {job.id}")
    return embed


def user_error_text(error: WanbotError) -> str:
    """A refused request, told specifically (every problem at once)."""
    if isinstance(error, InputFetchFailed):
        # Nothing is wrong with the image: its host did not answer in time.
        lines = "\n".join(f"• {problem}" for problem in error.problems)
        return f"Nothing is wrong with your request, but:\n{lines}\nNothing was charged."
    if isinstance(error, ValidationFailed) and error.problems:
        lines = "\n".join(f"• {problem}" for problem in error.problems)
        return f"I can't use that request:\n{lines}\nNothing was charged."
    if isinstance(error, QuotaDenied):
        return f"{error.message} (`/usage` shows your quota.)"
    return error.message


def failure_text(error: UserError) -> str:
    """The engine's message as it is (it names the true cause and says once that nothing
    was charged), with the error code and the job id; never a second wording of either."""
    code = f" (`{error.code}`)" if error.code and error.kind is not ErrorKind.QUOTA else ""
    if error.code and f"({error.code})" in error.message:
        code = ""  # the message already names it (a provider failure without a message)
    ref = f" Job `{error.job_id}`." if error.job_id else ""
    message = error.message.strip()
    if error.job_id and "charged" not in message.lower():
        end = "" if message.endswith((".", "!", "?")) else "."
        message += f"{end} You were not charged."  # a failed job is always fully refunded
    if error.kind is ErrorKind.INTERNAL and error.job_id and error.job_id in message:
        ref = ""  # the message already names the job
    return f"{message}{code}{ref}"


def failure_embed(request: GenerationRequest, error: UserError) -> discord.Embed:
    title = _STATE_LABELS[
        JobState.CANCELLED if error.kind is ErrorKind.CANCELLED else JobState.FAILED
    ]
    embed = discord.Embed(title=title, description=failure_text(error), colour=RED)
    embed.add_field(name="Prompt", value=clip(request.prompt, 1000), inline=False)
    if error.job_id:
        embed.set_footer(text=f"Job {error.job_id}")
    return embed


def refusal_embed(request: GenerationRequest, text: str) -> discord.Embed:
    """A request that was refused before it became a job."""
    embed = discord.Embed(title="❌ Not started", description=text, colour=RED)
    embed.add_field(name="Prompt", value=clip(request.prompt, 1000), inline=False)
    return embed


def _duration(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return "—"
    return f"{end - start:.1f} s"


def info_embed(job: Job, price_per_image: float) -> discord.Embed:
    """`price_per_image`: today's, for a job stored without its own (before migration 0003)."""
    req = job.request
    embed = discord.Embed(title=f"Job {job.id}", description=clip(req.prompt, 2000), colour=BLURPLE)
    embed.add_field(name="State", value=job.state.value)
    embed.add_field(name="Mode", value=req.mode.value)
    embed.add_field(name="Aspect ratio", value=req.aspect_ratio)
    embed.add_field(name="Count", value=str(req.count))
    embed.add_field(name="Negative prompt", value=clip(req.negative_prompt or "—", 500))
    embed.add_field(name="Seed", value=str(req.seed) if req.seed is not None else "random")
    embed.add_field(name="Input images", value=str(len(req.images)))
    embed.add_field(name="Provider", value=job.provider)
    embed.add_field(name="Task id", value=f"`{job.task_id}`" if job.task_id else "—")
    price = price_per_image if job.unit_price_usd is None else job.unit_price_usd
    cost = job.delivered * price
    embed.add_field(name="Cost", value=f"{job.delivered} image(s) charged · ${cost:.3f}")
    embed.add_field(name="Requested by", value=f"<@{job.requester.user_id}>")
    embed.add_field(name="Created", value=timestamp(job.created_at, "f"))
    embed.add_field(name="Queued", value=_duration(job.created_at, job.submitted_at))
    embed.add_field(name="Generation", value=_duration(job.submitted_at, job.finished_at))
    embed.add_field(name="Total", value=_duration(job.created_at, job.finished_at))
    if job.parent_job_id:
        embed.add_field(name="From job", value=f"`{job.parent_job_id}`")
    if job.error_kind:
        embed.add_field(
            name="Error", value=clip(f"{job.error_kind.value}: {job.error_message or ''}", 500)
        )
    return embed


def jobs_embed(jobs: Sequence[Job]) -> discord.Embed:
    embed = discord.Embed(title="Your recent jobs", colour=BLURPLE)
    if not jobs:
        embed.description = "No jobs yet. Try `/imagine`."
        return embed
    lines = [
        f"`{job.id}` · {job.state.value} · {timestamp(job.created_at)} · "
        f"{clip(job.request.prompt, 60)}"
        for job in jobs
    ]
    embed.description = "\n".join(lines)
    embed.set_footer(text="/show <id> brings a result back · /cancel <id> stops a job")
    return embed


def usage_embed(report: UsageReport) -> discord.Embed:
    embed = discord.Embed(title="Your image quota", colour=BLURPLE)
    if report.blocked:
        embed.description = "You are blocked from generating images on this server."
        embed.colour = RED
    if report.exempt or report.limit is None:
        embed.add_field(name="Limit", value=f"unlimited (per {report.period.value})")
    else:
        extra = f" (incl. {report.bonus} granted)" if report.bonus else ""
        embed.add_field(name="Limit", value=f"{report.limit} per {report.period.value}{extra}")
    embed.add_field(name="Used", value=str(report.used))
    if report.in_flight:
        embed.add_field(name="In progress", value=str(report.in_flight))
    if report.remaining is not None:
        embed.add_field(name="Remaining", value=str(report.remaining))
    embed.add_field(name="Resets", value=timestamp(report.resets_at))
    if report.server_budget is not None:
        embed.add_field(
            name="Server budget",
            value=f"{report.server_used} / {report.server_budget} images this month",
            inline=False,
        )
    embed.set_footer(text="Failed images are never charged.")
    return embed


def server_report_embed(report: ServerReport) -> discord.Embed:
    embed = discord.Embed(title="Image usage on this server", colour=BLURPLE)
    budget = f" of {report.budget}" if report.budget is not None else ""
    embed.description = (
        f"Since {timestamp(report.period_start, 'D')}: **{report.images}**{budget} images, "
        f"${report.cost_usd:.2f}"
    )
    top = sorted(report.users, key=lambda row: row.images, reverse=True)[:20]
    if top:
        embed.add_field(
            name="Top users",
            value="\n".join(f"<@{row.user_id}>: {row.images} (${row.cost_usd:.2f})" for row in top),
            inline=False,
        )
    return embed

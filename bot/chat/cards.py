"""Cards: what a job or an answer looks like, for every front end to draw.

A card holds finished words (from `wording`, marked up by the surface's `Style`)
and the facts they came from (state, progress, ETA) for surfaces that draw more,
like a progress bar. No platform types here.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel, Field

from bot.chat import wording
from bot.chat.style import Style
from bot.core.models import (
    Capabilities,
    ErrorKind,
    GenerationRequest,
    Job,
    JobState,
    ProgressUpdate,
    ServerReport,
    UsageReport,
    UserError,
)


class Tone(StrEnum):
    NEUTRAL = "neutral"
    WORKING = "working"
    SUCCESS = "success"
    ERROR = "error"


class ActionKind(StrEnum):
    REROLL = "reroll"
    EDIT = "edit"
    DELETE = "delete"
    INFO = "info"
    RETRY = "retry"


class Action(BaseModel):
    """A button: what it does, to which job (and which image, for edit)."""

    kind: ActionKind
    job_id: str
    index: int | None = None


class CardField(BaseModel):
    name: str
    value: str
    inline: bool = True


class Card(BaseModel):
    title: str
    text: str | None = None
    tone: Tone = Tone.NEUTRAL
    fields: list[CardField] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    footer: str | None = None
    actions: list[Action] = Field(default_factory=list)
    image_urls: list[str] = Field(default_factory=list)  # images shown with the card
    # The facts behind the words, for surfaces that draw them (bars, timestamps).
    state: JobState | None = None
    progress: int | None = None
    eta_seconds: float | None = None
    queue_position: int | None = None

    def field(self, name: str, value: str, inline: bool = True) -> Card:
        self.fields.append(CardField(name=name, value=value, inline=inline))
        return self


def progress_bar(percent: int, width: int = 10) -> str:
    filled = max(0, min(width, round(percent / 100 * width)))
    return "█" * filled + "░" * (width - filled) + f" {percent}%"


def _footer(job_id: str | None) -> str | None:
    return f"Job {job_id}" if job_id else None


_TONES = {
    JobState.DONE: Tone.SUCCESS,
    JobState.FAILED: Tone.ERROR,
    JobState.CANCELLED: Tone.ERROR,
}


def status_card(
    request: GenerationRequest,
    update: ProgressUpdate,
    style: Style,
    now: float,
    *,
    requester_id: str,
    job_id: str | None = None,
    notes: Sequence[str] = (),
) -> Card:
    """A job on its way: state, progress, estimate, place in line, for whom."""
    card = Card(
        title=wording.state_title(update.state, update.queue_position),
        text=wording.clip(request.prompt, 1000),
        tone=_TONES.get(update.state, Tone.WORKING),
        footer=_footer(job_id),
        state=update.state,
        progress=update.progress,
        eta_seconds=update.eta_seconds,
        queue_position=update.queue_position,
    )
    card.field("Mode", wording.describe_request(request), inline=False)
    if request.negative_prompt:
        card.field("Negative", wording.clip(request.negative_prompt, 300), inline=False)
    if update.queue_position and update.state is JobState.QUEUED:
        card.field("Queue", f"#{update.queue_position}")
    if update.progress is not None and update.state is JobState.RUNNING:
        card.field("Progress", progress_bar(update.progress))
    waiting = update.state in (JobState.QUEUED, JobState.RUNNING)
    if update.eta_seconds is not None and waiting:
        card.field("Ready", f"~{style.relative(now + update.eta_seconds, now)}")
    card.field("For", style.user(requester_id))
    card.notes = list(notes)
    if update.retrying_after:
        card.notes.append(wording.retry_note(update.retrying_after))
    return card


def result_card(job: Job, indexes: Sequence[int], notes: Sequence[str]) -> Card:
    """The post that carries the images; the requester is named by the post's mention."""
    actions = [Action(kind=ActionKind.EDIT, job_id=job.id, index=i) for i in indexes]
    actions += [
        Action(kind=kind, job_id=job.id)
        for kind in (ActionKind.REROLL, ActionKind.INFO, ActionKind.DELETE)
    ]
    return Card(
        title=wording.clip(job.request.prompt, 250),
        text=wording.describe_request(job.request),
        tone=Tone.SUCCESS,
        notes=list(notes),
        footer=_footer(job.id),
        actions=actions,
        state=JobState.DONE,
    )


def shown_card(job: Job, urls: Sequence[str]) -> Card:
    """A finished job brought back (/show): its images, buttons without Delete."""
    card = result_card(job, list(range(len(urls))), [])
    card.actions = [a for a in card.actions if a.kind is not ActionKind.DELETE]
    card.image_urls = list(urls[:10])
    return card


def done_card(job: Job, delivered: int, where: str | None) -> Card:
    """The status card once the images are up: says the count once (with the link)."""
    card = Card(
        title=wording.STATE_TITLES[JobState.DONE],
        text=wording.clip(job.request.prompt, 1000),
        tone=Tone.SUCCESS,
        footer=_footer(job.id),
        state=JobState.DONE,
    )
    mode = wording.describe_request(job.request).replace(
        f" · {wording.plural(job.request.count, 'image')}", ""
    )
    card.field("Mode", mode, inline=False)
    card.field("Results", where or wording.plural(delivered, "image"))
    return card


def failure_card(request: GenerationRequest, error: UserError, style: Style) -> Card:
    state = JobState.CANCELLED if error.kind is ErrorKind.CANCELLED else JobState.FAILED
    card = Card(
        title=wording.STATE_TITLES[state],
        text=wording.failure_text(error, style),
        tone=Tone.ERROR,
        footer=_footer(error.job_id),
        state=state,
    )
    card.field("Prompt", wording.clip(request.prompt, 1000), inline=False)
    if error.retry and error.job_id:
        # Not resent for fear of paying twice: the user may start it again.
        card.actions.append(Action(kind=ActionKind.RETRY, job_id=error.job_id))
    return card


def _duration(start: float | None, end: float | None) -> str:
    return "—" if start is None or end is None else f"{end - start:.1f} s"


def info_card(job: Job, price_per_image: float, style: Style) -> Card:
    """Everything about one job. `price_per_image`: today's, for a job stored before
    prices were kept with it."""
    req = job.request
    card = Card(title=f"Job {job.id}", text=wording.clip(req.prompt, 2000))
    price = price_per_image if job.unit_price_usd is None else job.unit_price_usd
    cost = job.delivered * price
    rows = [
        ("State", job.state.value),
        ("Mode", req.mode.value),
        ("Aspect ratio", req.aspect_ratio),
        ("Count", str(req.count)),
        ("Negative prompt", wording.clip(req.negative_prompt or "—", 500)),
        ("Seed", str(req.seed) if req.seed is not None else "random"),
        ("Input images", str(len(req.images))),
        ("Provider", job.provider),
        ("Task id", style.code(job.task_id) if job.task_id else "—"),
        ("Cost", f"{wording.plural(job.delivered, 'image')} charged · ${cost:.3f}"),
        ("Requested by", style.user(job.requester.user_id)),
        ("Created", style.date(job.created_at)),
        ("Queued", _duration(job.created_at, job.submitted_at)),
        ("Generation", _duration(job.submitted_at, job.finished_at)),
        ("Total", _duration(job.created_at, job.finished_at)),
    ]
    if job.parent_job_id:
        rows.append(("From job", style.code(job.parent_job_id)))
    if job.error_kind:
        error = f"{job.error_kind.value}: {job.error_message or ''}"
        rows.append(("Error", wording.clip(error, 500)))
    for name, value in rows:
        card.field(name, value)
    return card


def jobs_card(jobs: Sequence[Job], style: Style, now: float) -> Card:
    card = Card(title="Your recent jobs")
    if not jobs:
        card.text = f"No jobs yet. Try {style.command('imagine')}."
        return card
    card.text = "\n".join(
        f"{style.code(job.id)} · {job.state.value} · {style.relative(job.created_at, now)} · "
        f"{wording.clip(job.request.prompt, 60)}"
        for job in jobs
    )
    card.footer = (
        f"{style.command('show')} brings a result back · {style.command('cancel')} stops a job"
    )
    return card


def usage_card(report: UsageReport, style: Style, now: float) -> Card:
    card = Card(title="Your image quota")
    if report.blocked:
        card.text = "You are blocked from generating images here."
        card.tone = Tone.ERROR
    if report.exempt or report.limit is None:
        card.field("Limit", f"unlimited (per {report.period.value})")
    else:
        extra = f" (incl. {report.bonus} granted)" if report.bonus else ""
        card.field("Limit", f"{report.limit} per {report.period.value}{extra}")
    card.field("Used", str(report.used))
    if report.in_flight:
        card.field("In progress", str(report.in_flight))
    if report.remaining is not None:
        card.field("Remaining", str(report.remaining))
    card.field("Resets", style.relative(report.resets_at, now))
    if report.server_budget is not None:
        card.field(
            "Server budget",
            f"{report.server_used} / {report.server_budget} images this month",
            inline=False,
        )
    card.footer = "Failed images are never charged."
    return card


def report_card(report: ServerReport, style: Style) -> Card:
    budget = f" of {report.budget}" if report.budget is not None else ""
    card = Card(
        title="Image usage here",
        text=(
            f"Since {style.date(report.period_start)}: {style.bold(str(report.images))}{budget} "
            f"images, ${report.cost_usd:.2f}"
        ),
    )
    top = sorted(report.users, key=lambda row: row.images, reverse=True)[:20]
    if top:
        card.field(
            "Top users",
            "\n".join(f"{style.user(r.user_id)}: {r.images} (${r.cost_usd:.2f})" for r in top),
            inline=False,
        )
    return card


def help_card(caps: Capabilities, style: Style, *, imagine: str, edit_how: str) -> Card:
    """/help: what the bot does here. `imagine`: the command as typed on this platform;
    `edit_how`: how to edit an image on it."""
    ratios = ", ".join(dict.fromkeys([*caps.aspect_ratios_t2i, *caps.aspect_ratios_i2i]))
    card = Card(title="Wan 2.5 images")
    card.field(
        "Make images",
        f"{imagine}\nUp to {caps.max_count} images at once; aspect ratios: {ratios}. "
        f"Attach up to {caps.max_input_images} images to edit or combine them "
        "(JPEG, PNG, BMP or WebP, 384-5000 px per side, at most 10 MB).",
        inline=False,
    )
    card.field("Edit images", edit_how, inline=False)
    card.field(
        "Results",
        "Results come back as attachments with buttons: "
        f"{style.bold('Reroll')} (same request, new images), {style.bold('Edit N')} (change "
        f"one image), {style.bold('Info')} (parameters, cost, timings) and "
        f"{style.bold('Delete')} (yours, or any as an admin).",
        inline=False,
    )
    card.field(
        "Your jobs and quota",
        f"{style.command('jobs')} your recent jobs · {style.command('show id')} brings a "
        f"result back · {style.command('cancel id')} stops a job · {style.command('usage')} "
        "your quota and when it resets. Failed images are never charged.",
        inline=False,
    )
    card.field(
        "Admins",
        f"{style.command('quota')} limits, grants, blocks, budget and report · "
        f"{style.command('config')} results mode, image repair, allowed channels.",
        inline=False,
    )
    return card

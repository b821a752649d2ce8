"""Text for the terminal: progress, failures, usage, reports and job lists."""

from __future__ import annotations

from bot.core.engine.failures import NOT_CHARGED
from bot.core.errors import ProviderError
from bot.core.models import (
    ErrorKind,
    FailureCategory,
    GenerationRequest,
    Job,
    JobState,
    ProgressUpdate,
    ServerReport,
    UsageReport,
    UserError,
)
from bot.core.quota import PERIOD_WORDS, format_duration

# The engine's messages already name the true cause (the user's request, their quota,
# or the bot's own provider account) and say nothing was charged. At the console the
# user is also the operator, so some failures get a hint for them.
_OPERATOR_HINT = {
    ErrorKind.PROVIDER_CONFIG: "You run this bot: `wanbot doctor` shows what to fix.",
    ErrorKind.INTERNAL: "The log above has the details.",
}


def failure_text(error: UserError, retry_command: str | None = None) -> str:
    """The engine's message (it says once that nothing was charged), a hint for the
    operator, and how to try again when the failure offers it."""
    message = error.message.strip()
    parts = [message if message.endswith((".", "!", "?")) else message + "."]
    if error.job_id is not None and "charged" not in message.lower():
        # A failed job delivered nothing, and failed images are never charged.
        parts.append(NOT_CHARGED)
    hint = _OPERATOR_HINT.get(error.kind)
    if hint:
        parts.append(hint)
    text = " ".join(parts)
    if error.retry:
        again = f"`{retry_command}`" if retry_command else "the same command"
        text += f"\nTo try again as a new job, enter {again}."
    return text


def retry_command(request: GenerationRequest) -> str | None:
    """The /imagine line that asks for `request` again; None when no line can say it
    exactly (input images were hosted for this job; a prompt with double quotes)."""
    texts = [request.prompt, request.negative_prompt or ""]
    if request.images or any('"' in text for text in texts):
        return None
    parts = ["/imagine", _quoted(request.prompt)]
    if request.negative_prompt:
        parts += ["--negative", _quoted(request.negative_prompt)]
    if request.aspect_ratio != "1:1":
        parts += ["--aspect", request.aspect_ratio]
    if request.count != 1:
        parts += ["-n", str(request.count)]
    return " ".join(parts)


def _quoted(text: str) -> str:
    # Quoted, option-like words in the prompt stay prompt words.
    return '"' + " ".join(text.split()) + '"'


def upload_failure_text(provider: str, exc: ProviderError) -> str:
    """An input image could not be put on the provider's file host: not the user's fault
    unless the provider says the file itself was refused."""
    detail = exc.message or exc.code
    if exc.category is FailureCategory.USER:
        return f"{provider} refused the input image: {detail}. Nothing was charged."
    if exc.category in (FailureCategory.CONFIG, FailureCategory.REQUEST):
        # The bot's key, balance or request (docs/providers.md): waiting will not help.
        return (
            f"The input image could not be uploaded to {provider} ({detail}). This is a "
            "problem with the bot's provider account or request, not with your image. "
            f"{_OPERATOR_HINT[ErrorKind.PROVIDER_CONFIG]} Nothing was charged."
        )
    return (
        f"The input image could not be uploaded to {provider} ({detail}); "
        "please try again later. Nothing was charged."
    )


_STATE_WORDS = {
    JobState.QUEUED: "queued",
    JobState.SUBMITTING: "sending to the provider",
    JobState.RUNNING: "generating",
    JobState.DELIVERING: "downloading results",
    JobState.DONE: "done",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled",
}


def progress_words(update: ProgressUpdate) -> str:
    """`generating 40%, ~12 s left` / `queued (2nd in line)`."""
    text = _STATE_WORDS.get(update.state, update.state.value)
    if update.progress is not None and update.state is JobState.RUNNING:
        text += f" {update.progress}%"
    if update.queue_position is not None and update.state is JobState.QUEUED:
        text += f" (position {update.queue_position})"
    if update.eta_seconds is not None and update.eta_seconds > 0:
        text += f", ~{duration(update.eta_seconds)} left"
    if update.note:
        text += f" ({update.note.rstrip('.')})"
    return text


def progress_bar(update: ProgressUpdate, width: int = 24) -> str:
    """An ASCII bar (safe on any terminal encoding) followed by the words."""
    if update.state is JobState.DONE or update.state is JobState.DELIVERING:
        fraction = 1.0
    elif update.progress is not None:
        fraction = max(0, min(100, update.progress)) / 100
    else:
        fraction = 0.0
    filled = round(fraction * width)
    return f"[{'#' * filled}{'-' * (width - filled)}] {progress_words(update)}"


def duration(seconds: float) -> str:
    """Seconds while short (progress ETAs), else the quota's minute-based wording."""
    if seconds < 90:
        return f"{max(0, round(seconds))} s"
    return format_duration(seconds)


def usage_text(report: UsageReport, now: float) -> str:
    who = "You have" if report.user_id == "local" else f"{report.user_id} has"
    period = PERIOD_WORDS[report.period]
    if report.blocked:
        return f"{who} been blocked from generating images. An admin can /quota unblock."
    lines = []
    if report.limit is None:
        lines.append(f"{who} used {report.used} images {period} (no limit).")
    else:
        bonus = f" (incl. {report.bonus} granted)" if report.bonus else ""
        lines.append(
            f"{who} used {report.used} of {report.limit}{bonus} images {period}; "
            f"{report.remaining if report.remaining is not None else 0} left."
        )
    if report.in_flight:
        lines.append(f"{report.in_flight} of them are in jobs still running.")
    if report.limit is not None:
        lines.append(f"The period resets in {duration(report.resets_at - now)}.")
    if report.server_budget is not None:
        lines.append(
            f"Server budget: {report.server_used} of {report.server_budget} images this month."
        )
    return "\n".join(lines)


def server_report_text(report: ServerReport) -> str:
    budget = "no budget" if report.budget is None else f"budget {report.budget}"
    lines = [
        f"This month: {report.images} images, ${report.cost_usd:.2f} ({budget}).",
    ]
    if report.users:
        width = max(4, *(len(row.user_id) for row in report.users))
        lines.append(f"  {'user'.ljust(width)}  images      cost")
        for row in report.users:
            lines.append(f"  {row.user_id.ljust(width)}  {row.images:>6}  ${row.cost_usd:>7.2f}")
    else:
        lines.append("  No images generated yet.")
    return "\n".join(lines)


def job_line(job: Job, now: float) -> str:
    prompt = job.request.prompt
    if len(prompt) > 40:
        prompt = prompt[:37] + "..."
    images = f"{job.delivered}/{job.request.count}" if job.state.final else f"{job.request.count}"
    age = duration(now - job.created_at)
    return f"{job.id}  {job.state.value:<10} {images:>3} img  {age:>8} ago  {prompt}"


def jobs_text(jobs: list[Job], now: float) -> str:
    if not jobs:
        return "No jobs yet. Try: /imagine a lighthouse at dusk"
    return "\n".join(job_line(job, now) for job in jobs)

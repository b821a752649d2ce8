"""Every sentence a user reads, once, for every front end.

The core states facts (a failure's category, code and detail; a quota refusal's
numbers); this module turns them into words. Markup that differs by platform (a
user, a time, a command) comes from the surface's `Style`.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.chat.style import Style, seconds_text
from bot.core.errors import QuotaDenied, QuotaReason, ValidationFailed, WanbotError
from bot.core.models import (
    ErrorKind,
    FailureCategory,
    GenerationRequest,
    JobState,
    Period,
    UserError,
)
from bot.core.validation import InputFetchFailed

NOT_CHARGED = "You were not charged."
NOTHING_CHARGED = "Nothing was charged."
# The only words that ask the user to change their request (FailureCategory.USER only).
CHANGE_REQUEST = "Please change the prompt or image and try again."
ADMINS_TOLD = "The server's admins have been told."
_DETAIL_LIMIT = 200

PERIOD_WORDS = {Period.DAY: "today", Period.WEEK: "this week", Period.MONTH: "this month"}

STATE_TITLES = {
    JobState.QUEUED: "⏳ Waiting for a free slot",
    JobState.SUBMITTING: "📨 Sending to the image service",
    JobState.RUNNING: "🎨 Generating",
    JobState.DELIVERING: "📦 Posting the results",
    JobState.DONE: "✅ Done",
    JobState.FAILED: "❌ Failed",
    JobState.CANCELLED: "🚫 Cancelled",
}
STARTING_TITLE = "🚀 Starting"  # queued, but no other job is ahead: no wait for a slot


def plural(count: int, noun: str) -> str:
    """'1 image', '2 images'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text.endswith((".", "!", "?")) else text + "."


# ---------------------------------------------------------------- requests
def describe_request(request: GenerationRequest) -> str:
    """'text-to-image · 2 images · 16:9 · 1 input image'."""
    parts = [request.mode.value, plural(request.count, "image"), request.aspect_ratio]
    if request.images:
        parts.append(plural(len(request.images), "input image"))
    return " · ".join(parts)


def state_title(state: JobState, queue_position: int | None = None) -> str:
    if state is JobState.QUEUED and not queue_position:
        return STARTING_TITLE
    return STATE_TITLES.get(state, state.value)


def state_words(state: JobState) -> str:
    """Lower-case, for one-line progress: 'generating'."""
    return {
        JobState.QUEUED: "queued",
        JobState.SUBMITTING: "sending to the provider",
        JobState.RUNNING: "generating",
        JobState.DELIVERING: "downloading results",
        JobState.DONE: "done",
        JobState.FAILED: "failed",
        JobState.CANCELLED: "cancelled",
    }.get(state, state.value)


# ----------------------------------------------------------------- refusals
def quota_refusal(error: QuotaDenied, style: Style, now: float) -> str:
    """One wording per quota refusal, whether the pre-check or admission found it:
    the numbers, and when more images come."""
    facts = error.facts
    if error.reason is QuotaReason.BLOCKED:
        return "You are blocked from generating images here."
    if error.reason is QuotaReason.RUNNING_LIMIT:
        return f"You already have {plural(facts.running, 'job')} running; wait for one to finish."
    if error.reason is QuotaReason.QUEUED_LIMIT:
        return (
            f"You already have {plural(facts.running, 'job')} running and "
            f"{facts.queued} waiting; wait for one to finish."
        )
    more = f"more {style.relative(error.resets_at, now)}" if error.resets_at else ""
    if error.reason is QuotaReason.SERVER_BUDGET:
        left = error.remaining or 0
        budget = f" of {plural(facts.budget, 'image')}" if facts.budget is not None else ""
        head = (
            f"This server's monthly image budget{budget} is used up"
            if left == 0
            else f"This server's monthly image budget has only {plural(left, 'image')} left "
            f"and this needs {facts.needed}"
        )
        return f"{head}; {more}." if more else f"{head}."
    when = PERIOD_WORDS.get(facts.period, "this period") if facts.period else "this period"
    allowance, remaining = facts.allowance or 0, error.remaining or 0
    if allowance == 0:
        per = facts.period.value if facts.period else "period"
        return f"Your image limit here is 0 per {per}; an admin can grant you more."
    if remaining == 0:
        return f"You have used {facts.used} of {plural(allowance, 'image')} {when}; {more}."
    return (
        f"This needs {plural(facts.needed, 'image')} but you have {remaining} of "
        f"{allowance} left {when}; {more}."
    )


def refusal(error: WanbotError, style: Style, now: float) -> str:
    """A request refused before it became a job, told specifically (every problem at
    once), with what the user can do."""
    if isinstance(error, InputFetchFailed):
        # Nothing is wrong with the image: its host did not answer in time.
        lines = "\n".join(f"• {problem}" for problem in error.problems)
        return f"Nothing is wrong with your request, but:\n{lines}\n{NOTHING_CHARGED}"
    if isinstance(error, ValidationFailed) and error.problems:
        lines = "\n".join(f"• {problem}" for problem in error.problems)
        return f"I can't use that request:\n{lines}\n{NOTHING_CHARGED}"
    if isinstance(error, QuotaDenied):
        return f"{quota_refusal(error, style, now)} ({style.command('usage')} shows your quota.)"
    return error.message


# ----------------------------------------------------------------- failures
def _detail(code: str | None, message: str | None) -> str:
    text = " ".join((message or code or "").split())
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "…"


def _category_text(category: FailureCategory, detail: str) -> str:
    if category is FailureCategory.USER:
        return f"The image service refused your prompt or image ({detail}). {CHANGE_REQUEST}"
    if category is FailureCategory.REQUEST:
        return (
            f"The image service could not accept the request the bot sent ({detail}). This is "
            "a problem on the bot's side, not with your prompt or image; a server admin needs "
            "to look at it."
        )
    if category is FailureCategory.CONFIG:
        return (
            "The bot's image service account has a problem (billing, key or access). This is "
            "not your fault: a server admin needs to check the bot's provider account."
        )
    if category is FailureCategory.GONE:
        return (
            "The image service lost this job's task (it no longer knows it). A new task was "
            "not started behind your back, so you are never billed twice."
        )
    if category is FailureCategory.CANCELLED:
        return "The image service cancelled this task on its side."
    return (
        "The image service is failing or overloaded right now; please try again in a few minutes."
    )


# Failures the engine states by code (not by a provider's category): the cause, and
# what may follow "not charged".
_CODE_TEXT: dict[str, tuple[str, str]] = {
    "submit_uncertain": (
        "The image service did not answer clearly: it may have started this; it was not "
        "sent again so you are not billed twice.",
        "You can try again.",
    ),
    "submit_interrupted": (
        "The bot restarted while sending this job, so the image service may have started "
        "it. It was not sent again, so you are not billed twice.",
        "You can try again.",
    ),
    "provider_changed": (
        "The bot's image service was changed while this job waited, so it was stopped.",
        "Please try again.",
    ),
}


def failure_cause(error: UserError) -> tuple[str, str]:
    """(the cause, what may follow "not charged") for a failed job."""
    if error.message:
        return error.message, ""  # a front end's own cause (e.g. a lost permission)
    code = error.code or ""
    if code in _CODE_TEXT:
        return _CODE_TEXT[code]
    if error.kind is ErrorKind.CANCELLED:
        return f"Cancelled by {'an admin' if error.detail == 'admin' else 'you'}.", ""
    if error.kind is ErrorKind.TIMEOUT:
        minutes = error.detail or "a few"
        return (
            f"The image service did not finish within {minutes} minutes, so the job was stopped.",
            "",
        )
    if code == "no_results":
        return f"The image service finished but {error.detail}.", "Please try again."
    if code == "upload_timeout":
        return (
            f"Something went wrong inside the bot while posting the images: {error.detail} "
            "did not take the upload in time, even after retries.",
            "Please try again.",
        )
    if error.kind is ErrorKind.INTERNAL:
        job = f" (job {error.job_id})" if error.job_id else ""
        return f"Something went wrong inside the bot{job}; it has been logged.", ""
    category = error.category or FailureCategory.TRANSIENT
    after = "You can try again." if category is FailureCategory.GONE else ""
    return _category_text(category, _detail(code, error.detail)), after


def failure_text(error: UserError, style: Style | None = None) -> str:
    """A failed job: the true cause, "not charged" exactly once, the admins' part only
    when it is true, the error code and the job id."""
    cause, after = failure_cause(error)
    parts = [_sentence(cause)]
    if error.admins_told:
        parts.append(ADMINS_TOLD)
    if "charged" not in cause.lower():
        parts.append(NOT_CHARGED)  # a failed job is always fully refunded
    if after:
        parts.append(after)
    text = " ".join(parts)
    show_code = error.code and error.kind not in (ErrorKind.QUOTA, ErrorKind.CANCELLED)
    if show_code and error.code and f"({error.code})" not in text:
        text += f" ({_code(style, error.code)})"
    if error.job_id and error.job_id not in text:
        text += f" Job {_code(style, error.job_id)}."
    return text


def _code(style: Style | None, text: str) -> str:
    return style.code(text) if style is not None else f"`{text}`"


def retry_note(code: str) -> str:
    """Shown while a task that failed transiently is replaced (once, at no cost)."""
    return f"The image service failed this attempt ({code}); trying once more at no cost."


def partial_note(failed: int, count: int) -> str:
    return f"{failed} of {plural(count, 'image')} failed; you were not charged for them."


def eta_text(seconds: float) -> str:
    return f"~{seconds_text(seconds)} left"


# ------------------------------------------------------------ answers to commands
def cancelled_text(job_id: str, style: Style) -> str:
    return f"Job {style.code(job_id)} is cancelled. {NOTHING_CHARGED}"


def job_not_found(job_id: str, style: Style) -> str:
    return f"There is no job {style.code(job_id)} here."


def results_deleted(job_id: str, style: Style) -> str:
    return (
        f"The results of job {style.code(job_id)} were deleted, so they can't be shown or edited."
    )


def no_such_image(job_id: str, index: int, style: Style) -> str:
    return f"Job {style.code(job_id)} has no image {index + 1}."


INPUTS_GONE = (
    "the original input images are no longer available (image links from chat expire "
    "after about a day): attach them again"
)


def no_status_card(job_id: str, style: Style) -> str:
    return (
        f"Job {style.code(job_id)} has started, but its status card could not be posted; "
        "the images will be posted here when they are ready."
    )


def lost_permission(reason: str, needed: Sequence[str]) -> str:
    """The bot can no longer post the results where the job was asked."""
    return (
        f"I lost the permission to post the results here ({reason}). A server admin needs "
        f"to give the bot {', '.join(needed[:-1])} and {needed[-1]} in this channel."
    )


def retry_not_owner() -> str:
    return "Only the person who asked for this can try it again."


def retry_not_failed(job_id: str, style: Style) -> str:
    return f"Job {style.code(job_id)} has not failed, so there is nothing to try again."


def retry_done(job_id: str, new_job_id: str | None, style: Style) -> str:
    again = f" as job {style.code(new_job_id)}" if new_job_id else ""
    return f"Job {style.code(job_id)} was already tried again{again}."


def delete_not_allowed() -> str:
    return "Only the person who asked for these images or an admin can delete them."


# -------------------------------------------------------------------- admins
def admin_only(style: Style, who: str = "admins") -> str:
    """`who`: the platform's admins, as its users know them."""
    return (
        f"Only {who} can change quotas and settings. Use {style.command('usage')} to see "
        "your own quota."
    )


def user_limit_set(user: str, limit: int, period: Period | None) -> str:
    per = f" per {period.value}" if period else ""
    return f"{user} may now make {plural(limit, 'image')}{per}."


def user_limit_cleared(user: str) -> str:
    return f"The role or server limit applies to {user} again."


def role_limit_set(role: str, limit: int, period: Period | None) -> str:
    per = f" per {period.value}" if period else ""
    return f"Members with {role} may make {plural(limit, 'image')}{per}."


def role_limit_cleared(role: str) -> str:
    return f"{role} no longer has its own limit."


def granted(user: str, images: int) -> str:
    return f"Granted {plural(images, 'extra image')} to {user} for this period."


def blocked(user: str) -> str:
    return f"{user} can no longer make images here."


def unblocked(user: str) -> str:
    return f"{user} can make images again."


def default_set(limit: int, period: Period) -> str:
    images = plural(limit, "image")
    return f"Everyone without a limit of their own may make {images} per {period.value}."


def budget_set(images: int | None) -> str:
    return (
        "No server budget."
        if images is None
        else f"Server budget: {plural(images, 'image')} a month."
    )


def delivery_mode_set(mode: str) -> str:
    where = "a thread on the status message" if mode == "thread" else "the channel"
    return f"Results will be posted in {where}."


def normalization_set(enabled: bool) -> str:
    state = "repaired where possible" if enabled else "used as they are, or refused"
    return f"Input images will be {state}."


def channels_set(listed: str) -> str:
    return f"Images can be made in {listed}."


def exempt_set(enabled: bool) -> str:
    return f"Admins are now {'exempt from' if enabled else 'subject to'} quotas."


def alerts_set(place: str) -> str:
    return (
        "Admin alerts (provider billing or key trouble, long outages, the budget used up) "
        f"now go to {place}, at most one per kind an hour."
    )


def alerts_place(channel: str | None) -> str:
    return channel or "the server owner, by direct message"


def config_text(
    mode: str, normalize: bool, channels: str, exempt: bool, alerts: str, style: Style
) -> str:
    return (
        f"Results: {style.bold(mode)}\n"
        f"Repair input images: {style.bold('on' if normalize else 'off')}\n"
        f"Allowed channels: {channels}\n"
        f"Admins exempt from quotas: {style.bold('yes' if exempt else 'no')}\n"
        f"Admin alerts: {alerts}"
    )

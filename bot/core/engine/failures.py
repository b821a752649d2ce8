"""What a user is told when a job fails: the true cause, and that they did not pay.

Each message is complete and says "not charged" exactly once; front ends show it as it
is (adding at most the error code, the job id and a hint), never wrapping it in a second
cause or a second "nothing was charged". Who is blamed follows the table in
docs/providers.md: only FailureCategory.USER asks the user to change the prompt or image.
"""

from __future__ import annotations

from bot.core.models import ErrorKind, FailureCategory, UserError

KIND_FOR_CATEGORY = {
    FailureCategory.USER: ErrorKind.USER_INPUT,
    FailureCategory.CONFIG: ErrorKind.PROVIDER_CONFIG,
    FailureCategory.REQUEST: ErrorKind.PROVIDER_CONFIG,  # the bot's request or setup
    FailureCategory.TRANSIENT: ErrorKind.PROVIDER_OUTAGE,
    FailureCategory.GONE: ErrorKind.PROVIDER_OUTAGE,
    # The bot never asks these providers to cancel: a cancelled task is their doing.
    FailureCategory.CANCELLED: ErrorKind.PROVIDER_OUTAGE,
}

NOT_CHARGED = "You were not charged."
# The only words that ask the user to change their request (FailureCategory.USER only).
CHANGE_REQUEST = "Please change the prompt or image and try again."
_DETAIL_LIMIT = 200


def _detail(code: str, message: str) -> str:
    text = " ".join((message or code).split())
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "…"


def category_message(category: FailureCategory, code: str, message: str = "") -> str:
    """The sentence for a failure reported by the provider (task or HTTP error)."""
    if category is FailureCategory.USER:
        return (
            f"The image service refused your prompt or image ({_detail(code, message)}). "
            f"{CHANGE_REQUEST} {NOT_CHARGED}"
        )
    if category is FailureCategory.REQUEST:
        return (
            "The image service could not accept the request the bot sent "
            f"({_detail(code, message)}). This is a problem on the bot's side, not with your "
            f"prompt or image; a server admin needs to look at it. {NOT_CHARGED}"
        )
    if category is FailureCategory.CONFIG:
        return (
            "The bot's image service account has a problem (billing, key or access). This is "
            "not your fault: a server admin needs to check the bot's provider account. "
            f"{NOT_CHARGED}"
        )
    if category is FailureCategory.GONE:
        return (
            "The image service lost this job's task (it no longer knows it). A new task was "
            f"not started behind your back, so you are never billed twice. {NOT_CHARGED} "
            "You can try again."
        )
    if category is FailureCategory.CANCELLED:
        return f"The image service cancelled this task on its side. {NOT_CHARGED}"
    return (
        "The image service is failing or overloaded right now; please try again in a few "
        f"minutes. {NOT_CHARGED}"
    )


def for_category(
    category: FailureCategory, code: str, message: str = "", *, job_id: str | None = None
) -> UserError:
    return UserError(
        kind=KIND_FOR_CATEGORY.get(category, ErrorKind.PROVIDER_OUTAGE),
        message=category_message(category, code, message),
        code=code,
        job_id=job_id,
        retry=category is FailureCategory.GONE,
        category=category,
    )


def retry_note(code: str) -> str:
    """Shown on the status card while a task that failed transiently is replaced."""
    return f"The image service failed this attempt ({code}); trying once more at no cost."


def timeout(deadline_seconds: float, job_id: str) -> UserError:
    minutes = max(1, round(deadline_seconds / 60))
    return UserError(
        kind=ErrorKind.TIMEOUT,
        message=(
            f"The image service did not finish within {minutes} minutes, so the job was "
            f"stopped. {NOT_CHARGED}"
        ),
        code="deadline",
        job_id=job_id,
    )


def submit_uncertain(job_id: str) -> UserError:
    return UserError(
        kind=ErrorKind.PROVIDER_OUTAGE,
        message=(
            "The image service did not answer clearly: it may have started this; it was not "
            f"sent again so you are not billed twice. {NOT_CHARGED} You can try again."
        ),
        code="submit_uncertain",
        job_id=job_id,
        retry=True,
    )


def interrupted_submit(job_id: str) -> UserError:
    return UserError(
        kind=ErrorKind.PROVIDER_OUTAGE,
        message=(
            "The bot restarted while sending this job, so the image service may have "
            "started it. It was not sent again, so you are not billed twice. "
            f"{NOT_CHARGED} You can try again."
        ),
        code="submit_interrupted",
        job_id=job_id,
        retry=True,
    )


def cancelled(job_id: str, by_admin: bool) -> UserError:
    who = "an admin" if by_admin else "you"
    return UserError(
        kind=ErrorKind.CANCELLED,
        message=f"Cancelled by {who}. {NOT_CHARGED}",
        code="cancelled",
        job_id=job_id,
    )


def no_results(job_id: str, reason: str) -> UserError:
    return UserError(
        kind=ErrorKind.PROVIDER_OUTAGE,
        message=f"The image service finished but {reason}. {NOT_CHARGED} Please try again.",
        code="no_results",
        job_id=job_id,
    )


def provider_changed(job_id: str) -> UserError:
    return UserError(
        kind=ErrorKind.PROVIDER_CONFIG,
        message=(
            "The bot's image service was changed while this job waited, so it was stopped. "
            f"{NOT_CHARGED} Please try again."
        ),
        code="provider_changed",
        job_id=job_id,
    )


def internal(job_id: str) -> UserError:
    return UserError(
        kind=ErrorKind.INTERNAL,
        message=(
            f"Something went wrong inside the bot (job {job_id}); it has been logged. {NOT_CHARGED}"
        ),
        code="internal",
        job_id=job_id,
    )


def partial_note(failed: int, count: int) -> str:
    noun = "image" if count == 1 else "images"
    return f"{failed} of {count} {noun} failed; you were not charged for them."

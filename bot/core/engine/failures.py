"""What a user is told when a job fails: the true cause, and that they did not pay.

Provider failure categories map to error kinds one to one; the bot's own billing
or key trouble is never worded as the user's fault.
"""

from __future__ import annotations

from bot.core.models import ErrorKind, FailureCategory, UserError

KIND_FOR_CATEGORY = {
    FailureCategory.USER: ErrorKind.USER_INPUT,
    FailureCategory.CONFIG: ErrorKind.PROVIDER_CONFIG,
    FailureCategory.TRANSIENT: ErrorKind.PROVIDER_OUTAGE,
    FailureCategory.CANCELLED: ErrorKind.CANCELLED,
}

NOT_CHARGED = "You were not charged."
_DETAIL_LIMIT = 200


def _detail(code: str, message: str) -> str:
    text = " ".join((message or code).split())
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "…"


def provider_failure_message(kind: ErrorKind, code: str, message: str = "") -> str:
    """The sentence for a failure reported by the provider (task or HTTP error)."""
    if kind is ErrorKind.USER_INPUT:
        return (
            f"The image service refused this request ({_detail(code, message)}). "
            f"Please change the prompt or image and try again. {NOT_CHARGED}"
        )
    if kind is ErrorKind.PROVIDER_CONFIG:
        return (
            "The bot's image service is unavailable (billing/key); admins have been told. "
            f"{NOT_CHARGED}"
        )
    if kind is ErrorKind.CANCELLED:
        return f"The image service cancelled this job. {NOT_CHARGED}"
    return (
        "The image service is failing or overloaded right now; please try again later. "
        f"{NOT_CHARGED}"
    )


def for_category(
    category: FailureCategory, code: str, message: str = "", *, job_id: str | None = None
) -> UserError:
    kind = KIND_FOR_CATEGORY.get(category, ErrorKind.PROVIDER_OUTAGE)
    return UserError(
        kind=kind,
        message=provider_failure_message(kind, code, message),
        code=code,
        job_id=job_id,
    )


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
            "The image service did not confirm that it received the request. It was not "
            f"sent again, to avoid paying twice. {NOT_CHARGED} Please try again."
        ),
        code="submit_uncertain",
        job_id=job_id,
    )


def interrupted_submit(job_id: str) -> UserError:
    return UserError(
        kind=ErrorKind.PROVIDER_OUTAGE,
        message=(
            "The bot restarted while sending this job, so it cannot tell whether the image "
            f"service got it. It was not sent again, to avoid paying twice. {NOT_CHARGED} "
            "Please try again."
        ),
        code="submit_interrupted",
        job_id=job_id,
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

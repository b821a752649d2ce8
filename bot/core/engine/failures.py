"""Why a job failed, as facts: the kind (whose cause it is), the code, the provider's
detail. bot/chat/wording.py says them in words, once. Who is blamed follows the table
in docs/providers.md: only FailureCategory.USER is the user's prompt or image.
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


def for_category(
    category: FailureCategory, code: str, message: str = "", *, job_id: str | None = None
) -> UserError:
    """A failure the provider reported (a task's or an HTTP error's)."""
    return UserError(
        kind=KIND_FOR_CATEGORY.get(category, ErrorKind.PROVIDER_OUTAGE),
        code=code,
        detail=message or None,
        job_id=job_id,
        retry=category is FailureCategory.GONE,
        category=category,
    )


def timeout(deadline_seconds: float, job_id: str) -> UserError:
    minutes = max(1, round(deadline_seconds / 60))
    return UserError(kind=ErrorKind.TIMEOUT, code="deadline", detail=str(minutes), job_id=job_id)


def submit_uncertain(job_id: str) -> UserError:
    """The submit may have reached the provider: not resent, offered to try again."""
    return UserError(
        kind=ErrorKind.PROVIDER_OUTAGE, code="submit_uncertain", job_id=job_id, retry=True
    )


def interrupted_submit(job_id: str) -> UserError:
    return UserError(
        kind=ErrorKind.PROVIDER_OUTAGE, code="submit_interrupted", job_id=job_id, retry=True
    )


def cancelled(job_id: str, by_admin: bool) -> UserError:
    who = "admin" if by_admin else "owner"
    return UserError(kind=ErrorKind.CANCELLED, code="cancelled", detail=who, job_id=job_id)


def no_results(job_id: str, reason: str) -> UserError:
    return UserError(
        kind=ErrorKind.PROVIDER_OUTAGE, code="no_results", detail=reason, job_id=job_id
    )


def provider_changed(job_id: str) -> UserError:
    return UserError(kind=ErrorKind.PROVIDER_CONFIG, code="provider_changed", job_id=job_id)


def internal(job_id: str) -> UserError:
    return UserError(kind=ErrorKind.INTERNAL, code="internal", job_id=job_id)

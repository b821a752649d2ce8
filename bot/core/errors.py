"""Exceptions that carry the true cause of a failure."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.core.models import ErrorKind, FailureCategory, Period, UserError


class WanbotError(Exception):
    """Base for errors that have a message fit for the user."""

    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def to_user_error(self, job_id: str | None = None) -> UserError:
        return UserError(kind=self.kind, message=self.message, code=self.code, job_id=job_id)


class ValidationFailed(WanbotError):
    """The user's prompt, options or images cannot be used. Nothing was spent."""

    kind = ErrorKind.USER_INPUT

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems) if problems else "invalid request", code="invalid")
        self.problems = problems


class QuotaReason(StrEnum):
    BLOCKED = "blocked"
    USER_LIMIT = "user_limit"
    SERVER_BUDGET = "server_budget"
    RUNNING_LIMIT = "running_limit"
    QUEUED_LIMIT = "queued_limit"


@dataclass(frozen=True)
class RefusalFacts:
    """The numbers behind a quota refusal; bot/chat/wording.py puts them in words."""

    needed: int = 0  # images the request needs
    allowance: int | None = None  # images allowed this period (limit plus grants)
    used: int = 0
    period: Period | None = None
    running: int = 0  # the user's jobs at the provider
    queued: int = 0  # the user's jobs waiting
    budget: int | None = None  # the server's monthly budget


class QuotaDenied(WanbotError):
    """The user's quota or limits refuse the request. Nothing was reserved. `message`
    is for logs; users read `bot.chat.wording.quota_refusal` of the facts."""

    kind = ErrorKind.QUOTA

    def __init__(
        self,
        reason: QuotaReason,
        message: str,
        *,
        remaining: int | None = None,
        resets_at: float | None = None,
        facts: RefusalFacts | None = None,
    ) -> None:
        super().__init__(message, code=reason.value)
        self.reason = reason
        self.remaining = remaining
        self.resets_at = resets_at
        self.facts = facts or RefusalFacts()


class NotFound(WanbotError):
    kind = ErrorKind.USER_INPUT


class NotAllowed(WanbotError):
    kind = ErrorKind.USER_INPUT


class ShuttingDown(WanbotError):
    """The bot is stopping; nothing was reserved."""

    kind = ErrorKind.INTERNAL

    def __init__(self) -> None:
        super().__init__(
            "The bot is restarting, so nothing was started and nothing was charged. "
            "Please try again in a minute.",
            code="shutting_down",
        )


class ProviderError(Exception):
    """A provider call failed. `category` decides retry and blame."""

    def __init__(
        self,
        category: FailureCategory,
        code: str,
        message: str = "",
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.category = category
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after


class SubmitUncertain(ProviderError):
    """A submit may have reached the provider (e.g. timed out after sending).

    Never retried: the provider might already be generating, and charging.
    """

    def __init__(self, message: str = "the provider did not answer the submit") -> None:
        super().__init__(FailureCategory.TRANSIENT, "submit_uncertain", message)

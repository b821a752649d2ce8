"""Domain models shared by every part of the bot."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Mode(StrEnum):
    TEXT_TO_IMAGE = "text-to-image"
    IMAGE_TO_IMAGE = "image-to-image"


class JobState(StrEnum):
    """Where a job is. What each state means after a restart:

    QUEUED      persisted, not yet sent: submit it.
    SUBMITTING  a submit may have reached the provider: fail and refund (never resubmit
                blindly, the provider would charge twice).
    RUNNING     the provider has a task id: resume polling.
    DELIVERING  results known: download and deliver again unless delivery was recorded.
    DONE / FAILED / CANCELLED are final.
    """

    QUEUED = "queued"
    SUBMITTING = "submitting"
    RUNNING = "running"
    DELIVERING = "delivering"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


ACTIVE_STATES = (JobState.QUEUED, JobState.SUBMITTING, JobState.RUNNING, JobState.DELIVERING)


class TaskState(StrEnum):
    """A provider task's state, normalised across providers."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class FailureCategory(StrEnum):
    """Who can fix a failure. Decides retries and what the user is told; docs/providers.md
    maps every documented provider status and code to one of these."""

    USER = "user"  # the user's prompt or image refused / unreadable: tell the user, no retry
    TRANSIENT = "transient"  # 429, 5xx, timeouts: the provider's outage
    CONFIG = "config"  # 401/402/403: the bot's provider account; never blame the user
    REQUEST = "request"  # the bot's own request was malformed: never blame the user
    GONE = "gone"  # the provider no longer knows the task: never replaced automatically
    CANCELLED = "cancelled"  # the provider cancelled the task (the bot never asks it to)


class ErrorKind(StrEnum):
    """The true cause, as shown to the user."""

    USER_INPUT = "user_input"  # the user's prompt or image
    QUOTA = "quota"  # the user's (or server's) quota or limits
    PROVIDER_CONFIG = "provider_config"  # the bot's request or setup: billing, key, access
    PROVIDER_OUTAGE = "provider_outage"  # the provider is failing or overloaded
    TIMEOUT = "timeout"  # the job's deadline passed
    CANCELLED = "cancelled"
    INTERNAL = "internal"  # a bug of ours


class ProviderFailure(BaseModel):
    code: str
    message: str = ""
    category: FailureCategory


class TaskStatus(BaseModel):
    state: TaskState
    progress: int | None = None  # 0-100 when the provider reports it
    eta_seconds: float | None = None  # provider's estimate of the remaining time
    result_urls: list[str] = Field(default_factory=list)
    failed_count: int = 0  # images the provider reports as failed in a partial success
    failure: ProviderFailure | None = None


class TaskHandle(BaseModel):
    provider: str
    task_id: str
    estimated_seconds: float | None = None  # a hint from the submit answer, when given


class ImageRef(BaseModel):
    """An input image as the provider will fetch it."""

    url: str  # https URL, or a data: URI where the provider accepts one
    width: int | None = None
    height: int | None = None


class GenerationRequest(BaseModel):
    """A validated request, ready for a provider."""

    model_config = ConfigDict(frozen=True)

    prompt: str
    negative_prompt: str | None = None
    aspect_ratio: str = "1:1"
    count: int = Field(default=1, ge=1, le=4)
    images: list[ImageRef] = Field(default_factory=list)
    seed: int | None = None

    @property
    def mode(self) -> Mode:
        return Mode.IMAGE_TO_IMAGE if self.images else Mode.TEXT_TO_IMAGE


class Capabilities(BaseModel):
    """What a provider accepts, so the bot never sends what it would reject."""

    name: str
    max_input_images: int
    aspect_ratios_t2i: list[str]
    aspect_ratios_i2i: list[str]
    supports_negative_prompt: bool
    max_count: int = 4
    max_prompt_chars: int = 2000
    max_negative_chars: int = 500
    supports_cancel: bool = False
    supports_callback: bool = False
    accepts_data_uri: bool = False
    price_per_image_usd: float = 0.0
    # The provider documents that a failed task costs nothing, so one failed with a
    # transient code may be replaced once; without that promise it never is.
    failed_tasks_free: bool = False

    def aspect_ratios(self, mode: Mode) -> list[str]:
        return self.aspect_ratios_i2i if mode is Mode.IMAGE_TO_IMAGE else self.aspect_ratios_t2i


# Space.id of requests made outside any server (console, direct messages): the
# settings' defaults apply unless an admin configures this space by name.
DIRECT_SPACE = "direct"


class Space(BaseModel):
    """Where quotas, usage, settings and reports are kept: one Discord server, one Slack
    workspace, or a platform's direct use. The same id on two platforms is two spaces."""

    model_config = ConfigDict(frozen=True)

    platform: str  # "discord", "slack", "console", ...
    id: str  # the Discord server id, the Slack team id, or DIRECT_SPACE


class Requester(BaseModel):
    """Who asked, and where the answer goes."""

    platform: str  # "discord", "console", ...
    user_id: str
    guild_id: str | None = None  # server; None for direct use (console)
    channel_id: str | None = None
    role_ids: list[str] = Field(default_factory=list)
    is_admin: bool = False
    display_name: str | None = None

    @property
    def space(self) -> Space:
        """The space this request's quota counts in."""
        return Space(platform=self.platform, id=self.guild_id or DIRECT_SPACE)


class Job(BaseModel):
    """A job as stored. `delivery` holds front-end data (message ids, tokens)."""

    id: str
    requester: Requester
    provider: str
    request: GenerationRequest
    state: JobState = JobState.QUEUED
    task_id: str | None = None
    progress: int | None = None
    reserved: int = 0  # images reserved against the quota
    delivered: int = 0  # images delivered (and charged)
    # USD per image when the job was admitted (set by the store; None before migration
    # 0003): what its charge costs, whatever the price is now.
    unit_price_usd: float | None = None
    result_urls: list[str] = Field(default_factory=list)
    error_kind: ErrorKind | None = None
    error_code: str | None = None
    error_message: str | None = None
    thread_id: str | None = None
    status_message_id: str | None = None
    delivery: dict[str, Any] = Field(default_factory=dict)
    # The token a provider's callback must carry for this job (its own column).
    callback_token: str | None = None
    parent_job_id: str | None = None  # reroll / edit of an earlier job
    created_at: float
    updated_at: float
    submitted_at: float | None = None
    finished_at: float | None = None
    deadline_at: float | None = None  # wall-clock seconds
    task_attempts: int = 0  # provider tasks replaced after failing (at most once)


class ProgressUpdate(BaseModel):
    state: JobState
    progress: int | None = None
    eta_seconds: float | None = None
    queue_position: int | None = None
    # The code of a failed task being replaced once at no cost (the card says so).
    retrying_after: str | None = None


class ResultImage(BaseModel):
    """A downloaded result, ready to re-post."""

    index: int
    data: bytes
    content_type: str
    filename: str
    width: int | None = None
    height: int | None = None


class UserError(BaseModel):
    """Why a job (or request) failed, as facts: bot/chat/wording.py says it in words."""

    kind: ErrorKind
    code: str | None = None
    job_id: str | None = None
    # The provider's own words or code, a timeout's minutes, what was missing.
    detail: str | None = None
    # Set only by a front end that states a cause of its own (e.g. a lost permission).
    message: str = ""
    # The server's admins have been told (now, or of the same cause within the hour).
    admins_told: bool = False
    # The same request may be started again on the user's word (a Try again button):
    # the failure left the bot unsure whether the provider started it, so it did not.
    retry: bool = False
    # Who can fix it, when the provider said (decides what the admins are told).
    category: FailureCategory | None = None


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class UsageReport(BaseModel):
    """What /usage shows a user."""

    guild_id: str
    user_id: str
    period: Period
    used: int  # charged plus still reserved in this period
    in_flight: int  # reserved by jobs not finished yet
    limit: int | None  # None: unlimited (e.g. exempt admin)
    bonus: int = 0  # extra images granted by admins (included in `limit`)
    remaining: int | None
    resets_at: float  # wall-clock seconds
    blocked: bool = False
    exempt: bool = False
    server_budget: int | None = None  # images per month for the whole server
    server_used: int = 0


class UsageRow(BaseModel):
    user_id: str
    images: int
    cost_usd: float


class DayUsage(BaseModel):
    """Images charged on one UTC day, and their cost (for the spend chart)."""

    day: float  # the day's start, epoch seconds (UTC)
    images: int
    cost_usd: float


class ServerReport(BaseModel):
    guild_id: str
    period_start: float
    images: int
    cost_usd: float
    budget: int | None
    users: list[UsageRow]
    days: list[DayUsage] = Field(default_factory=list)  # days with charges, in order


class GuildConfig(BaseModel):
    """Per-server settings changed with /config."""

    guild_id: str
    platform: str = "discord"  # with guild_id: the Space these settings belong to
    delivery_mode: str = "thread"  # "thread" or "inline"
    normalize_images: bool = True
    allowed_channel_ids: list[str] = Field(default_factory=list)  # empty: everywhere
    admin_exempt: bool = False
    alerts_channel_id: str | None = None  # admin alerts go here; None: DM the owner


class PostedResults(BaseModel):
    """A job's results that a front end finds already posted (before a crash)."""

    images: int  # images in the posts found: what the job is charged
    delivery: dict[str, Any] = Field(default_factory=dict)  # merged into job.delivery


class AlertCause(StrEnum):
    """Why the server admins are told something (one message per cause, server, hour)."""

    PROVIDER_SETUP = "provider_setup"  # billing, key or access
    BOT_REQUEST = "bot_request"  # the provider cannot accept a request the bot built
    PROVIDER_OUTAGE = "provider_outage"  # the provider failing for over 5 minutes
    BUDGET_EXHAUSTED = "budget_exhausted"  # the server's monthly image budget is used up


class AdminAlert(BaseModel):
    """A fact for the admins of one server (None: the bot's operator, no server)."""

    model_config = ConfigDict(frozen=True)

    cause: AlertCause
    guild_id: str | None
    detail: str  # a sentence for the admins, no secrets
    # The platform of that server (Discord and Slack ids may collide); None: any.
    platform: str | None = None

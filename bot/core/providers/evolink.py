"""EvoLink (https://evolink.ai): an OpenAI-style task API with progress and estimates."""

from __future__ import annotations

import base64
import random
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from bot.core.clock import Clock
from bot.core.download import SafeDownloader
from bot.core.errors import ProviderError
from bot.core.models import (
    Capabilities,
    FailureCategory,
    GenerationRequest,
    TaskHandle,
    TaskState,
    TaskStatus,
)
from bot.core.providers.base import (
    HttpProvider,
    RetryPolicy,
    Timeouts,
    check_request,
    finished,
    task_failure,
)
from bot.core.providers.sizes import SIZED_ASPECT_RATIOS, size_for

DEFAULT_BASE_URL = "https://api.evolink.ai"
DEFAULT_FILES_URL = "https://files-api.evolink.ai"
MODEL_T2I = "wan2.5-text-to-image"
MODEL_I2I = "wan2.5-image-to-image"

U, T, C, R, G, X = (
    FailureCategory.USER,
    FailureCategory.TRANSIENT,
    FailureCategory.CONFIG,
    FailureCategory.REQUEST,
    FailureCategory.GONE,
    FailureCategory.CANCELLED,
)
# Keep in step with the table in docs/providers.md (tests/test_blame_table.py reads it).
ERROR_CODES: dict[str, FailureCategory] = {
    # task failures: the user's prompt or image
    "content_policy_violation": U,
    "image_processing_error": U,
    "image_dimension_mismatch": U,
    # the bot builds every parameter (the user's words are validated first)
    "invalid_parameters": R,
    "request_cancelled": X,  # the bot never cancels: EvoLink did
    # task failures on EvoLink's side
    "generation_failed_no_content": T,
    "service_error": T,
    "generation_timeout": T,
    "resource_exhausted": T,
    "quota_exceeded": T,
    "service_unavailable": T,
    "resource_not_found": T,
    "unknown_error": T,
    # HTTP errors
    "invalid_request": R,
    "invalid_task_id": G,
    "task_not_found": G,
    "unauthorized": C,
    "insufficient_quota": C,
    "model_access_denied": C,
    "rate_limit_exceeded": T,
    "internal_error": T,
}


# --- wire formats (extra fields are ignored; numeric strings are accepted) ----------


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class EvolinkError(_Wire):
    code: str | None = None  # documented as a string, seen as an integer too
    message: str = ""
    type: str | None = None
    param: Any = None

    @field_validator("code", mode="before")
    @classmethod
    def _code_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int | float) else value


class EvolinkErrorBody(_Wire):
    error: EvolinkError


class EvolinkTaskInfo(_Wire):
    can_cancel: bool | None = None
    estimated_time: float | None = None  # seconds


class EvolinkTask(_Wire):
    id: str
    status: str
    model: str | None = None
    created: int | None = None
    progress: float | None = None
    results: list[str] = Field(default_factory=list)
    error: EvolinkError | None = None
    task_info: EvolinkTaskInfo | None = None
    usage: dict[str, Any] | None = None


class EvolinkToken(_Wire):
    remaining_credits: float


class EvolinkCreditsData(_Wire):
    token: EvolinkToken


class EvolinkCredits(_Wire):
    data: EvolinkCreditsData


class EvolinkUploadData(_Wire):
    file_url: str


class EvolinkUpload(_Wire):
    success: bool = True
    data: EvolinkUploadData


# --- the provider -------------------------------------------------------------------


class EvolinkProvider(HttpProvider):
    name = "evolink"
    capabilities = Capabilities(
        name="evolink",
        max_input_images=2,
        aspect_ratios_t2i=list(SIZED_ASPECT_RATIOS),
        # Image-to-image takes no size: EvoLink picks the output shape itself, so the
        # bot offers no choice there rather than promise a shape it cannot ask for.
        aspect_ratios_i2i=["1:1"],
        supports_negative_prompt=False,
        # The answer says `can_cancel`, but no cancel route is documented: see cancel().
        supports_cancel=False,
        supports_callback=True,
        accepts_data_uri=False,
        # Not published per image; EvoLink bills credits (`usage.credits_reserved`).
        # An estimate in line with the other resellers: set PRICE_PER_IMAGE_USD to
        # your dashboard's figure for exact reports.
        price_per_image_usd=0.03,
        # "pre-charged based on n, and the actual charge will be based on the number of
        # generated images": a failed task generated none.
        failed_tasks_free=True,
    )
    error_categories = ERROR_CODES
    default_result_hosts = ("*.evolink.ai", "*.aliyuncs.com")

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_key: SecretStr,
        base_url: str,
        files_url: str,
        clock: Clock,
        *,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        downloader: SafeDownloader | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(
            session,
            api_key,
            base_url,
            clock,
            timeouts=timeouts,
            retry=retry,
            downloader=downloader,
            rng=rng,
        )
        self._files_url = files_url.rstrip("/")

    async def submit(
        self, request: GenerationRequest, *, callback_url: str | None = None
    ) -> TaskHandle:
        check_request(request, self.capabilities)
        body: dict[str, Any]
        if request.images:
            body = {
                "model": MODEL_I2I,
                "prompt": request.prompt,
                "image_urls": [image.url for image in request.images],
            }
        else:
            width, height = size_for(request.aspect_ratio)
            body = {"model": MODEL_T2I, "prompt": request.prompt, "size": f"{width}x{height}"}
        body["n"] = request.count  # EvoLink pre-charges per n
        if callback_url:
            body["callback_url"] = callback_url
        task = await self._submit(
            self._url("/v1/images/generations"), body, EvolinkTask.model_validate
        )
        estimate = task.task_info.estimated_time if task.task_info else None
        return TaskHandle(provider=self.name, task_id=task.id, estimated_seconds=estimate)

    async def status(self, task_id: str) -> TaskStatus:
        return await self._task_status(
            self._url(f"/v1/tasks/{quote(task_id, safe='')}"),
            lambda payload: to_status(EvolinkTask.model_validate(payload)),
            missing_codes=("task_not_found", "invalid_task_id"),
        )

    async def balance(self) -> float | None:
        credits = await self._query("GET", self._url("/v1/credits"), EvolinkCredits.model_validate)
        return credits.data.token.remaining_credits

    async def cancel(self, task_id: str) -> bool:
        # EvoLink reports `can_cancel` and a `request_cancelled` failure, but documents no
        # cancel route. The engine stops waiting instead; EvoLink still charges for the
        # images it generates (credits reserved at submit are returned only on failure).
        return False

    async def host(self, data: bytes, content_type: str, filename: str) -> str:
        """ImageHost: upload an input image to EvoLink's file host (kept 72 h)."""
        encoded = base64.b64encode(data).decode("ascii")
        upload = await self._query(
            "POST",
            f"{self._files_url}/api/v1/files/upload/base64",
            EvolinkUpload.model_validate,
            json_body={"base64_data": f"data:{content_type};base64,{encoded}"},
        )
        if not upload.success:
            raise ProviderError(FailureCategory.TRANSIENT, "upload_failed", "EvoLink refused it")
        return upload.data.file_url

    def _is_error_envelope(self, payload: Any) -> bool:
        try:
            EvolinkErrorBody.model_validate(payload)
        except ValueError:
            return False
        return True

    def _error_code(self, status: int, payload: Any) -> tuple[str | None, str]:
        # {"error": {"code": "insufficient_quota" | 402, "message": ..., "type": ...}}
        try:
            error = EvolinkErrorBody.model_validate(payload).error
        except ValueError:
            return None, ""
        return error.code, error.message


def to_status(task: EvolinkTask) -> TaskStatus:
    status = task.status.lower()
    progress = None if task.progress is None else max(0, min(100, int(task.progress)))
    eta = task.task_info.estimated_time if task.task_info else None
    if eta is not None and progress is not None:
        eta = eta * (100 - progress) / 100  # the estimate is for the whole task
    if status == "completed":
        return finished(task.results)
    if status in ("failed", "cancelled"):
        error = task.error or EvolinkError(
            code="request_cancelled" if status == "cancelled" else None
        )
        return TaskStatus(
            state=TaskState.FAILED,
            progress=progress,
            failure=task_failure(error.code, error.message, ERROR_CODES),
        )
    if status == "pending":
        return TaskStatus(state=TaskState.QUEUED, progress=progress, eta_seconds=eta)
    return TaskStatus(state=TaskState.RUNNING, progress=progress, eta_seconds=eta)


def task_id_from_callback(payload: Any) -> str | None:
    """The task a webhook is about (the body equals a status answer; never trusted)."""
    if isinstance(payload, dict) and payload.get("id"):
        return str(payload["id"])
    return None

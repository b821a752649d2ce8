"""DashScope (Alibaba Model Studio): Wan 2.5 from the source, asynchronous calls only."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from bot.core.models import (
    Capabilities,
    FailureCategory,
    GenerationRequest,
    ProviderFailure,
    TaskHandle,
    TaskState,
    TaskStatus,
)
from bot.core.providers.base import (
    HttpProvider,
    check_request,
    finished,
    gone_task,
    task_failure,
)
from bot.core.providers.sizes import SIZED_ASPECT_RATIOS, size_for

DEFAULT_BASE_URL = "https://dashscope-intl.aliyuncs.com/api/v1"
MODEL_T2I = "wan2.5-t2i-preview"
MODEL_I2I = "wan2.5-i2i-preview"

U, T, C, R = (
    FailureCategory.USER,
    FailureCategory.TRANSIENT,
    FailureCategory.CONFIG,
    FailureCategory.REQUEST,
)
# Codes come in dotted families ("Throttling.RateQuota"); the family decides.
# Keep in step with the table in docs/providers.md (tests/test_blame_table.py reads it).
ERROR_CODES: dict[str, FailureCategory] = {
    "DataInspectionFailed": U,  # the prompt or an input image failed content inspection
    "InvalidParameter.DataInspection": U,  # an input image inspection could not read
    "IPInfringementSuspect": U,
    "InvalidFile": U,  # an input image DashScope cannot read
    # the bot builds the parameters and hosts the input URLs
    "InvalidParameter": R,
    "InvalidURL": R,
    "Arrearage": C,
    "InvalidApiKey": C,
    "AccessDenied": C,
    "Throttling": T,
    "InternalError": T,
    "SystemError": T,
    "RequestTimeOut": T,
}
# Task states that say the task is gone (ids live 24 h).
TASK_EXPIRED = "task_expired"


# --- wire formats (extra fields are ignored; numeric strings are accepted) ----------


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class DashscopeResult(_Wire):
    """One image: a url, or (in a partial success) a code and message instead."""

    url: str | None = None
    code: str | None = None
    message: str | None = None
    orig_prompt: str | None = None
    actual_prompt: str | None = None


class DashscopeMetrics(_Wire):
    total: int = Field(default=0, alias="TOTAL")
    succeeded: int = Field(default=0, alias="SUCCEEDED")
    failed: int = Field(default=0, alias="FAILED")


class DashscopeOutput(_Wire):
    task_id: str
    task_status: str
    results: list[DashscopeResult] = Field(default_factory=list)
    task_metrics: DashscopeMetrics | None = None
    code: str | None = None
    message: str | None = None


class DashscopeTaskReply(_Wire):
    output: DashscopeOutput
    request_id: str | None = None
    usage: dict[str, Any] | None = None


class DashscopeErrorBody(_Wire):
    code: str | None = None
    message: str = ""
    request_id: str | None = None


# --- the provider -------------------------------------------------------------------


class DashscopeProvider(HttpProvider):
    name = "dashscope"
    capabilities = Capabilities(
        name="dashscope",
        max_input_images=3,
        aspect_ratios_t2i=list(SIZED_ASPECT_RATIOS),
        aspect_ratios_i2i=list(SIZED_ASPECT_RATIOS),
        supports_negative_prompt=True,
        supports_cancel=False,
        supports_callback=False,
        accepts_data_uri=True,
        # Model Studio (international) list price for wan2.5-t2i/i2i-preview; check your
        # region's price and set PRICE_PER_IMAGE_USD when it differs.
        price_per_image_usd=0.03,
    )
    error_categories = ERROR_CODES
    default_result_hosts = ("*.aliyuncs.com",)

    def _headers(self) -> dict[str, str]:
        # Without it DashScope refuses the call (it would try to answer synchronously).
        return {**super()._headers(), "X-DashScope-Async": "enable"}

    async def submit(
        self, request: GenerationRequest, *, callback_url: str | None = None
    ) -> TaskHandle:
        # DashScope has no webhooks: `callback_url` is ignored and the engine polls.
        check_request(request, self.capabilities)
        width, height = size_for(request.aspect_ratio)
        task_input: dict[str, Any] = {"prompt": request.prompt}
        if request.negative_prompt:
            task_input["negative_prompt"] = request.negative_prompt
        # Always explicit: DashScope defaults to 4 images and bills each one.
        parameters: dict[str, Any] = {"size": f"{width}*{height}", "n": request.count}
        if request.seed is not None:
            parameters["seed"] = request.seed
        if request.images:
            task_input["images"] = [image.url for image in request.images]
            path, model = "/services/aigc/image2image/image-synthesis", MODEL_I2I
        else:
            parameters["watermark"] = False
            path, model = "/services/aigc/text2image/image-synthesis", MODEL_T2I
        body = {"model": model, "input": task_input, "parameters": parameters}
        reply = await self._submit(self._url(path), body, DashscopeTaskReply.model_validate)
        return TaskHandle(provider=self.name, task_id=reply.output.task_id)

    async def status(self, task_id: str) -> TaskStatus:
        return await self._task_status(
            self._url(f"/tasks/{quote(task_id, safe='')}"),
            lambda payload: to_status(DashscopeTaskReply.model_validate(payload).output),
        )

    async def balance(self) -> float | None:
        return None  # DashScope has no balance API; see the Alibaba Cloud console

    def _is_error_envelope(self, payload: Any) -> bool:
        if not isinstance(payload, dict):
            return False
        return isinstance(payload.get("code"), str) and bool(payload["code"])

    def _error_code(self, status: int, payload: Any) -> tuple[str | None, str]:
        # {"code": "InvalidApiKey", "message": "...", "request_id": "..."}
        try:
            error = DashscopeErrorBody.model_validate(payload)
        except ValueError:
            return None, ""
        return error.code, error.message


def to_status(output: DashscopeOutput) -> TaskStatus:
    status = output.task_status.upper()
    if status == "SUCCEEDED":
        urls = [result.url for result in output.results if result.url]
        errors = [result for result in output.results if not result.url]
        failed = output.task_metrics.failed if output.task_metrics else len(errors)
        first = errors[0] if errors else None
        failure = task_failure(first.code, first.message, ERROR_CODES) if first else None
        return finished(urls, failed_count=max(failed, len(errors)), failure=failure)
    if status == "FAILED":
        return TaskStatus(
            state=TaskState.FAILED, failure=task_failure(output.code, output.message, ERROR_CODES)
        )
    if status == "CANCELED":
        return TaskStatus(
            state=TaskState.FAILED,
            failure=ProviderFailure(
                code="cancelled",
                message="the task was cancelled",
                category=FailureCategory.CANCELLED,
            ),
        )
    if status == "UNKNOWN":
        # Task ids live 24 h: the task expired (or never existed). Nothing will come of it.
        return gone_task(TASK_EXPIRED, "DashScope")
    if status == "PENDING":
        return TaskStatus(state=TaskState.QUEUED)
    return TaskStatus(state=TaskState.RUNNING)

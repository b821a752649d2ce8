"""APIXO (https://apixo.ai): Wan 2.5 behind a `{code, message, data}` envelope."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
    Reply,
    check_request,
    finished,
    task_failure,
)

DEFAULT_BASE_URL = "https://api.apixo.ai/api/v1"
MODEL = "wan-2-5-image"

U, T, C, R = (
    FailureCategory.USER,
    FailureCategory.TRANSIENT,
    FailureCategory.CONFIG,
    FailureCategory.REQUEST,
)
# Task failCodes (an open set; unknown ones are TRANSIENT). Keep in step with the
# table in docs/providers.md (tests/test_blame_table.py reads it).
FAIL_CODES: dict[str, FailureCategory] = {
    "PromptInvalid": U,
    "SensitiveContentDetected": U,
    "ProhibitedContentDetected": U,
    "InputImageSensitiveContentDetected": U,
    "NSFW": U,
    "PromptLengthExceeded": U,
    # the bot's request: "required fields are missing or malformed"
    "MissingParameter": R,
    "BadRequest": R,
    "RateLimitExceeded": T,
    "Task TimeOut": T,
    "Timeout": T,
}


# --- wire formats (extra fields are ignored; numeric strings are accepted) ----------


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ApixoEnvelope(_Wire):
    code: int
    message: str = ""
    data: Any = None


class ApixoSubmitData(_Wire):
    task_id: str = Field(alias="taskId")


class ApixoResultJson(_Wire):
    result_urls: list[str] = Field(default_factory=list, alias="resultUrls")


class ApixoTask(_Wire):
    task_id: str = Field(alias="taskId")
    state: str
    # A JSON document inside a string: parsed a second time here.
    result: ApixoResultJson | None = Field(default=None, alias="resultJson")
    fail_code: str | None = Field(default=None, alias="failCode")
    fail_msg: str | None = Field(default=None, alias="failMsg")
    create_time: int | None = Field(default=None, alias="createTime")
    complete_time: int | None = Field(default=None, alias="completeTime")
    cost_time: int | None = Field(default=None, alias="costTime")

    @field_validator("result", mode="before")
    @classmethod
    def _parse_json_string(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else None
        return value


class ApixoBalance(_Wire):
    data: float


# --- the provider -------------------------------------------------------------------


class ApixoProvider(HttpProvider):
    name = "apixo"
    capabilities = Capabilities(
        name="apixo",
        max_input_images=3,
        aspect_ratios_t2i=["1:1", "3:4", "4:3", "9:16", "16:9"],
        aspect_ratios_i2i=["1:1", "2:3", "3:2", "3:4", "4:3", "9:16", "16:9", "21:9"],
        supports_negative_prompt=True,
        supports_cancel=False,
        supports_callback=True,
        accepts_data_uri=False,
        price_per_image_usd=0.03,  # APIXO's list price; failed images are refunded
        # "pre-charged for num_images, refunded for failures"
        failed_tasks_free=True,
    )
    error_categories = FAIL_CODES
    default_result_hosts = ("*.apixo.ai",)

    async def submit(
        self, request: GenerationRequest, *, callback_url: str | None = None
    ) -> TaskHandle:
        check_request(request, self.capabilities)
        task_input: dict[str, Any] = {
            "mode": request.mode.value,
            "prompt": request.prompt,
            "aspect_ratio": request.aspect_ratio,
            # Always explicit: APIXO defaults to 4 and pre-charges for every one.
            "num_images": request.count,
        }
        if request.negative_prompt:
            task_input["negative_prompt"] = request.negative_prompt
        if request.images:
            task_input["image_urls"] = [image.url for image in request.images]
        body: dict[str, Any] = {"request_type": "callback" if callback_url else "async"}
        if callback_url:
            body["callback_url"] = callback_url
        body["input"] = task_input
        data = await self._submit(
            self._url(f"/generateTask/{MODEL}"),
            body,
            lambda payload: ApixoSubmitData.model_validate(_data(payload)),
        )
        return TaskHandle(provider=self.name, task_id=data.task_id)

    async def status(self, task_id: str) -> TaskStatus:
        return await self._task_status(
            self._url(f"/statusTask/{MODEL}"),
            lambda payload: self._to_status(ApixoTask.model_validate(_data(payload))),
            params={"taskId": task_id},
        )

    async def balance(self) -> float | None:
        reply = await self._query(
            "GET", self._url("/apikeys/current-balance"), ApixoBalance.model_validate
        )
        return reply.data

    def _to_status(self, task: ApixoTask) -> TaskStatus:
        state = task.state.lower()
        if state == "success":
            return finished(task.result.result_urls if task.result else [])
        if state == "failed":
            return TaskStatus(
                state=TaskState.FAILED,
                failure=task_failure(task.fail_code, task.fail_msg, FAIL_CODES),
            )
        if state == "pending":
            return TaskStatus(state=TaskState.QUEUED)
        return TaskStatus(state=TaskState.RUNNING)  # "processing" (or a new state name)

    def _payload_error(self, payload: Any, reply: Reply) -> ProviderError | None:
        # The envelope's own code can report an error inside an HTTP 200.
        if isinstance(payload, dict):
            code = payload.get("code")
            if isinstance(code, int | str) and str(code).isdigit() and int(code) != 200:
                return self._error(reply, status=int(code))
        return None

    def _is_error_envelope(self, payload: Any) -> bool:
        # {"code": 400, "message": "...", "data": ...}: the code is a number (or its text)
        if not isinstance(payload, dict) or not isinstance(payload.get("message"), str):
            return False
        code = payload.get("code")
        return isinstance(code, int | str) and not isinstance(code, bool) and str(code).isdigit()

    def _error_code(self, status: int, payload: Any) -> tuple[str | None, str]:
        # {"code": 400, "message": "Invalid request", "data": {"error": "Missing ..."}}
        if not isinstance(payload, dict):
            return None, ""
        message = str(payload.get("message") or "")
        data = payload.get("data")
        if isinstance(data, dict) and data.get("error"):
            message = f"{message}: {data['error']}" if message else str(data["error"])
        return None, message


def _data(payload: Any) -> Any:
    return ApixoEnvelope.model_validate(payload).data


def task_id_from_callback(payload: Any) -> str | None:
    """The task a webhook is about (its body is otherwise never trusted)."""
    if isinstance(payload, dict) and isinstance(payload.get("data"), dict):
        task_id = payload["data"].get("taskId")
        return str(task_id) if task_id else None
    return None

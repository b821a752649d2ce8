"""Fake APIXO, EvoLink and DashScope servers: real aiohttp apps on 127.0.0.1 that answer
with the documented payloads verbatim (field names, strings vs numbers, resultJson as a
JSON string, error envelopes, content types), plus a scripting API.

    async with FakeApixo() as fake:
        provider = ApixoProvider(session, SecretStr(fake.api_key), fake.base_url, clock, ...)
        handle = await provider.submit(request)
        fake.complete(handle.task_id, n_images=2)        # or fake.fail(..., "NSFW")
        fake.script_status_fault(Fault.rate_limited(2), Fault.http(502), Fault.hang())
        fake.requests                                    # every request, recorded

Tasks complete when told (`complete`, `fail`, `expire`, `cancel`) or by themselves after
`complete_after` status calls (per fake or per task). Result images are real small PNGs
served by the fake at `/results/<task>/<i>.png`; `break_result` makes one answer 404.
`send_callback` POSTs a task's status body to its callback_url (or a given URL).
A fault `.after_task()` lets the request through first (a submit creates its task) and
then answers with the fault: an answer lost after the provider acted on the request.
`fail_new_tasks(code)` makes every task created from then on fail with that code.
`FakeFileServer` serves arbitrary bytes, for download tests.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import struct
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Self, TypeVar

import aiohttp
from aiohttp import web
from PIL import Image

from bot.core.clock import FakeClock
from tests.fakes.loopback import serve_loopback

T = TypeVar("T")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- shared pieces ------------------------------------------------------------------


def make_png(
    width: int = 64, height: int = 48, color: tuple[int, int, int] = (30, 120, 200)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


@dataclass
class RecordedRequest:
    route: str  # "submit", "status", "balance", "upload", "result", "file"
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    body: bytes


@dataclass
class Fault:
    """One scripted misbehaviour, used instead of the normal answer for one call."""

    kind: str  # "error" | "html" | "malformed" | "hang" | "disconnect" | "reset"
    status: int = 500
    retry_after: str | None = None
    code: str | int | None = None  # the provider's error code (default: per status)
    message: str | None = None
    after: bool = False  # the normal handler runs first (its task is created), then this
    answer_status: int | None = None  # the error body under another HTTP status (200)

    def after_task(self) -> Fault:
        """The same fault, answered after the request was acted on."""
        return replace(self, after=True)

    def with_http_status(self, status: int) -> Fault:
        """The same error body, sent with HTTP `status` (APIXO's envelope inside a 200)."""
        return replace(self, answer_status=status)

    @classmethod
    def http(
        cls,
        status: int,
        *,
        retry_after: float | str | None = None,
        code: str | int | None = None,
        message: str | None = None,
    ) -> Fault:
        """The provider's documented error envelope with this HTTP status."""
        after = None if retry_after is None else str(retry_after)
        return cls("error", status, after, code, message)

    @classmethod
    def rate_limited(cls, retry_after: float | str | None = None) -> Fault:
        return cls.http(429, retry_after=retry_after)

    @classmethod
    def html(cls, status: int = 502) -> Fault:
        """An HTML error page, as a proxy or load balancer would send."""
        return cls("html", status)

    @classmethod
    def malformed_json(cls, status: int = 200) -> Fault:
        return cls("malformed", status)

    @classmethod
    def hang(cls) -> Fault:
        """Never answer until `release()` (or close): triggers client timeouts."""
        return cls("hang")

    @classmethod
    def disconnect(cls) -> Fault:
        """Read the request, then drop the connection without answering."""
        return cls("disconnect")

    @classmethod
    def reset(cls) -> Fault:
        """Read the request, then reset the connection (TCP RST)."""
        return cls("reset")


@dataclass
class FakeTask:
    id: str
    body: Any  # the submitted JSON
    n: int  # images requested (the provider's default when omitted)
    mode: str  # "text-to-image" | "image-to-image"
    state: str = "pending"  # pending | running | succeeded | failed | cancelled | expired
    progress: int = 0
    result_urls: list[str] = field(default_factory=list)
    failed_images: int = 0
    failed_code: str | None = None  # per failed image in a partial success (DashScope)
    fail_code: str | int | None = None
    fail_message: str = ""
    status_calls: int = 0
    complete_after: int | None = None
    callback_url: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None


class FakeProviderServer:
    """What every fake shares: server lifecycle, recording, faults, tasks, results."""

    api_prefix: ClassVar[str] = ""
    default_n: ClassVar[int] = 4

    def __init__(self, *, api_key: str = "test-key", complete_after: int | None = None) -> None:
        self.api_key = api_key
        self.complete_after = complete_after  # status calls before a task completes itself
        self.requests: list[RecordedRequest] = []
        self.tasks: dict[str, FakeTask] = {}
        self.balance: float = 74.87
        self.broken_results: set[tuple[str, int]] = set()
        self._faults: dict[str, deque[Fault]] = {}
        self._fail_new: tuple[str | int, str] | None = None
        self._release = asyncio.Event()
        self._task_order: list[str] = []
        self._handed_out = 0
        self._task_added = asyncio.Event()
        self._pngs: dict[tuple[str, int], bytes] = {}
        self._runner: web.AppRunner | None = None
        self.origin = ""
        self.listen_port = 0  # set before start() to listen on a chosen port

    # --- lifecycle --------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        app = web.Application()
        self._routes(app)
        app.router.add_get("/results/{task_id}/{index}.png", self._wrap("result", self._result))
        self._runner, port = await serve_loopback(
            app, self.listen_port, handler_cancellation=True, shutdown_timeout=0.5
        )
        self.origin = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return self.origin + self.api_prefix

    # --- scripting ----------------------------------------------------------------

    def script_fault(self, route: str, *faults: Fault) -> None:
        self._faults.setdefault(route, deque()).extend(faults)

    def script_submit_fault(self, *faults: Fault) -> None:
        self.script_fault("submit", *faults)

    def script_status_fault(self, *faults: Fault) -> None:
        self.script_fault("status", *faults)

    def script_balance_fault(self, *faults: Fault) -> None:
        self.script_fault("balance", *faults)

    def release(self) -> None:
        """Let every hung handler answer (with a 504)."""
        self._release.set()

    def task(self, task_id: str | None = None) -> FakeTask:
        """A task by id; the most recent one when no id is given."""
        if task_id is None:
            return self.tasks[self._task_order[-1]]
        return self.tasks[task_id]

    def start_task(self, task_id: str | None = None, progress: int = 0) -> None:
        task = self.task(task_id)
        task.state = "running"
        task.progress = progress

    def set_progress(self, task_id: str | None, progress: int) -> None:
        self.start_task(task_id, progress)

    def complete(
        self,
        task_id: str | None = None,
        n_images: int | None = None,
        *,
        failed: int = 0,
        failed_code: str = "DataInspectionFailed",
    ) -> FakeTask:
        """Finish a task with `n_images` images (default: all requested), `failed` more
        reported as failed (a partial success)."""
        task = self.task(task_id)
        count = task.n - failed if n_images is None else n_images
        task.state = "succeeded"
        task.progress = 100
        task.result_urls = [self.result_url(task.id, index) for index in range(count)]
        task.failed_images = failed
        task.failed_code = failed_code
        task.finished = time.time()
        return task

    def fail(
        self, task_id: str | None = None, code: str | int = "", message: str = "task failed"
    ) -> FakeTask:
        task = self.task(task_id)
        task.state = "failed"
        task.fail_code = code or self.default_fail_code
        task.fail_message = message
        task.finished = time.time()
        return task

    def fail_new_tasks(self, code: str | int, message: str = "task failed") -> None:
        """Every task created from now on has failed with `code` by its first status."""
        self._fail_new = (code, message)

    def stop_failing_new_tasks(self) -> None:
        self._fail_new = None

    def cancel(self, task_id: str | None = None) -> FakeTask:
        task = self.task(task_id)
        task.state = "cancelled"
        task.finished = time.time()
        return task

    def expire(self, task_id: str | None = None) -> None:
        """The provider forgets the task (ids live 24 h)."""
        self.task(task_id).state = "expired"

    def break_result(self, task_id: str | None = None, index: int = 0) -> None:
        self.broken_results.add((self.task(task_id).id, index))

    def result_url(self, task_id: str, index: int) -> str:
        return f"{self.origin}/results/{task_id}/{index}.png"

    def result_png(self, task_id: str, index: int) -> bytes:
        key = (task_id, index)
        if key not in self._pngs:
            self._pngs[key] = make_png(64 + 8 * index, 48, (40 * index % 256, 120, 200))
        return self._pngs[key]

    async def next_task(self, timeout: float = 5.0) -> FakeTask:
        """The next task created (in order), waiting for it if need be."""
        async with asyncio.timeout(timeout):
            while self._handed_out >= len(self._task_order):
                self._task_added.clear()
                await self._task_added.wait()
        task = self.tasks[self._task_order[self._handed_out]]
        self._handed_out += 1
        return task

    def requests_for(self, route: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.route == route]

    async def send_callback(self, task_id: str | None = None, url: str | None = None) -> int:
        """POST the task's status body to its callback_url (or `url`); the HTTP status."""
        task = self.task(task_id)
        target = url or task.callback_url
        if not target:
            raise ValueError("the task has no callback_url")
        async with (
            aiohttp.ClientSession() as session,
            session.post(target, json=self.status_body(task)) as response,
        ):
            return response.status

    # --- for subclasses -------------------------------------------------------------

    default_fail_code: ClassVar[str] = "unknown_error"

    def _routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def status_body(self, task: FakeTask) -> Any:
        raise NotImplementedError

    def error_response(
        self, status: int, code: str | int | None, message: str | None
    ) -> web.Response:
        raise NotImplementedError

    def _add_task(self, task: FakeTask) -> FakeTask:
        task.complete_after = self.complete_after
        self.tasks[task.id] = task
        self._task_order.append(task.id)
        self._task_added.set()
        if self._fail_new is not None:
            self.fail(task.id, *self._fail_new)
        return task

    def _poll(self, task: FakeTask) -> None:
        """Count a status call; complete the task on its own when scripted to."""
        task.status_calls += 1
        if task.state not in ("pending", "running") or task.complete_after is None:
            return
        if task.status_calls >= task.complete_after:
            self.complete(task.id)
        elif task.status_calls > 1:
            task.state = "running"
            task.progress = min(99, 100 * task.status_calls // task.complete_after)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    # --- plumbing -------------------------------------------------------------------

    def _wrap(self, route: str, handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            try:
                parsed = json.loads(body) if body else None
            except ValueError:
                parsed = None
            self.requests.append(
                RecordedRequest(
                    route=route,
                    method=request.method,
                    path=request.path,
                    query=dict(request.query),
                    headers=dict(request.headers),
                    json=parsed,
                    body=body,
                )
            )
            queue = self._faults.get(route)
            if queue:
                fault = queue.popleft()
                if fault.after:
                    await handler(request)  # acted on (a task created); the answer is lost
                return await self._apply(fault, request)
            return await handler(request)

        return wrapped

    async def _apply(self, fault: Fault, request: web.Request) -> web.StreamResponse:
        if fault.kind == "hang":
            await self._release.wait()
            return self.error_response(504, None, None)
        if fault.kind in ("disconnect", "reset"):
            assert request.transport is not None
            if fault.kind == "reset":
                _linger_zero(request.transport)
            request.transport.close()
            await self._release.wait()
            return web.Response(status=500)
        if fault.kind == "html":
            return web.Response(
                status=fault.status,
                text="<html><head><title>502 Bad Gateway</title></head>"
                "<body><center><h1>502 Bad Gateway</h1></center><hr>"
                "<center>nginx</center></body></html>",
                content_type="text/html",
            )
        if fault.kind == "malformed":
            return web.Response(
                status=fault.status, text='{"code": 200, "data": {', content_type="application/json"
            )
        response = self.error_response(fault.status, fault.code, fault.message)
        if fault.answer_status is not None:
            response.set_status(fault.answer_status)
        if fault.retry_after is not None:
            response.headers["Retry-After"] = fault.retry_after
        return response

    async def _result(self, request: web.Request) -> web.StreamResponse:
        task_id = request.match_info["task_id"]
        index = int(request.match_info["index"])
        task = self.tasks.get(task_id)
        if (
            task is None
            or (task_id, index) in self.broken_results
            or self.result_url(task_id, index) not in task.result_urls
        ):
            return web.Response(status=404, text="Not Found")
        return web.Response(body=self.result_png(task_id, index), content_type="image/png")


def _linger_zero(transport: asyncio.BaseTransport) -> None:
    """Make the next close send a TCP RST (a reset) instead of a clean FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _json(payload: Any, status: int = 200, content_type: str = "application/json") -> web.Response:
    return web.Response(
        status=status, text=json.dumps(payload, ensure_ascii=False), content_type=content_type
    )


def _as_int(value: Any) -> int | None:
    """An integer, or a numeric string (the docs allow both); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


# --- APIXO --------------------------------------------------------------------------

APIXO_MESSAGES = {
    400: "Invalid request",
    401: "Unauthorized: invalid API key",
    402: "Insufficient balance",
    403: "Forbidden: no access to this model",
    404: "Not found",
    429: "Too many requests",
    500: "Internal server error",
    502: "Upstream model service error",
    503: "Service unavailable",
    504: "Upstream model timeout",
}
APIXO_T2I_RATIOS = {"1:1", "3:4", "4:3", "9:16", "16:9"}
APIXO_I2I_RATIOS = APIXO_T2I_RATIOS | {"2:3", "3:2", "21:9"}


@dataclass(frozen=True)
class FetchedInput:
    """One input image a fake provider downloaded itself, as the real services do."""

    url: str
    status: int
    content_type: str
    data: bytes


async def fetch_input(url: str) -> FetchedInput:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return FetchedInput(url, response.status, response.content_type, await response.read())


class FakeApixo(FakeProviderServer):
    api_prefix = "/api/v1"
    default_fail_code = "PromptInvalid"

    def __init__(self, *, fetch_inputs: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # On: every image_urls entry is downloaded at submit (into `fetched_inputs`) and
        # an image that cannot be is refused with a 400, like an unreachable URL.
        self.fetch_inputs = fetch_inputs
        self.fetched_inputs: list[FetchedInput] = []

    def _routes(self, app: web.Application) -> None:
        app.router.add_post(
            "/api/v1/generateTask/wan-2-5-image", self._wrap("submit", self._submit)
        )
        app.router.add_get("/api/v1/statusTask/wan-2-5-image", self._wrap("status", self._status))
        app.router.add_get("/api/v1/apikeys/current-balance", self._wrap("balance", self._balance))

    def error_response(
        self, status: int, code: str | int | None, message: str | None, detail: str | None = None
    ) -> web.Response:
        # {"code": 400, "message": "Invalid request", "data": {"error": "..."}}
        data = {"error": detail} if detail else None
        text = message or APIXO_MESSAGES.get(status, "Error")
        return _json({"code": status, "message": text, "data": data}, status)

    def _bad(self, detail: str) -> web.Response:
        return self.error_response(400, None, None, detail)

    async def _submit(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self.error_response(401, None, None)
        body = await request.json()
        task_input = body.get("input") if isinstance(body, dict) else None
        if not isinstance(task_input, dict):
            return self._bad("Missing required field: input")
        request_type = body.get("request_type", "async")
        if request_type not in ("async", "callback"):
            return self._bad("request_type must be async or callback")
        if request_type == "callback" and not body.get("callback_url"):
            return self._bad("Missing required field: callback_url")
        mode = task_input.get("mode")
        if mode not in ("text-to-image", "image-to-image"):
            return self._bad("input.mode must be text-to-image or image-to-image")
        prompt = task_input.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return self._bad("Missing required field: input.prompt")
        ratio = task_input.get("aspect_ratio", "1:1")
        if ratio not in (APIXO_I2I_RATIOS if mode == "image-to-image" else APIXO_T2I_RATIOS):
            return self._bad(f"aspect_ratio {ratio} is not supported for {mode}")
        n = _as_int(task_input.get("num_images", self.default_n))
        if n is None or not 1 <= n <= 4:
            return self._bad("num_images must be between 1 and 4")
        urls = task_input.get("image_urls")
        if mode == "image-to-image" and (not isinstance(urls, list) or not 1 <= len(urls) <= 3):
            return self._bad("image_urls must contain 1-3 image URLs for image-to-image")
        if self.fetch_inputs and isinstance(urls, list):
            for url in urls:
                fetched = await fetch_input(str(url))
                self.fetched_inputs.append(fetched)
                if fetched.status != 200:
                    return self._bad(f"image_urls: {url} could not be downloaded")
        task = self._add_task(
            FakeTask(
                id=f"task_{uuid.uuid4().hex[:8]}",
                body=body,
                n=n,
                mode=mode,
                callback_url=body.get("callback_url"),
            )
        )
        return _json({"code": 200, "message": "success", "data": {"taskId": task.id}})

    async def _status(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self.error_response(401, None, None)
        task = self.tasks.get(request.query.get("taskId", ""))
        if task is None or task.state == "expired":
            return self.error_response(404, None, "Task not found")
        self._poll(task)
        return _json(self.status_body(task))

    def status_body(self, task: FakeTask) -> Any:
        created = int(task.created * 1000)
        completed = int((task.finished or time.time()) * 1000)
        data: dict[str, Any]
        if task.state == "succeeded":
            data = {
                "taskId": task.id,
                "state": "success",
                # A JSON document inside a string, as APIXO sends it.
                "resultJson": json.dumps({"resultUrls": task.result_urls}),
                "createTime": created,
                "completeTime": completed,
                "costTime": completed - created,
            }
        elif task.state in ("failed", "cancelled"):
            data = {
                "taskId": task.id,
                "state": "failed",
                "failCode": str(task.fail_code),
                "failMsg": task.fail_message,
                "createTime": created,
                "completeTime": completed,
            }
        else:
            state = "pending" if task.state == "pending" else "processing"
            data = {"taskId": task.id, "state": state, "createTime": created}
        return {"code": 200, "message": "success", "data": data}

    async def _balance(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self.error_response(401, None, None)
        return _json({"code": 200, "message": "success", "data": self.balance})


# --- EvoLink ------------------------------------------------------------------------

EVOLINK_ERRORS = {
    400: ("invalid_request", "invalid_request_error"),
    401: ("unauthorized", "authentication_error"),
    402: ("insufficient_quota", "insufficient_quota_error"),
    403: ("model_access_denied", "permission_error"),
    404: ("task_not_found", "not_found_error"),
    429: ("rate_limit_exceeded", "rate_limit_error"),
    500: ("internal_error", "api_error"),
    502: ("internal_error", "api_error"),
    503: ("service_unavailable", "api_error"),
    504: ("internal_error", "api_error"),
}


class FakeEvolink(FakeProviderServer):
    api_prefix = ""
    default_n = 1
    default_fail_code = "content_policy_violation"

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        complete_after: int | None = None,
        require_https_callback: bool = True,
    ) -> None:
        super().__init__(api_key=api_key, complete_after=complete_after)
        self.require_https_callback = require_https_callback
        self.estimated_time = 30
        self.uploads: dict[str, bytes] = {}

    @property
    def files_url(self) -> str:
        return self.origin

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/images/generations", self._wrap("submit", self._submit))
        app.router.add_get("/v1/tasks/{task_id}", self._wrap("status", self._status))
        app.router.add_get("/v1/credits", self._wrap("balance", self._credits))
        app.router.add_post("/api/v1/files/upload/base64", self._wrap("upload", self._upload))
        app.router.add_get("/files/{name}", self._wrap("file", self._file))

    def error_response(
        self, status: int, code: str | int | None, message: str | None, param: str | None = None
    ) -> web.Response:
        default_code, kind = EVOLINK_ERRORS.get(status, ("internal_error", "api_error"))
        error = {
            "code": default_code if code is None else code,
            "message": message or default_code.replace("_", " "),
            "type": kind,
            "param": param,
        }
        return _json({"error": error}, status)

    def _bad(self, message: str, param: str) -> web.Response:
        return self.error_response(400, "invalid_parameters", message, param)

    async def _submit(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self.error_response(401, None, "Invalid API key")
        body = await request.json()
        model = body.get("model")
        if model not in ("wan2.5-text-to-image", "wan2.5-image-to-image"):
            return self._bad(f"unknown model {model}", "model")
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > 2000:
            return self._bad("prompt is required (at most 2000)", "prompt")
        n = _as_int(body.get("n", self.default_n))
        if n is None or not 1 <= n <= 4:
            return self._bad("n must be between 1 and 4", "n")
        if model == "wan2.5-image-to-image":
            urls = body.get("image_urls")
            if not isinstance(urls, list) or not 1 <= len(urls) <= 2:
                return self._bad("image_urls must contain 1-2 URLs", "image_urls")
        elif "size" in body and not _size_ok(body["size"], "x"):
            return self._bad("size must be WIDTHxHEIGHT within limits", "size")
        callback = body.get("callback_url")
        if callback is not None and (
            len(callback) > 2048
            or (self.require_https_callback and not str(callback).startswith("https://"))
        ):
            return self._bad("callback_url must be an https URL", "callback_url")
        created = int(time.time())
        task = self._add_task(
            FakeTask(
                id=f"task-unified-{created}-{uuid.uuid4().hex[:8]}",
                body=body,
                n=n,
                mode="image-to-image" if "image" in model.split("-")[1] else "text-to-image",
                callback_url=callback,
                created=created,
            )
        )
        return _json(self.status_body(task))

    async def _status(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self.error_response(401, None, "Invalid API key")
        task = self.tasks.get(request.match_info["task_id"])
        if task is None or task.state == "expired":
            return self.error_response(404, None, "task not found")
        self._poll(task)
        return _json(self.status_body(task))

    def status_body(self, task: FakeTask) -> Any:
        status = {
            "pending": "pending",
            "running": "processing",
            "succeeded": "completed",
            "failed": "failed",
            "cancelled": "failed",
        }[task.state]
        body: dict[str, Any] = {
            "created": int(task.created),
            "id": task.id,
            "model": task.body.get("model"),
            "object": "image.generation.task",
            "progress": task.progress,
            "status": status,
            "task_info": {
                "can_cancel": task.state == "pending",
                "estimated_time": self.estimated_time,
            },
            "type": "image",
            "usage": {"billing_rule": "per_call", "credits_reserved": 1.2, "user_group": "default"},
        }
        if task.state == "succeeded":
            body["results"] = task.result_urls
        elif task.state in ("failed", "cancelled"):
            code = "request_cancelled" if task.state == "cancelled" else task.fail_code
            body["error"] = {
                "code": code,
                "message": task.fail_message or "the task was cancelled",
                "type": "task_error",
            }
        return body

    async def _credits(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self.error_response(401, None, "Invalid API key")
        token = {"remaining_credits": self.balance, "used_credits": 12.5}
        return _json({"data": {"token": token}, "success": True})

    async def _upload(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self.error_response(401, None, "Invalid API key")
        body = await request.json()
        data_url = str(body.get("base64_data", ""))
        header, _, encoded = data_url.partition(",")
        mime = header.removeprefix("data:").removesuffix(";base64") or "image/png"
        raw = base64.b64decode(encoded or data_url)
        file_id = f"file_{uuid.uuid4().hex[:8]}"
        name = f"{file_id}.{mime.split('/')[-1]}"
        self.uploads[name] = raw
        return _json(
            {
                "success": True,
                "code": 200,
                "msg": "File uploaded successfully",
                "data": {
                    "file_id": file_id,
                    "file_name": name,
                    "original_name": name,
                    "file_size": len(raw),
                    "mime_type": mime,
                    "upload_path": "images",
                    "file_url": f"{self.origin}/files/{name}",
                    "download_url": f"{self.origin}/api/v1/files/download/{file_id}",
                    "upload_time": "2025-10-09T00:00:00+08:00",
                    "expires_at": "2025-10-12T00:00:00+08:00",
                },
            }
        )

    async def _file(self, request: web.Request) -> web.Response:
        data = self.uploads.get(request.match_info["name"])
        if data is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=data, content_type="image/png")


def _size_ok(size: Any, separator: str) -> bool:
    width, _, height = str(size).partition(separator)
    if not (width.isdigit() and height.isdigit()):
        return False
    w, h = int(width), int(height)
    return 768 * 768 <= w * h <= 1440 * 1440 and 0.25 <= w / h <= 4


# --- DashScope ----------------------------------------------------------------------

DASHSCOPE_ERRORS = {
    400: "InvalidParameter",
    401: "InvalidApiKey",
    403: "AccessDenied",
    404: "NotFound",
    429: "Throttling.RateQuota",
    500: "InternalError",
    502: "InternalError",
    503: "InternalError",
    504: "RequestTimeOut",
}
DASHSCOPE_MODELS = {
    "/api/v1/services/aigc/text2image/image-synthesis": "wan2.5-t2i-preview",
    "/api/v1/services/aigc/image2image/image-synthesis": "wan2.5-i2i-preview",
}


class FakeDashscope(FakeProviderServer):
    api_prefix = "/api/v1"
    default_fail_code = "InternalError.Algo"

    def _routes(self, app: web.Application) -> None:
        for path in DASHSCOPE_MODELS:
            app.router.add_post(path, self._wrap("submit", self._submit))
        app.router.add_get("/api/v1/tasks/{task_id}", self._wrap("status", self._status))

    def error_response(
        self, status: int, code: str | int | None, message: str | None
    ) -> web.Response:
        # {"code": "InvalidApiKey", "message": "...", "request_id": "..."}
        payload = {
            "code": code or DASHSCOPE_ERRORS.get(status, "InternalError"),
            "message": message or "error",
            "request_id": str(uuid.uuid4()),
        }
        return _json(payload, status, "application/json")

    async def _submit(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self.error_response(401, "InvalidApiKey", "Invalid API-key provided.")
        if request.headers.get("X-DashScope-Async") != "enable":
            return self.error_response(
                403, "AccessDenied", "current user api does not support synchronous calls"
            )
        body = await request.json()
        expected = DASHSCOPE_MODELS[request.path]
        if body.get("model") != expected:
            return self.error_response(400, "InvalidParameter", f"model must be {expected}")
        task_input = body.get("input") or {}
        parameters = body.get("parameters") or {}
        prompt = task_input.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return self.error_response(400, "InvalidParameter", "input.prompt is required")
        n = _as_int(parameters.get("n", self.default_n))
        if n is None or not 1 <= n <= 4:
            return self.error_response(400, "InvalidParameter", "parameters.n must be 1-4")
        if "size" in parameters and not _size_ok(parameters["size"], "*"):
            return self.error_response(400, "InvalidParameter", "size must be W*H within limits")
        mode = "text-to-image"
        if expected.endswith("i2i-preview"):
            mode = "image-to-image"
            images = task_input.get("images")
            if not isinstance(images, list) or not 1 <= len(images) <= 3:
                return self.error_response(400, "InvalidParameter", "input.images must be 1-3")
            if not all(str(url).startswith(("http://", "https://", "data:")) for url in images):
                return self.error_response(400, "InvalidURL", "The provided URL is invalid.")
        task = self._add_task(FakeTask(id=str(uuid.uuid4()), body=body, n=n, mode=mode))
        return _json(
            {
                "output": {"task_status": "PENDING", "task_id": task.id},
                "request_id": str(uuid.uuid4()),
            }
        )

    async def _status(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self.error_response(401, "InvalidApiKey", "Invalid API-key provided.")
        task_id = request.match_info["task_id"]
        task = self.tasks.get(task_id)
        if task is None or task.state == "expired":
            # Expired and unknown ids both answer 200 with UNKNOWN.
            return _json(
                {
                    "request_id": str(uuid.uuid4()),
                    "output": {"task_id": task_id, "task_status": "UNKNOWN"},
                }
            )
        self._poll(task)
        return _json(self.status_body(task))

    def status_body(self, task: FakeTask) -> Any:
        status = {
            "pending": "PENDING",
            "running": "RUNNING",
            "succeeded": "SUCCEEDED",
            "failed": "FAILED",
            "cancelled": "CANCELED",
        }[task.state]
        submitted = time.strftime("%Y-%m-%d %H:%M:%S.000", time.localtime(task.created))
        output: dict[str, Any] = {
            "task_id": task.id,
            "task_status": status,
            "submit_time": submitted,
        }
        body: dict[str, Any] = {"request_id": str(uuid.uuid4()), "output": output}
        prompt = task.body["input"]["prompt"]
        if task.state == "running":
            output["scheduled_time"] = submitted
            output["task_metrics"] = {"TOTAL": task.n, "SUCCEEDED": 0, "FAILED": 0}
        elif task.state == "succeeded":
            ended = time.strftime("%Y-%m-%d %H:%M:%S.000", time.localtime(task.finished))
            results: list[dict[str, Any]] = [
                {"orig_prompt": prompt, "actual_prompt": f"{prompt}, detailed", "url": url}
                for url in task.result_urls
            ]
            results += [
                {
                    "code": task.failed_code,
                    "message": "Output data may contain inappropriate content.",
                }
                for _ in range(task.failed_images)
            ]
            output.update(
                scheduled_time=submitted,
                end_time=ended,
                results=results,
                task_metrics={
                    "TOTAL": len(results),
                    "SUCCEEDED": len(task.result_urls),
                    "FAILED": task.failed_images,
                },
            )
            body["usage"] = {"image_count": len(task.result_urls)}
        elif task.state == "failed":
            output.update(code=str(task.fail_code), message=task.fail_message)
        return body


# --- plain files (download tests) -----------------------------------------------------


@dataclass
class _File:
    data: bytes
    content_type: str
    status: int
    chunked: bool
    redirect: str | None


class FakeFileServer:
    """Serves bytes at paths, for download tests: `add(path, data, ...)`, `url(path)`."""

    def __init__(self) -> None:
        self.files: dict[str, _File] = {}
        self.requests: list[RecordedRequest] = []
        self._hang = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.origin = ""
        self.port = 0

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_get("/{path:.*}", self._serve)
        self._runner, self.port = await serve_loopback(
            app, handler_cancellation=True, shutdown_timeout=0.5
        )
        self.origin = f"http://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._hang.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def add(
        self,
        path: str,
        data: bytes = b"",
        *,
        content_type: str = "image/png",
        status: int = 200,
        chunked: bool = False,
        redirect: str | None = None,
    ) -> str:
        self.files[path.lstrip("/")] = _File(data, content_type, status, chunked, redirect)
        return self.url(path)

    def hang(self, path: str) -> str:
        return self.add(path, status=-1)

    def reset(self, path: str) -> str:
        """The connection is reset (TCP RST) instead of answered."""
        return self.add(path, status=-2)

    def url(self, path: str) -> str:
        return f"{self.origin}/{path.lstrip('/')}"

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            RecordedRequest(
                route="file",
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                json=None,
                body=b"",
            )
        )
        item = self.files.get(request.match_info["path"])
        if item is None:
            return web.Response(status=404, text="Not Found")
        if item.status == -1:
            await self._hang.wait()
            return web.Response(status=504)
        if item.status == -2:
            assert request.transport is not None
            _linger_zero(request.transport)
            request.transport.close()
            await self._hang.wait()
            return web.Response(status=500)
        if item.redirect is not None:
            raise web.HTTPFound(item.redirect)
        if item.status != 200:
            return web.Response(status=item.status, text="error")
        response = web.StreamResponse(status=200, headers={"Content-Type": item.content_type})
        if item.chunked:
            response.enable_chunked_encoding()  # no Content-Length: only counting can stop it
        else:
            response.content_length = len(item.data)
        await response.prepare(request)
        for start in range(0, len(item.data), 16 * 1024):
            await response.write(item.data[start : start + 16 * 1024])
        await response.write_eof()
        return response


# --- driving code that sleeps on a FakeClock ------------------------------------------


async def drive(
    clock: FakeClock, awaitable: Awaitable[T], *, timeout: float = 5.0
) -> tuple[T, list[float]]:
    """Run `awaitable` to the end, advancing `clock` whenever it sleeps on it.

    Returns the result and the clock sleeps it took (e.g. retry backoffs), in order.
    """
    task = asyncio.ensure_future(awaitable)
    slept: list[float] = []
    try:
        async with asyncio.timeout(timeout):
            while not task.done():
                delay = clock.next_deadline()
                if delay is None:
                    await asyncio.wait({task}, timeout=0.002)  # real I/O in progress
                    continue
                slept.append(delay)
                await clock.advance(delay)
    finally:
        if not task.done():
            task.cancel()
    return task.result(), slept

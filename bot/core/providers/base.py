"""What the HTTP providers share: calls with explicit timeouts, error mapping, the
status-query retry policy and result downloads.

Submits are never resent unless the answer proves no task exists (issue 13, rule 1): the
provider's own error envelope with HTTP 400/401/402/403/422, any 429, or a connection
that was never made (refused, DNS, TLS: no byte of the request sent). Those raise a
plain ProviderError. Anything else (5xx of any kind, an HTML page, a reset, a timeout,
a 2xx body that cannot be parsed) raises SubmitUncertain: the task may exist and bill.
Status queries are safe to repeat: they retry TRANSIENT failures with exponential
backoff and jitter, honour Retry-After, sleep on the injected clock, and give up after
a bounded number of attempts.
"""

from __future__ import annotations

import email.utils
import io
import json
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import aiohttp
from PIL import Image
from pydantic import SecretStr, ValidationError

from bot.core.clock import Clock
from bot.core.download import EXTENSIONS, SafeDownloader
from bot.core.errors import ProviderError, SubmitUncertain
from bot.core.http import BodyTooLarge, call_timeout, read_capped
from bot.core.models import (
    Capabilities,
    FailureCategory,
    GenerationRequest,
    ProviderFailure,
    ResultImage,
    TaskState,
    TaskStatus,
)
from bot.core.retry import Backoff

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_API_BODY = 1024 * 1024  # provider JSON answers are a few KB; anything bigger is wrong

# With the provider's own error envelope, these statuses prove a submit created nothing.
REFUSED_STATUSES = frozenset({400, 401, 402, 403, 422})
# Codes the base gives failures the provider did not name (see docs/providers.md).
TASK_NOT_FOUND = "task_not_found"


@dataclass(frozen=True)
class Timeouts:
    """Seconds per call. `connect` covers the pool wait and TCP/TLS setup."""

    submit: float = 30.0
    status: float = 15.0
    connect: float = 10.0


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of one status query (never of a submit)."""

    attempts: int = 4  # tries in all, the first included
    base_delay: float = 0.5
    max_delay: float = 8.0
    jitter: float = 0.5  # up to this fraction of each delay is randomly taken off
    # A longer Retry-After is not slept here: the error goes up with retry_after set,
    # so the caller's scheduler can wait without holding this call open.
    max_retry_after: float = 30.0

    def backoff(self, retry: int, rng: random.Random) -> float:
        return Backoff(self.base_delay, self.max_delay, self.jitter).delay(retry, rng)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def category_for_status(status: int) -> FailureCategory:
    """The category of an HTTP error when the provider's code says nothing more.
    The bot validates the user's prompt and images before sending, so a request the
    provider calls malformed is the bot's, never the user's (docs/providers.md)."""
    if status in (401, 402, 403):
        return FailureCategory.CONFIG  # the bot's key, balance or access: never the user
    if status in (400, 404, 405, 413, 415, 422):
        return FailureCategory.REQUEST  # 404: a wrong base URL (task lookups apart)
    return FailureCategory.TRANSIENT  # 408, 429, 5xx and anything unexpected


def task_failure(
    code: str | None, message: str | None, table: Mapping[str, FailureCategory]
) -> ProviderFailure:
    """A task's failure. Unknown codes are TRANSIENT: the job fails and is refunded,
    without blaming the user for something nobody recognised."""
    code = code or "unknown_error"
    return ProviderFailure(
        code=code,
        message=message or "",
        category=lookup_category(code, table) or FailureCategory.TRANSIENT,
    )


def lookup_category(code: str, table: Mapping[str, FailureCategory]) -> FailureCategory | None:
    """Exact code first, then its dotted family ("Throttling.RateQuota" -> "Throttling")."""
    if code in table:
        return table[code]
    family = code.split(".", 1)[0]
    return table.get(family)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


class _NotSent(Exception):
    """The connection was never made: the request cannot have reached the provider."""


class _Lost(Exception):
    """The request may have been sent, but no complete answer came back."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class HttpProvider:
    """Base of the HTTP providers. Subclasses set the class attributes and implement
    `_error_code` (the provider's error envelope) and the ImageProvider methods."""

    name: str
    capabilities: Capabilities
    error_categories: ClassVar[Mapping[str, FailureCategory]] = {}
    default_result_hosts: ClassVar[Sequence[str]] = ()

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_key: SecretStr,
        base_url: str,
        clock: Clock,
        *,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        downloader: SafeDownloader | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._session = session
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._clock = clock
        self._timeouts = timeouts or Timeouts()
        self._retry = retry or RetryPolicy()
        self._downloader = downloader or SafeDownloader(session, self.default_result_hosts)
        self._rng = rng or random.Random()

    def __repr__(self) -> str:  # never show the key
        return f"{type(self).__name__}(base_url={self._base_url!r})"

    # --- requests -------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key.get_secret_value()}"}

    def _url(self, path: str) -> str:
        return f"{self._base_url}{path}"

    async def _exchange(
        self,
        method: str,
        url: str,
        *,
        timeout: float,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Reply:
        try:
            async with self._session.request(
                method,
                url,
                json=json_body,
                params=params,
                headers=self._headers(),
                timeout=call_timeout(timeout, self._timeouts.connect),
                allow_redirects=False,
            ) as response:
                body = await read_capped(response, MAX_API_BODY)
                return Reply(response.status, dict(response.headers), body)
        except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError) as exc:
            raise _NotSent(str(exc) or type(exc).__name__) from None
        except TimeoutError:
            raise _Lost("timeout", f"no answer within {timeout:.0f} s") from None
        except BodyTooLarge:
            raise _Lost("bad_response", "the answer was too large") from None
        except aiohttp.ClientError as exc:
            raise _Lost("network", type(exc).__name__) from None

    async def _submit(self, url: str, body: Mapping[str, Any], parse: Callable[[Any], T]) -> T:
        """POST a new task, once. See the module doc for what each failure raises."""
        try:
            reply = await self._exchange("POST", url, json_body=body, timeout=self._timeouts.submit)
        except _NotSent as exc:
            raise ProviderError(
                FailureCategory.TRANSIENT, "connect_failed", f"cannot reach {self.name}: {exc}"
            ) from None
        except _Lost as exc:
            raise SubmitUncertain(f"{self.name} submit: {exc.message}") from None
        try:
            payload = reply.json()
        except ValueError:
            payload = None
        if not 200 <= reply.status < 300:
            raise self._submit_refusal(self._error(reply), payload)
        if payload is None:
            raise SubmitUncertain(f"{self.name} submit: unreadable answer")
        envelope_error = self._payload_error(payload, reply)
        if envelope_error is not None:
            raise self._submit_refusal(envelope_error, payload)
        try:
            return parse(payload)
        except (ValidationError, ValueError, TypeError, KeyError):
            raise SubmitUncertain(f"{self.name} submit: answer without a task id") from None

    def _submit_refusal(self, error: ProviderError, payload: Any) -> ProviderError:
        """`error` when the answer proves no task was created, else SubmitUncertain."""
        status = error.status
        if status == 429:
            return error  # rate limited: refused before anything was made
        if status in REFUSED_STATUSES and payload is not None and self._is_error_envelope(payload):
            return error  # the provider itself says it refused the request
        log.warning("%s submit: HTTP %s (%s) may have made a task", self.name, status, error.code)
        return SubmitUncertain(f"{self.name} submit: HTTP {status} ({error.code})")

    async def _query(
        self,
        method: str,
        url: str,
        parse: Callable[[Any], T],
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> T:
        """A repeatable call: TRANSIENT failures are retried per the policy."""
        retry = 0
        while True:
            try:
                return await self._query_once(method, url, parse, params, json_body)
            except ProviderError as exc:
                if exc.category is not FailureCategory.TRANSIENT:
                    raise
                if retry + 1 >= self._retry.attempts:
                    raise
                if exc.retry_after is not None:
                    if exc.retry_after > self._retry.max_retry_after:
                        raise
                    delay = exc.retry_after
                else:
                    delay = self._retry.backoff(retry, self._rng)
                log.warning(
                    "%s %s failed (%s); retry %d in %.1f s",
                    self.name,
                    method,
                    exc.code,
                    retry + 1,
                    delay,
                )
                await self._clock.sleep(delay)
                retry += 1

    async def _query_once(
        self,
        method: str,
        url: str,
        parse: Callable[[Any], T],
        params: Mapping[str, str] | None,
        json_body: Any,
    ) -> T:
        try:
            reply = await self._exchange(
                method, url, params=params, json_body=json_body, timeout=self._timeouts.status
            )
        except _NotSent as exc:
            raise ProviderError(FailureCategory.TRANSIENT, "connect_failed", str(exc)) from None
        except _Lost as exc:
            raise ProviderError(FailureCategory.TRANSIENT, exc.code, exc.message) from None
        if not 200 <= reply.status < 300:
            raise self._error(reply)
        try:
            payload = reply.json()
        except ValueError:
            raise ProviderError(
                FailureCategory.TRANSIENT, "bad_response", "the answer is not JSON", status=200
            ) from None
        envelope_error = self._payload_error(payload, reply)
        if envelope_error is not None:
            raise envelope_error
        try:
            return parse(payload)
        except (ValidationError, ValueError, TypeError, KeyError) as exc:
            raise ProviderError(
                FailureCategory.TRANSIENT, "bad_response", f"unexpected answer: {exc}"[:300]
            ) from None

    async def _task_status(
        self,
        url: str,
        parse: Callable[[Any], TaskStatus],
        *,
        params: Mapping[str, str] | None = None,
        missing_codes: Sequence[str] = (),
    ) -> TaskStatus:
        """A status query; a task the provider no longer knows (HTTP 404) is GONE."""
        try:
            return await self._query("GET", url, parse, params=params)
        except ProviderError as exc:
            if exc.status == 404 or exc.code in missing_codes:
                return gone_task(TASK_NOT_FOUND, self.name)
            raise

    # --- errors ---------------------------------------------------------------

    def _error_code(self, status: int, payload: Any) -> tuple[str | None, str]:
        """The provider's error code and message from an error body (None: no code)."""
        return None, ""

    def _is_error_envelope(self, payload: Any) -> bool:
        """Whether a parsed body is this provider's documented error shape (only then
        does a 4xx prove a submit created nothing). False unless a subclass knows."""
        return False

    def _payload_error(self, payload: Any, reply: Reply) -> ProviderError | None:
        """An error hidden in a 2xx answer (APIXO's envelope `code`); None when fine."""
        return None

    def _error(self, reply: Reply, status: int | None = None) -> ProviderError:
        status = status if status is not None else reply.status
        try:
            payload = reply.json()
        except ValueError:
            payload = None  # an HTML error page from a proxy, or nothing at all
        code, message = self._error_code(status, payload) if payload is not None else (None, "")
        category = (lookup_category(code, self.error_categories) if code else None) or (
            category_for_status(status)
        )
        if not message and payload is None and reply.body:
            message = "the provider answered with a non-JSON error page"
        # Some APIs echo the key in error bodies ("Incorrect API key provided: sk-..."):
        # the message reaches users, the database and admin alerts, so mask it here.
        key = self._api_key.get_secret_value()
        if key:
            message = message.replace(key, "***")
            code = code.replace(key, "***") if code else code
        retry_after = parse_retry_after(reply.headers.get("Retry-After"), self._clock.now())
        return ProviderError(
            category,
            code or f"http_{status}",
            message,
            status=status,
            retry_after=retry_after,
        )

    # --- results --------------------------------------------------------------

    async def download_result(self, url: str, index: int) -> ResultImage:
        """Fetch one result image (raises DownloadError)."""
        downloaded = await self._downloader.fetch(url)
        return result_image(index, downloaded.data, downloaded.content_type)

    async def cancel(self, task_id: str) -> bool:
        # No cancel route is documented for this provider: the engine stops waiting
        # instead, and the provider still charges for images it generates.
        return False


def check_request(request: GenerationRequest, capabilities: Capabilities) -> None:
    """Refuse, before anything is sent (or paid), what this provider would reject anyway.
    Validation normally catches all of it first; this is the last line."""
    problems = []
    if len(request.images) > capabilities.max_input_images:
        problems.append(f"at most {capabilities.max_input_images} input images")
    if request.aspect_ratio not in capabilities.aspect_ratios(request.mode):
        problems.append(f"aspect ratio {request.aspect_ratio} is not available here")
    if request.negative_prompt and not capabilities.supports_negative_prompt:
        problems.append("negative prompts are not supported by this provider")
    if request.count > capabilities.max_count:
        problems.append(f"at most {capabilities.max_count} images per request")
    if problems:
        # Validation should have refused it with the user's words: reaching here is the
        # bot's mistake, and nothing was sent.
        raise ProviderError(FailureCategory.REQUEST, "unsupported_request", "; ".join(problems))


def result_image(index: int, data: bytes, content_type: str) -> ResultImage:
    width, height = image_size(data)
    extension = EXTENSIONS.get(content_type, "png")
    return ResultImage(
        index=index,
        data=data,
        content_type=content_type,
        filename=f"wan-{index + 1}.{extension}",
        width=width,
        height=height,
    )


def image_size(data: bytes) -> tuple[int | None, int | None]:
    """Width and height from the image header (cheap: no pixels are decoded)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.width, image.height
    except (OSError, ValueError, Image.DecompressionBombError):
        return None, None


def gone_task(code: str, provider: str) -> TaskStatus:
    """A task the provider no longer knows (expired or unknown id). GONE: it is never
    replaced behind the user's back, as it may still be generating and billing."""
    return TaskStatus(
        state=TaskState.FAILED,
        failure=ProviderFailure(
            code=code,
            message=f"{provider} no longer knows this task (expired or unknown id)",
            category=FailureCategory.GONE,
        ),
    )


def finished(
    urls: Sequence[str], *, failed_count: int = 0, failure: ProviderFailure | None = None
) -> TaskStatus:
    """A finished task: SUCCEEDED with its URLs, or FAILED when not one image came back."""
    if urls:
        return TaskStatus(
            state=TaskState.SUCCEEDED,
            progress=100,
            result_urls=list(urls),
            failed_count=failed_count,
        )
    return TaskStatus(
        state=TaskState.FAILED,
        failed_count=failed_count,
        failure=failure
        or ProviderFailure(
            code="no_images",
            message="the provider finished without any image",
            category=FailureCategory.TRANSIENT,
        ),
    )

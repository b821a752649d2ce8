"""The one shared aiohttp session, and small helpers every HTTP caller uses."""

from __future__ import annotations

import io

import aiohttp

USER_AGENT = "wanbot/0.1 (+https://github.com/wanbot)"
# A safety net only: every call passes its own, shorter ClientTimeout.
_DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=15)


def make_http_session(
    *, limit: int = 100, limit_per_host: int = 30, dns_cache_seconds: int = 300
) -> aiohttp.ClientSession:
    """The session the whole bot shares (build it once in the entry point, close it on exit).

    The connector limit bounds sockets even with thousands of jobs in flight; callers
    queue inside aiohttp instead of opening more. Must be called inside a running loop.
    """
    connector = aiohttp.TCPConnector(
        limit=limit, limit_per_host=limit_per_host, ttl_dns_cache=dns_cache_seconds
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=_DEFAULT_TIMEOUT,
        headers={"User-Agent": USER_AGENT},
        # Environment proxies would bypass the download allow-list's address checks.
        trust_env=False,
        raise_for_status=False,
    )


def call_timeout(seconds: float, connect: float | None = None) -> aiohttp.ClientTimeout:
    """A per-call timeout: `connect` to get a connection (pool wait, TCP, TLS), then
    `seconds` for the answer.

    Running out of `connect` raises aiohttp.ConnectionTimeoutError, which proves nothing
    was sent; any later timeout means the request may have reached the server.
    """
    connect = connect if connect is not None else seconds
    return aiohttp.ClientTimeout(total=seconds + connect, connect=connect)


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"body larger than {limit} bytes")
        self.limit = limit


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """Read a body, stopping as soon as it exceeds `limit` bytes (checked while streaming)."""
    declared = response.content_length
    if declared is not None and declared > limit:
        raise BodyTooLarge(limit)
    # A BytesIO rather than a list joined at the end: getvalue() hands its buffer over
    # without a copy, so a body is held once, not twice. Sized up front from
    # Content-Length (one allocation instead of a copy each time it would grow).
    body = io.BytesIO()
    if declared:
        body.seek(declared - 1)
        body.write(b"\0")
        body.seek(0)
    size = 0
    # Pieces as they arrive (up to a socket read each): no re-cutting into fixed sizes,
    # which costs a copy and a Python step per 64 KB of a multi-MB image.
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        body.write(chunk)
    if size < (declared or 0):
        body.truncate(size)  # the connection ended early: only what came
    return body.getvalue()

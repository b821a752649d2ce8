"""Downloading images from URLs we do not control, safely.

Used for provider results and for users' input images. Rules:
- http(s) only; plain http only for hosts listed exactly in the allow-list;
- the host must match the allow-list (`host` exactly, or `*.suffix` for its subdomains);
- every address the name resolves to must be public, unless the host (or IP) is listed
  exactly: a wildcard never opens the way to a private, loopback or link-local address;
- the connection goes to the address that was checked (no second DNS lookup to rebind);
  connections are kept alive and reused only for that same address (and TLS name);
- redirects are followed by hand, each hop checked like the first;
- the body is capped while streaming, the whole fetch has one deadline, and the bytes
  must be an image the providers accept (checked by magic bytes, not by headers).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from yarl import URL

from bot.core.http import BodyTooLarge, call_timeout, read_capped
from bot.core.validation.sniff import detect_format

Resolver = Callable[[str, int], Awaitable[list[str]]]
HeadersFor = Callable[[URL], Mapping[str, str]]  # extra request headers for one hop
CheckResponse = Callable[[aiohttp.ClientResponse], None]  # may raise DownloadError

SUPPORTED_IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/bmp")
EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/bmp": "bmp",
    "image/gif": "gif",
}


def sniff_image_type(data: bytes) -> str | None:
    """The image type from the first bytes, or None when it is not a known image."""
    return _MIME.get(detect_format(data) or "")


_MIME = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
}


@dataclass(frozen=True)
class Downloaded:
    data: bytes
    # From the magic bytes: one of SUPPORTED_IMAGE_TYPES (any sniffed type with any_type).
    content_type: str
    url: str  # the URL finally fetched (after redirects)


class DownloadError(Exception):
    """A download was refused or failed. `reason` is fit to show a user."""

    def __init__(
        self, reason: str, *, code: str, status: int | None = None, transient: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.status = status
        self.transient = transient  # trying again later may work (timeouts, 5xx)


def _normalise_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class SafeDownloader:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        allowed_hosts: Sequence[str],
        max_bytes: int = 25 * 1024 * 1024,
        timeout: float = 30.0,
        *,
        resolver: Resolver | None = None,
        max_redirects: int = 3,
        headers_for: HeadersFor | None = None,
        check_response: CheckResponse | None = None,
    ) -> None:
        self._session = session
        self._exact: set[str] = set()
        self._suffixes: list[str] = []
        for entry in allowed_hosts:
            host = _normalise_host(entry)
            if host.startswith("*."):
                self._suffixes.append(host[1:])  # keep the dot: "*.x.com" -> ".x.com"
            elif host:
                self._exact.add(host)
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._resolve = resolver or _system_resolver
        self._max_redirects = max_redirects
        # Hooks for a platform's own rules (Slack: a bearer token only for its hosts,
        # its HTML sign-in page refused); called per hop, so a redirect is re-judged.
        self._headers_for = headers_for
        self._check_response = check_response

    def host_allowed(self, host: str) -> bool:
        """Whether the allow-list admits this host name (addresses are checked on fetch)."""
        name = _normalise_host(host)
        if name in self._exact:
            return True
        return not _is_ip(name) and any(name.endswith(suffix) for suffix in self._suffixes)

    async def fetch(
        self, url: str, *, max_bytes: int | None = None, any_type: bool = False
    ) -> Downloaded:
        """Download an image. Raises DownloadError with a reason a user understands.

        `any_type` skips the provider-format check, for input images that validation
        inspects (and may convert) itself."""
        limit = max_bytes if max_bytes is not None else self.max_bytes
        try:
            async with asyncio.timeout(self.timeout):
                return await self._fetch(url, limit, any_type)
        except TimeoutError:
            raise DownloadError(
                "the download took too long", code="timeout", transient=True
            ) from None

    async def _fetch(self, url: str, limit: int, any_type: bool) -> Downloaded:
        current = self._parse(url)
        for _ in range(self._max_redirects + 1):
            address = await self._checked_address(current)
            try:
                async with self._session.get(
                    self._pinned(current, address),
                    headers=self._hop_headers(current),
                    server_hostname=current.host if current.scheme == "https" else None,
                    allow_redirects=False,
                    timeout=call_timeout(self.timeout, min(10.0, self.timeout)),
                ) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        current = self._redirect_target(current, response)
                        continue
                    if response.status != 200:
                        raise _status_error(response.status)
                    if self._check_response is not None:
                        self._check_response(response)
                    data = await read_capped(response, limit)
            except BodyTooLarge:
                raise DownloadError(
                    f"the file is larger than {_human_size(limit)}", code="too_large"
                ) from None
            except aiohttp.ClientError:
                raise DownloadError(
                    "the image could not be downloaded (network error)",
                    code="network",
                    transient=True,
                ) from None
            kind = (sniff_image_type(data) or "application/octet-stream") if any_type else None
            return Downloaded(data=data, content_type=kind or _image_type(data), url=str(current))
        raise DownloadError("the link redirects too many times", code="too_many_redirects")

    def _hop_headers(self, url: URL) -> dict[str, str]:
        extra = self._headers_for(url) if self._headers_for is not None else {}
        return {**_headers(url), **extra}

    def _redirect_target(self, current: URL, response: aiohttp.ClientResponse) -> URL:
        location = response.headers.get("Location")
        if not location:
            raise DownloadError("the link redirects nowhere", code="bad_redirect")
        return self._parse(str(current.join(URL(location))))

    def _parse(self, url: str) -> URL:
        try:
            parsed = URL(url)
        except (ValueError, TypeError):
            raise DownloadError("that is not a valid link", code="bad_url") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise DownloadError("only https links can be used", code="bad_scheme")
        host = _normalise_host(parsed.host)
        if not self.host_allowed(host):
            raise DownloadError(f"images from {host} are not accepted", code="host_not_allowed")
        if parsed.scheme == "http" and host not in self._exact:
            raise DownloadError("only https links can be used", code="bad_scheme")
        return parsed

    async def _checked_address(self, url: URL) -> str:
        """The address to connect to, after checking every address the host resolves to."""
        host = _normalise_host(url.host or "")
        explicit = host in self._exact
        if _is_ip(host):
            addresses = [host]
        else:
            try:
                addresses = await self._resolve(host, url.port or 443)
            except OSError:
                raise DownloadError(
                    f"{host} could not be found", code="dns", transient=True
                ) from None
            if not addresses:
                raise DownloadError(f"{host} could not be found", code="dns", transient=True)
        if not explicit and not all(_is_public(address) for address in addresses):
            raise DownloadError(
                f"{host} points to a private network address", code="private_address"
            )
        return addresses[0]

    @staticmethod
    def _pinned(url: URL, address: str) -> URL:
        # Connect to the address that was checked; Host and TLS name stay the original's.
        return url if _is_ip(_normalise_host(url.host or "")) else url.with_host(address)


def _headers(url: URL) -> dict[str, str]:
    # Keep-alive is safe with pinned addresses: aiohttp pools connections by the
    # address connected to (the one checked for this fetch) and, for TLS, by the name
    # verified (server_hostname), so a pooled connection only serves a later fetch
    # whose own checks led to the same address, and HTTPS never crosses host names.
    return {"Host": url.host_port_subcomponent or "", "Accept": "image/*"}


def _status_error(status: int) -> DownloadError:
    if status in (404, 410):
        reason = f"the image is no longer available (HTTP {status})"
    elif status in (401, 403):
        reason = f"the image link refused access (HTTP {status})"
    else:
        reason = f"the image link answered HTTP {status}"
    transient = status == 429 or status >= 500
    return DownloadError(reason, code="http_status", status=status, transient=transient)


def _image_type(data: bytes) -> str:
    kind = sniff_image_type(data)
    if kind is not None and kind not in SUPPORTED_IMAGE_TYPES:
        name = kind.removeprefix("image/").upper()
        raise DownloadError(
            f"{name} images are not supported (use PNG, JPEG, WEBP or BMP)",
            code="unsupported_image",
        )
    if kind is None:
        raise DownloadError(
            "the file is not an image (PNG, JPEG, WEBP or BMP expected)", code="not_an_image"
        )
    return kind


def _human_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.0f} MB"
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size} bytes"

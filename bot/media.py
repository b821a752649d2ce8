"""Input images the bot serves itself, for providers that only fetch public URLs (APIXO).

    media = MediaHost("https://bot.example.com", clock)   # built by the runtime
    hosting = media.session()                 # one per request: an ImageHost
    url = await hosting.host(data, "image/png", "cat.png")
    await hosting.withdraw()                  # the request was refused: all gone
    await hosting.bind(job.id)                # the job exists: kept until...
    media.release(job.id)                     # ...the job ends

The HTTP server (bot.callback_server) answers GET/HEAD /media/{token}/{filename}
from `lookup`. A URL carries a random token (secrets.token_urlsafe, 256 bits), so it
cannot be guessed, and stops working on release, withdraw or expiry. Bytes stay in
memory under a total cap (over it a request is refused, not crashed on), and every
image expires after `lifetime` seconds of the injected clock in case a release is
missed. Nothing is written to disk: after a restart the URLs are gone.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from bot.core.clock import Clock
from bot.core.errors import WanbotError
from bot.core.models import ErrorKind, Job
from bot.core.ports import ImageProvider
from bot.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 200 * 1024 * 1024
DEFAULT_LIFETIME_SECONDS = 3600.0
ROUTE_PREFIX = "/media"
_TOKEN_BYTES = 32
_RELEASED_REMEMBERED = 1000
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class HostingUnavailable(WanbotError):
    """The provider needs a public URL and the bot has none to serve images from:
    the bot's setup, not the user's image. Nothing was spent."""

    kind = ErrorKind.PROVIDER_CONFIG

    def __init__(self, provider: str) -> None:
        super().__init__(hosting_unconfigured_text(provider), code="media_unconfigured")


class MediaFull(WanbotError):
    """The images waiting for the provider already use all the memory allowed."""

    kind = ErrorKind.PROVIDER_OUTAGE

    def __init__(self) -> None:
        super().__init__(
            "The bot is holding too many input images for running jobs right now, so "
            "nothing was started and nothing was charged. Please try again in a few minutes.",
            code="media_full",
        )


def hosting_unconfigured_text(provider: str) -> str:
    """What the admin must set so `provider` (which only fetches public URLs) can be
    given private or local images."""
    return (
        f"{provider} only fetches input images from public URLs, and this bot has no "
        "public address to serve them from. An admin must set MEDIA_PUBLIC_URL (or "
        "CALLBACK_PUBLIC_URL) to the public https address that reaches the bot's HTTP "
        "port (CALLBACK_PORT, reachable from the internet). Nothing was charged."
    )


@dataclass(frozen=True)
class HostedImage:
    """What the server sends for one URL."""

    data: bytes
    content_type: str
    filename: str


@dataclass
class _Entry:
    token: str
    image: HostedImage
    expires_at: float  # clock.monotonic()
    session: int
    job_id: str | None = None


class MediaHost:
    """Every hosted image, by token. See the module doc."""

    def __init__(
        self,
        public_url: str,
        clock: Clock,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        lifetime: float = DEFAULT_LIFETIME_SECONDS,
    ) -> None:
        self.base_url = public_url.rstrip("/")
        self._clock = clock
        self.max_bytes = max_bytes
        self.lifetime = lifetime
        self._by_digest: dict[bytes, _Entry] = {}
        self._bytes = 0
        self._sessions = 0
        # Jobs released lately: a bind that comes after its job already ended (a job
        # refused by the provider before its submit returned) drops the images at once.
        self._released: OrderedDict[str, None] = OrderedDict()

    @property
    def bytes_held(self) -> int:
        return self._bytes

    @property
    def count(self) -> int:
        return len(self._by_digest)

    def session(self) -> MediaSession:
        self._sessions += 1
        return MediaSession(self, self._sessions)

    def lookup(self, token: str, filename: str) -> HostedImage | None:
        """The image behind a URL, or None (unknown, released or expired)."""
        # Found by a digest of the token, then compared in constant time: neither the
        # dict lookup nor the comparison tells a prober how much of a guess was right.
        entry = self._by_digest.get(_digest(token))
        if entry is None or not hmac.compare_digest(entry.token, token):
            return None
        if entry.expires_at <= self._clock.monotonic():
            self._drop(lambda found: found is entry)
            return None
        if entry.image.filename != filename:
            return None
        return entry.image

    def release(self, job_id: str) -> int:
        """Stop serving a job's images (it reached a final state). Returns how many."""
        self._released[job_id] = None
        while len(self._released) > _RELEASED_REMEMBERED:
            self._released.popitem(last=False)
        return self._drop(lambda entry: entry.job_id == job_id)

    async def job_final(self, job: Job) -> None:
        """An engine `on_final` listener: the job has ended, its images go."""
        if released := self.release(job.id):
            log.debug("job %s: %d served input image(s) released", job.id, released)

    def clear(self) -> None:
        self._drop(lambda entry: True)

    # --- for MediaSession ---------------------------------------------------------

    def _add(self, session: int, data: bytes, content_type: str, filename: str) -> str:
        self._expire()
        if self._bytes + len(data) > self.max_bytes:
            raise MediaFull()
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        name = safe_filename(filename)
        entry = _Entry(
            token=token,
            image=HostedImage(bytes(data), content_type, name),
            expires_at=self._clock.monotonic() + self.lifetime,
            session=session,
        )
        self._by_digest[_digest(token)] = entry
        self._bytes += len(entry.image.data)
        return f"{self.base_url}{ROUTE_PREFIX}/{token}/{name}"

    def _bind(self, session: int, job_id: str) -> None:
        for entry in self._by_digest.values():
            if entry.session == session:
                entry.job_id = job_id
        if job_id in self._released:
            self.release(job_id)

    def _withdraw(self, session: int) -> int:
        return self._drop(lambda entry: entry.session == session and entry.job_id is None)

    def _expire(self) -> None:
        now = self._clock.monotonic()
        self._drop(lambda entry: entry.expires_at <= now)

    def _drop(self, which: Callable[[_Entry], bool]) -> int:
        gone = [key for key, entry in self._by_digest.items() if which(entry)]
        for key in gone:
            entry = self._by_digest.pop(key)
            self._bytes -= len(entry.image.data)
        return len(gone)


class MediaSession:
    """The images of one request (an ImageHost). Withdraw when the request is refused,
    bind once its job exists."""

    def __init__(self, media: MediaHost, number: int) -> None:
        self._media = media
        self._number = number
        self.hosted = 0

    async def host(self, data: bytes, content_type: str, filename: str) -> str:
        url = self._media._add(self._number, data, content_type, filename)
        self.hosted += 1
        return url

    async def withdraw(self) -> None:
        """Remove what this request hosted (its job was never created)."""
        self._media._withdraw(self._number)

    async def bind(self, job_id: str) -> None:
        """The images now belong to the job: served until `MediaHost.release(job_id)`.
        (A bind after the job has already been released drops them at once.)"""
        self._media._bind(self._number, job_id)


def needs_public_urls(provider: ImageProvider) -> bool:
    """True for a provider that takes neither a data: URI nor an upload to its own file
    host (EvoLink's provider is itself an ImageHost): only a public URL will do."""
    return not provider.capabilities.accepts_data_uri and not hasattr(provider, "host")


def served_session(media: MediaHost | None, provider: ImageProvider) -> MediaSession:
    """For a front end whose images are not public (Slack files) on a provider that
    only fetches public URLs: a per-request session, or HostingUnavailable, naming what
    the admin must set, when no public URL is configured. Call it before anything is
    reserved or sent."""
    if media is None:
        raise HostingUnavailable(provider.capabilities.name)
    return media.session()


def build_media(settings: Settings, provider: ImageProvider, clock: Clock) -> MediaHost | None:
    """The media host when the provider needs one and a public URL is set, else None."""
    base = settings.media_base_url()
    if base is None or not needs_public_urls(provider):
        return None
    # At least the job deadline: the provider may fetch the image late in a slow task.
    lifetime = max(DEFAULT_LIFETIME_SECONDS, settings.job_deadline_seconds)
    return MediaHost(base, clock, max_bytes=settings.media_max_bytes, lifetime=lifetime)


def safe_filename(filename: str) -> str:
    """A name fit for a URL path segment: the user's name, cleaned, with its extension
    (some services look at it), or a plain one."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, extension = base.rpartition(".")
    if not dot:
        stem, extension = base, ""
    stem = _UNSAFE.sub("-", stem).strip(".-")[:80] or "image"
    extension = _UNSAFE.sub("", extension)[:10]
    return f"{stem}.{extension}" if extension else stem


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

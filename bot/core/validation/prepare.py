"""The front ends' entry point: turn attachments or local files into provider inputs."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any, Protocol, TypeVar

from bot.core.errors import ValidationFailed
from bot.core.models import Capabilities, ErrorKind, ImageRef
from bot.core.ports import ImageHost
from bot.core.validation.metadata import ImageMeta, byte_limit, check_metadata
from bot.core.validation.normalize import CheckedImage
from bot.core.validation.pipeline import check_image
from bot.core.validation.sniff import InvalidImage

log = logging.getLogger(__name__)
T = TypeVar("T")


class Fetched(Protocol):
    """What a fetch returns (bot.core.download.Downloaded fits)."""

    @property
    def data(self) -> bytes: ...


class Fetcher(Protocol):
    """Downloads a URL (bot.core.download.SafeDownloader fits). Any exception it raises is
    shown to the user as the reason the download failed, so it should read well."""

    async def fetch(
        self, url: str, *, max_bytes: int | None = None, any_type: bool = False
    ) -> Fetched: ...


class InputFetchFailed(ValidationFailed):
    """An input image could not be fetched right now (timeout, 5xx, reset): nothing is
    wrong with it, trying again shortly may work. Nothing was spent."""

    kind = ErrorKind.PROVIDER_OUTAGE

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems)
        self.code = "input_unavailable"


@dataclass(frozen=True)
class _Unreachable:
    """An input image whose download failed for a reason that may pass."""

    problem: str


@dataclass(frozen=True)
class ImageSource:
    """One input image: a URL the provider could fetch (with the platform's metadata when
    known), or bytes from a local file. Build with `from_url` or `from_bytes`. A
    `private` URL (a Slack file) is fetched with the bot's credentials and always
    hosted anew for the provider, which could not fetch it."""

    url: str | None = None
    data: bytes | None = None
    meta: ImageMeta | None = None
    filename: str | None = None
    private: bool = False

    def __post_init__(self) -> None:
        if (self.url is None) == (self.data is None):
            raise ValueError("an ImageSource has either a url or data")

    @classmethod
    def from_url(
        cls, url: str, meta: ImageMeta | None = None, *, private: bool = False
    ) -> ImageSource:
        return cls(url=url, meta=meta, filename=meta.filename if meta else None, private=private)

    @classmethod
    def from_bytes(cls, data: bytes, filename: str | None = None) -> ImageSource:
        return cls(data=bytes(data), filename=filename)

    def metadata(self, index: int) -> ImageMeta:
        """What is known before download, numbered as the user sees it."""
        if self.data is not None:
            return ImageMeta(index=index, filename=self.filename, size=len(self.data))
        if self.meta is not None:
            return replace(self.meta, index=index)
        return ImageMeta(index=index, filename=self.filename)


@dataclass(frozen=True)
class PreparedImages:
    refs: list[ImageRef] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what normalisation changed, per image


async def prepare_images(
    sources: Sequence[ImageSource],
    caps: Capabilities,
    *,
    normalize: bool,
    fetch: Fetcher,
    host: ImageHost,
    executor: Executor | None = None,
) -> PreparedImages:
    """Check (and, if `normalize`, repair) every input image before anything is spent.

    Raises `ValidationFailed` listing every problem of every image, or `InputFetchFailed`
    when the only problem is that an image could not be fetched right now (a timeout, a
    5xx, a reset: not the image's fault). Nothing is hosted unless all images pass.
    Unchanged URL images keep their URL (the provider fetches it); changed or local
    images are uploaded with `host`. Pillow work runs in
    `executor` (the loop's default when None; pass a small dedicated pool to bound the
    memory of concurrent conversions).
    """
    metas = [source.metadata(index) for index, source in enumerate(sources, start=1)]
    check_metadata(metas, caps, normalize)
    results = await _all(
        _check_one(source, meta, normalize=normalize, fetch=fetch, executor=executor)
        for source, meta in zip(sources, metas, strict=True)
    )
    problems = [problem for result in results if isinstance(result, list) for problem in result]
    unreachable = [result.problem for result in results if isinstance(result, _Unreachable)]
    if problems:
        raise ValidationFailed(problems + unreachable)
    if unreachable:
        raise InputFetchFailed(unreachable)
    checked = [result for result in results if isinstance(result, CheckedImage)]
    refs = await _all(
        _ref(source, meta, image, host)
        for source, meta, image in zip(sources, metas, checked, strict=True)
    )
    notes = [
        f"{meta.label}: {'; '.join(image.notes)}"
        for meta, image in zip(metas, checked, strict=True)
        if image.notes
    ]
    return PreparedImages(refs=refs, notes=notes)


async def _all(coroutines: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run concurrently; on the first failure cancel (and wait for) the rest, then re-raise
    that failure as it is, so no task outlives the call."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _check_one(
    source: ImageSource,
    meta: ImageMeta,
    *,
    normalize: bool,
    fetch: Fetcher,
    executor: Executor | None,
) -> CheckedImage | list[str] | _Unreachable:
    """The checked image, the user-facing problems with it, or why it could not be
    fetched right now."""
    data = source.data
    if data is None:
        assert source.url is not None
        try:
            fetched = await fetch.fetch(source.url, max_bytes=byte_limit(normalize), any_type=True)
        except Exception as exc:  # the fetcher's reason is the message; never crash on it
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            log.info("input image %d download failed: %s", meta.index, reason)
            if getattr(exc, "transient", False):
                return _Unreachable(
                    f"{meta.label} could not be fetched right now ({reason}); "
                    "please try again shortly"
                )
            return [f"{meta.label} could not be downloaded: {reason}"]
        data = bytes(fetched.data)
    loop = asyncio.get_running_loop()
    work = functools.partial(check_image, data, normalize=normalize)
    try:
        return await loop.run_in_executor(executor, work)
    except InvalidImage as exc:
        return [f"{meta.label} {reason}" for reason in exc.reasons]


async def _ref(
    source: ImageSource, meta: ImageMeta, image: CheckedImage, host: ImageHost
) -> ImageRef:
    if source.url is not None and not image.changed and not source.private:
        return ImageRef(url=source.url, width=image.width, height=image.height)
    url = await host.host(image.data, image.content_type, _hosted_name(meta, image))
    return ImageRef(url=url, width=image.width, height=image.height)


def _hosted_name(meta: ImageMeta, image: CheckedImage) -> str:
    stem = PurePosixPath(meta.filename or "").stem or f"image{meta.index}"
    return f"{stem}.{image.extension}"

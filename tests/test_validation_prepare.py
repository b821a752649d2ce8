"""prepare_images: several images, downloads, hosting, notes and executor use."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import aiohttp
import pytest

from bot.core.errors import ValidationFailed
from bot.core.models import Capabilities
from bot.core.validation import ImageMeta, ImageSource, prepare_images
from tests.image_corpus import FakeFetcher, FakeFetchError, FakeHost, case, solid

CAPS = Capabilities(
    name="apixo",
    max_input_images=3,
    aspect_ratios_t2i=["1:1"],
    aspect_ratios_i2i=["1:1"],
    supports_negative_prompt=True,
)
CDN = "https://cdn.discordapp.test/attachments/1/"


def attachment(fetcher: FakeFetcher, name: str, filename: str, index: int = 1) -> ImageSource:
    """An attachment as Discord gives it: a URL plus metadata."""
    url = CDN + filename
    fetcher.files[url] = case(name).data()
    meta = case(name).meta(index)
    return ImageSource.from_url(url, ImageMeta(index, filename, meta.size, meta.content_type))


async def test_unchanged_urls_are_kept_and_changed_images_hosted() -> None:
    fetcher, host = FakeFetcher(), FakeHost()
    sources = [
        attachment(fetcher, "jpeg", "a.jpg"),
        attachment(fetcher, "png_rgba", "logo.png"),
        ImageSource.from_bytes(case("png").data(), "local.png"),
    ]
    prepared = await prepare_images(sources, CAPS, normalize=True, fetch=fetcher, host=host)
    uploads = {upload.filename: upload for upload in host.uploads}
    assert sorted(uploads) == ["local.png", "logo.png"]
    assert [ref.url for ref in prepared.refs] == [
        CDN + "a.jpg",
        uploads["logo.png"].url,
        uploads["local.png"].url,
    ]
    sizes = [(ref.width, ref.height) for ref in prepared.refs]
    assert sizes == [(512, 512), (400, 400), (512, 512)]
    assert prepared.notes == ["image 2 (logo.png): transparency flattened onto white"]
    # local bytes that need no change are uploaded as they are
    assert uploads["local.png"].data == case("png").data()
    assert uploads["local.png"].content_type == "image/png"


async def test_all_problems_of_all_images_at_once_and_nothing_hosted() -> None:
    fetcher, host = FakeFetcher(), FakeHost()
    sources = [
        attachment(fetcher, "png", "fine.png", 1),
        ImageSource.from_url(CDN + "gone.png"),  # not served: 404
        ImageSource.from_bytes(case("html_as_png").data(), "page.png"),
    ]
    with pytest.raises(ValidationFailed) as caught:
        await prepare_images(sources, CAPS, normalize=False, fetch=fetcher, host=host)
    assert caught.value.problems == [
        "image 2 could not be downloaded: the image is no longer available (HTTP 404)",
        "image 3 (page.png) is not an image (it is an HTML page)",
    ]
    assert host.uploads == []


async def test_several_reasons_for_one_image_are_all_given() -> None:
    fetcher, host = FakeFetcher(), FakeHost()
    rgba = case("png_rgba").data()  # 400x400: only its transparency is wrong
    fetcher.files[CDN + "x.png"] = solid((300, 280), mode="RGBA")
    with pytest.raises(ValidationFailed) as caught:
        await prepare_images(
            [ImageSource.from_url(CDN + "x.png"), ImageSource.from_bytes(rgba, "ok.png")],
            CAPS,
            normalize=False,
            fetch=fetcher,
            host=host,
        )
    assert caught.value.problems == [
        "image 1 is 300x280 px; each side must be at least 384 px",
        "image 1 has transparency, which the image providers do not accept; "
        "send it without (for example as a JPEG)",
        "image 2 (ok.png) has transparency, which the image providers do not accept; "
        "send it without (for example as a JPEG)",
    ]


async def test_too_many_images_refused_before_any_download() -> None:
    fetcher, host = FakeFetcher(), FakeHost()
    sources = [attachment(fetcher, "png", f"{i}.png", i) for i in range(1, 5)]
    with pytest.raises(ValidationFailed) as caught:
        await prepare_images(sources, CAPS, normalize=True, fetch=fetcher, host=host)
    assert caught.value.problems == ["4 images given; apixo accepts at most 3"]
    assert fetcher.calls == []


async def test_any_fetcher_exception_becomes_a_download_problem() -> None:
    fetcher, host = FakeFetcher(), FakeHost()
    fetcher.failures[CDN + "a.png"] = RuntimeError("connection reset")
    fetcher.failures[CDN + "b.png"] = FakeFetchError("the download took too long")
    sources = [ImageSource.from_url(CDN + "a.png"), ImageSource.from_url(CDN + "b.png")]
    with pytest.raises(ValidationFailed) as caught:
        await prepare_images(sources, CAPS, normalize=True, fetch=fetcher, host=host)
    assert caught.value.problems == [
        "image 1 could not be downloaded: connection reset",
        "image 2 could not be downloaded: the download took too long",
    ]


async def test_download_size_cap_follows_the_normalisation_switch() -> None:
    fetcher, host = FakeFetcher(), FakeHost()
    url = CDN + "big.png"
    fetcher.files[url] = case("png_10mb_plus_1").data()
    with pytest.raises(ValidationFailed) as caught:  # no metadata: the fetch cap refuses it
        await prepare_images(
            [ImageSource.from_url(url)], CAPS, normalize=False, fetch=fetcher, host=host
        )
    assert caught.value.problems == [
        "image 1 could not be downloaded: the file is larger than 10485760 bytes"
    ]
    prepared = await prepare_images(
        [ImageSource.from_url(url)], CAPS, normalize=True, fetch=fetcher, host=host
    )
    assert prepared.notes and "to fit 10 MB" in prepared.notes[0]
    assert [limit for _, limit in fetcher.calls] == [10 * 1024 * 1024, 50 * 1024 * 1024]


class CountingExecutor(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


async def test_pillow_work_runs_in_the_given_executor() -> None:
    fetcher, host = FakeFetcher(), FakeHost()
    sources = [attachment(fetcher, "gif", "a.gif"), attachment(fetcher, "png", "b.png", 2)]
    with CountingExecutor() as executor:
        prepared = await prepare_images(
            sources, CAPS, normalize=True, fetch=fetcher, host=host, executor=executor
        )
    assert executor.submitted == 2
    assert prepared.notes == ["image 1 (a.gif): converted from GIF to PNG"]
    assert host.uploads[0].filename == "a.png"


def test_image_source_needs_exactly_one_origin() -> None:
    with pytest.raises(ValueError):
        ImageSource()
    with pytest.raises(ValueError):
        ImageSource(url="https://x.test/a.png", data=b"x")
    meta = ImageMeta(index=7, filename="m.png", size=10)
    # the position decides the number the user sees, not what the caller put in the meta
    assert ImageSource.from_url("https://x.test/a.png", meta).metadata(2).index == 2
    assert ImageSource.from_bytes(b"abc", "f.png").metadata(1).size == 3


# --- against the real downloader over loopback -------------------------------------------


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    from bot.core.http import make_http_session

    http = make_http_session()
    yield http
    await http.close()


async def test_works_with_the_real_safe_downloader(session: aiohttp.ClientSession) -> None:
    download = pytest.importorskip("bot.core.download")
    from tests.fakes.providers import FakeFileServer

    async with FakeFileServer() as files:
        good = files.add("logo.png", case("png_rgba").data())
        missing = files.url("missing.png")
        fetcher = download.SafeDownloader(session, ["127.0.0.1"])
        host = FakeHost()
        prepared = await prepare_images(
            [ImageSource.from_url(good)], CAPS, normalize=True, fetch=fetcher, host=host
        )
        assert prepared.notes == ["image 1: transparency flattened onto white"]
        with pytest.raises(ValidationFailed) as caught:
            await prepare_images(
                [ImageSource.from_url(good), ImageSource.from_url(missing)],
                CAPS,
                normalize=True,
                fetch=fetcher,
                host=host,
            )
    [problem] = caught.value.problems
    assert problem.startswith("image 2 could not be downloaded: ")
    assert "404" in problem


class FailingHost(FakeHost):
    """Fails the first upload; a second one must not be left running."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = 0
        self.started = asyncio.Event()

    async def host(self, data: bytes, content_type: str, filename: str) -> str:
        if filename.startswith("first"):
            await self.started.wait()
            raise OSError("upload service down")
        self.started.set()
        try:
            await asyncio.Event().wait()  # hangs until cancelled
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return "never"


async def test_a_failing_upload_propagates_and_cancels_the_others() -> None:
    host = FailingHost()
    sources = [
        ImageSource.from_bytes(case("png").data(), "first.png"),
        ImageSource.from_bytes(case("png").data(), "second.png"),
    ]
    with pytest.raises(OSError, match="upload service down"):  # the bot's fault, not the user's
        await prepare_images(sources, CAPS, normalize=True, fetch=FakeFetcher(), host=host)
    assert host.cancelled == 1

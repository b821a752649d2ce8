"""SafeDownloader: allow-list, private addresses, size caps, magic bytes, timeouts."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from bot.core.download import DownloadError, SafeDownloader, sniff_image_type
from tests.fakes.loopback import serve_loopback
from tests.fakes.providers import FakeFileServer, make_png

PNG = make_png(32, 32)


@pytest.fixture
async def files() -> AsyncIterator[FakeFileServer]:
    async with FakeFileServer() as server:
        yield server


def resolver_for(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError("unknown host")
        return table[host]

    return resolve


async def test_fetches_from_an_explicitly_listed_loopback(
    session: aiohttp.ClientSession, files: FakeFileServer
) -> None:
    url = files.add("a.png", PNG)
    downloaded = await SafeDownloader(session, ["127.0.0.1"]).fetch(url)
    assert (downloaded.data, downloaded.content_type, downloaded.url) == (PNG, "image/png", url)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "BMP"])
async def test_every_accepted_format_is_recognised(
    session: aiohttp.ClientSession, files: FakeFileServer, fmt: str
) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, fmt)
    url = files.add("img", buffer.getvalue(), content_type="application/octet-stream")
    downloaded = await SafeDownloader(session, ["127.0.0.1"]).fetch(url)
    assert downloaded.content_type == f"image/{fmt.lower()}"


async def test_not_found(session: aiohttp.ClientSession, files: FakeFileServer) -> None:
    with pytest.raises(DownloadError) as caught:
        await SafeDownloader(session, ["127.0.0.1"]).fetch(files.url("missing.png"))
    assert (caught.value.code, caught.value.status, caught.value.transient) == (
        "http_status",
        404,
        False,
    )
    assert "no longer available" in caught.value.reason


async def test_server_error_is_transient(
    session: aiohttp.ClientSession, files: FakeFileServer
) -> None:
    url = files.add("e.png", status=503)
    with pytest.raises(DownloadError) as caught:
        await SafeDownloader(session, ["127.0.0.1"]).fetch(url)
    assert caught.value.transient


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "streamed"])
async def test_oversize_is_cut_off(
    session: aiohttp.ClientSession, files: FakeFileServer, chunked: bool
) -> None:
    url = files.add("big.png", PNG + b"\0" * 200_000, chunked=chunked)
    downloader = SafeDownloader(session, ["127.0.0.1"], max_bytes=50_000)
    with pytest.raises(DownloadError) as caught:
        await downloader.fetch(url)
    assert caught.value.code == "too_large"
    assert "larger than 49 KB" in caught.value.reason
    # A per-call cap overrides the default.
    assert len((await downloader.fetch(url, max_bytes=300_000)).data) == len(PNG) + 200_000


async def test_wrong_magic_bytes(session: aiohttp.ClientSession, files: FakeFileServer) -> None:
    url = files.add("fake.png", b"<html>not an image</html>", content_type="image/png")
    with pytest.raises(DownloadError) as caught:
        await SafeDownloader(session, ["127.0.0.1"]).fetch(url)
    assert caught.value.code == "not_an_image"
    gif = files.add("anim.gif", b"GIF89a" + b"\0" * 20, content_type="image/gif")
    with pytest.raises(DownloadError) as caught:
        await SafeDownloader(session, ["127.0.0.1"]).fetch(gif)
    assert caught.value.code == "unsupported_image"


async def test_host_not_on_the_allow_list(
    session: aiohttp.ClientSession, files: FakeFileServer
) -> None:
    url = files.add("a.png", PNG)
    with pytest.raises(DownloadError) as caught:
        await SafeDownloader(session, ["cdn.discordapp.com"]).fetch(url)
    assert caught.value.code == "host_not_allowed"
    assert files.requests == []


@pytest.mark.parametrize(
    "url", ["ftp://cdn.example.test/a.png", "file:///etc/passwd", "mock://t/0.png"]
)
async def test_only_http_schemes(session: aiohttp.ClientSession, url: str) -> None:
    with pytest.raises(DownloadError) as caught:
        await SafeDownloader(session, ["*.example.test"]).fetch(url)
    assert caught.value.code in ("bad_scheme", "host_not_allowed")


async def test_plain_http_needs_an_exact_listing(session: aiohttp.ClientSession) -> None:
    downloader = SafeDownloader(
        session, ["*.example.test"], resolver=resolver_for({"img.example.test": ["93.184.216.34"]})
    )
    with pytest.raises(DownloadError) as caught:
        await downloader.fetch("http://img.example.test/a.png")
    assert caught.value.code == "bad_scheme"


@pytest.mark.parametrize(
    "address", ["10.1.2.3", "127.0.0.1", "169.254.169.254", "192.168.1.1", "::1", "fd00::1"]
)
async def test_wildcard_host_resolving_to_a_private_address_is_refused(
    session: aiohttp.ClientSession, address: str
) -> None:
    downloader = SafeDownloader(
        session, ["*.example.test"], resolver=resolver_for({"cdn.example.test": [address]})
    )
    with pytest.raises(DownloadError) as caught:
        await downloader.fetch("https://cdn.example.test/a.png")
    assert caught.value.code == "private_address"


async def test_one_private_address_among_public_ones_is_enough_to_refuse(
    session: aiohttp.ClientSession,
) -> None:
    table = {"cdn.example.test": ["93.184.216.34", "::ffff:10.0.0.1"]}
    downloader = SafeDownloader(session, ["*.example.test"], resolver=resolver_for(table))
    with pytest.raises(DownloadError) as caught:
        await downloader.fetch("https://cdn.example.test/a.png")
    assert caught.value.code == "private_address"


async def test_unlisted_ip_literal_is_refused(
    session: aiohttp.ClientSession, files: FakeFileServer
) -> None:
    url = files.add("a.png", PNG)
    with pytest.raises(DownloadError) as caught:
        await SafeDownloader(session, ["*.0.0.1"]).fetch(url)
    assert caught.value.code == "host_not_allowed"


async def test_listed_name_is_pinned_to_the_checked_address(
    session: aiohttp.ClientSession, files: FakeFileServer
) -> None:
    files.add("a.png", PNG)
    downloader = SafeDownloader(
        session, ["images.test"], resolver=resolver_for({"images.test": ["127.0.0.1"]})
    )
    downloaded = await downloader.fetch(f"http://images.test:{files.port}/a.png")
    assert downloaded.data == PNG
    assert files.requests[0].headers["Host"] == f"images.test:{files.port}"


async def test_unresolvable_host(session: aiohttp.ClientSession) -> None:
    downloader = SafeDownloader(session, ["*.example.test"], resolver=resolver_for({}))
    with pytest.raises(DownloadError) as caught:
        await downloader.fetch("https://nowhere.example.test/a.png")
    assert caught.value.code == "dns"


async def test_redirects_are_checked_hop_by_hop(
    session: aiohttp.ClientSession, files: FakeFileServer
) -> None:
    files.add("a.png", PNG)
    good = files.add("go", redirect="/a.png")
    bad = files.add("leak", redirect="http://169.254.169.254/latest/meta-data")
    downloader = SafeDownloader(session, ["127.0.0.1"])
    assert (await downloader.fetch(good)).data == PNG
    with pytest.raises(DownloadError) as caught:
        await downloader.fetch(bad)
    assert caught.value.code == "host_not_allowed"
    loop = files.add("loop", redirect="/loop")
    with pytest.raises(DownloadError) as caught:
        await downloader.fetch(loop)
    assert caught.value.code == "too_many_redirects"


async def test_timeout(session: aiohttp.ClientSession, files: FakeFileServer) -> None:
    url = files.hang("slow.png")
    with pytest.raises(DownloadError) as caught:
        await SafeDownloader(session, ["127.0.0.1"], timeout=0.2).fetch(url)
    assert (caught.value.code, caught.value.transient) == ("timeout", True)
    assert "too long" in caught.value.reason


def test_host_matching() -> None:
    downloader = SafeDownloader(None, ["CDN.discordapp.com", "*.aliyuncs.com"])  # type: ignore[arg-type]
    assert downloader.host_allowed("cdn.discordapp.com.")
    assert downloader.host_allowed("bucket.oss-ap-southeast-1.aliyuncs.com")
    assert not downloader.host_allowed("aliyuncs.com.evil.test")
    assert not downloader.host_allowed("evilaliyuncs.com")


def test_sniff_image_type() -> None:
    assert sniff_image_type(PNG) == "image/png"
    assert sniff_image_type(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff_image_type(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"
    assert sniff_image_type(b"%PDF-1.7") is None


async def test_any_type_leaves_the_format_to_validation(
    session: aiohttp.ClientSession, files: FakeFileServer
) -> None:
    # Input images may be GIF or TIFF: validation converts them, so the download must pass.
    gif = files.add("in.gif", b"GIF89a" + b"\0" * 20, content_type="image/gif")
    got = await SafeDownloader(session, ["127.0.0.1"]).fetch(gif, any_type=True)
    assert got.content_type == "image/gif"
    html = files.add("page.png", b"<html></html>", content_type="image/png")
    page = await SafeDownloader(session, ["127.0.0.1"]).fetch(html, any_type=True)
    assert page.content_type == "application/octet-stream"


class _CountingServer:
    """A loopback image server that records the client port of every request: one
    port per TCP connection the downloader opened."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.peers: list[int] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> _CountingServer:
        app = web.Application()
        app.router.add_get("/{name}", self._serve)
        self._runner, port = await serve_loopback(app)
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _serve(self, request: web.Request) -> web.Response:
        assert request.transport is not None
        self.peers.append(request.transport.get_extra_info("peername")[1])
        if request.match_info["name"] == "big.png":
            return web.Response(body=self.body + b"\0" * 200_000, content_type="image/png")
        return web.Response(body=self.body, content_type="image/png")


async def test_downloads_from_one_host_reuse_a_connection(
    session: aiohttp.ClientSession,
) -> None:
    async with _CountingServer(PNG) as server:
        downloader = SafeDownloader(
            session, ["images.test"], resolver=resolver_for({"images.test": ["127.0.0.1"]})
        )
        port = server.url.rsplit(":", 1)[1]
        for name in ("a.png", "b.png", "c.png"):
            got = await downloader.fetch(f"http://images.test:{port}/{name}")
            assert got.data == PNG
        assert len(server.peers) == 3
        assert len(set(server.peers)) == 1  # one TCP connection served all three


async def test_a_cut_off_download_does_not_poison_the_pool(
    session: aiohttp.ClientSession,
) -> None:
    async with _CountingServer(PNG) as server:
        downloader = SafeDownloader(session, ["127.0.0.1"], max_bytes=100_000)
        with pytest.raises(DownloadError) as caught:
            await downloader.fetch(f"{server.url}/big.png")
        assert caught.value.code == "too_large"
        assert (await downloader.fetch(f"{server.url}/a.png")).data == PNG
        # The half-read connection was dropped, not handed to the next fetch.
        assert len(set(server.peers)) == 2

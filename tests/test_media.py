"""Input images the bot serves itself (bot/media.py) for providers that only fetch public
URLs: a real HTTP server on 127.0.0.1, the fake clock for expiry, and the console and
`wanbot generate` against the fake APIXO, which downloads the image from the bot."""

from __future__ import annotations

import asyncio
import io
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import pytest
from PIL import Image

from bot.callback_server import HttpServer
from bot.cli import build_parser
from bot.console.app import serve_console
from bot.console.generate import generate
from bot.core.clock import FakeClock
from bot.core.models import ErrorKind
from bot.core.providers import MockProvider
from bot.media import (
    HostingUnavailable,
    MediaFull,
    MediaHost,
    MediaSession,
    needs_public_urls,
    safe_filename,
    served_session,
)
from bot.ops.doctor import doctor, settings_provider
from bot.runtime import Runtime
from bot.settings import Settings, SettingsError, load_settings
from storage.sqlite.db import Database
from tests.fakes.providers import FakeApixo

T = TypeVar("T")
PNG = b"\x89PNG\r\n\x1a\n" + b"x" * 100


@pytest.fixture
async def served(clock: FakeClock) -> AsyncIterator[tuple[MediaHost, str]]:
    media = MediaHost("https://bot.example.com/", clock, max_bytes=1000, lifetime=600.0)
    server = HttpServer("127.0.0.1", 0, media=media)
    await server.start()
    try:
        yield media, f"http://127.0.0.1:{server.bound_port}"
    finally:
        await server.close()


def _local(url: str, origin: str) -> str:
    """The public URL as this test reaches it: the same path on the loopback server."""
    assert url.startswith("https://bot.example.com/media/")
    return origin + urlsplit(url).path


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, str], bytes]:
    async with session.get(url) as response:
        return response.status, dict(response.headers), await response.read()


async def test_served_bytes_head_and_wrong_paths(
    served: tuple[MediaHost, str], session: aiohttp.ClientSession
) -> None:
    media, origin = served
    url = await media.session().host(PNG, "image/png", "my cat (1).png")
    assert url.endswith("/my-cat-1.png")
    token = urlsplit(url).path.split("/")[2]
    assert len(token) >= 32  # unguessable

    status, headers, body = await _get(session, _local(url, origin))
    assert (status, body) == (200, PNG)
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Length"] == str(len(PNG))
    assert headers["Cache-Control"] == "no-store"

    async with session.head(_local(url, origin)) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == str(len(PNG))
        assert await response.read() == b""

    name = urlsplit(url).path.split("/")[3]
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    for path in (
        f"/media/{wrong}/{name}",  # one character off
        f"/media/{token}/other.png",  # the right token with another name
        f"/media/{token}",
        "/media/",
        "/media",
    ):
        status, _, body = await _get(session, origin + path)
        assert status == 404, path
        assert PNG not in body


async def test_withdraw_release_and_expiry_stop_serving(
    served: tuple[MediaHost, str], session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    media, origin = served
    refused, kept, other = media.session(), media.session(), media.session()
    gone_url = _local(await refused.host(PNG, "image/png", "a.png"), origin)
    job_url = _local(await kept.host(PNG, "image/jpeg", "b.jpg"), origin)
    other_url = _local(await other.host(PNG, "image/png", "c.png"), origin)
    await kept.bind("job-1")
    await other.bind("job-2")

    await refused.withdraw()
    await kept.withdraw()  # bound: a late withdraw does not take a job's images
    assert (await _get(session, gone_url))[0] == 404
    assert (await _get(session, job_url))[0] == 200

    assert media.release("job-1") == 1
    assert (await _get(session, job_url))[0] == 404
    assert (await _get(session, other_url))[0] == 200
    assert media.bytes_held == len(PNG)

    # A missed release: the image expires after its lifetime on the injected clock.
    await clock.advance(599.0)
    assert (await _get(session, other_url))[0] == 200
    await clock.advance(1.0)
    assert (await _get(session, other_url))[0] == 404
    assert (media.count, media.bytes_held) == (0, 0)


async def test_a_bind_after_the_job_ended_drops_the_images(clock: FakeClock) -> None:
    media = MediaHost("https://bot.example.com", clock)
    hosting = media.session()
    url = await hosting.host(PNG, "image/png", "x.png")
    media.release("job-9")  # the job was settled before its submit returned
    await hosting.bind("job-9")
    token, name = urlsplit(url).path.split("/")[2:4]
    assert media.lookup(token, name) is None and media.bytes_held == 0


async def test_the_memory_cap_refuses_clearly(clock: FakeClock) -> None:
    media = MediaHost("https://bot.example.com", clock, max_bytes=250)
    hosting = media.session()
    await hosting.host(PNG, "image/png", "1.png")
    await hosting.host(PNG, "image/png", "2.png")
    with pytest.raises(MediaFull) as refused:
        await hosting.host(PNG, "image/png", "3.png")
    assert "nothing was charged" in refused.value.message
    assert media.count == 2
    await hosting.withdraw()
    assert media.bytes_held == 0
    await media.session().host(PNG, "image/png", "3.png")  # room again


def test_a_front_end_without_a_public_url_gets_a_refusal_naming_the_setting(
    clock: FakeClock,
) -> None:
    provider = MockProvider(clock, 0)
    provider.capabilities = provider.capabilities.model_copy(
        update={"name": "APIXO", "accepts_data_uri": False}
    )
    assert needs_public_urls(provider)
    with pytest.raises(HostingUnavailable) as refused:
        served_session(None, provider)
    assert refused.value.kind is ErrorKind.PROVIDER_CONFIG  # the bot's setup, not the user
    assert "APIXO only fetches input images from public URLs" in refused.value.message
    assert "MEDIA_PUBLIC_URL" in refused.value.message
    assert "CALLBACK_PORT" in refused.value.message
    media = MediaHost("https://bot.example.com", clock)
    assert isinstance(served_session(media, provider), MediaSession)


def test_filenames_are_safe_path_segments() -> None:
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("..\\x\\evil name.png") == "evil-name.png"
    assert safe_filename("日本.png") == "image.png"
    assert safe_filename("...") == "image"
    assert safe_filename("photo_1.jpg") == "photo_1.jpg"


def test_media_public_url_setting() -> None:
    assert load_settings(env_file=None).media_base_url() is None
    fallback = load_settings(env_file=None, callback_public_url="https://cb.example.com")
    assert fallback.media_base_url() == "https://cb.example.com"
    both = load_settings(
        env_file=None,
        callback_public_url="https://cb.example.com",
        media_public_url="https://media.example.com/",
    )
    assert both.media_base_url() == "https://media.example.com"
    with pytest.raises(SettingsError, match="MEDIA_PUBLIC_URL"):
        load_settings(env_file=None, media_public_url="bot.example.com")


# --- the console and `generate` on APIXO -------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _apixo_settings(tmp_path: Path, fake: FakeApixo, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "wan_provider": "apixo",
        "apixo_api_key": fake.api_key,
        "apixo_base_url": fake.base_url,
        "database_path": tmp_path / "db.sqlite3",
        "output_dir": tmp_path / "out",
        "download_allowed_hosts": "127.0.0.1",
        "callback_host": "127.0.0.1",
        "callback_port": _free_port(),
    }
    values.update(overrides)
    return load_settings(env_file=None, **values)


def _photo(path: Path) -> Path:
    Image.new("RGB", (512, 400), (200, 60, 30)).save(path, "PNG")
    return path


async def drive(clock: FakeClock, work: Awaitable[T], *, timeout: float = 30.0) -> T:
    """Run `work`, moving the fake clock on while it waits; fail after `timeout` s."""
    task = asyncio.ensure_future(work)
    end = asyncio.get_running_loop().time() + timeout
    while not task.done():
        if asyncio.get_running_loop().time() > end:
            task.cancel()
            raise AssertionError("the command did not finish")
        await asyncio.wait([task], timeout=0.01)
        if not task.done():
            await clock.advance(0.5)
    return task.result()


async def _until(found: Callable[[], bool], timeout: float = 20.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not found():
        assert asyncio.get_running_loop().time() < end, "timed out"
        await asyncio.sleep(0.01)


async def test_console_serves_a_local_file_to_apixo_until_the_job_ends(
    tmp_path: Path, clock: FakeClock, session: aiohttp.ClientSession
) -> None:
    photo = _photo(tmp_path / "in.png")
    async with FakeApixo(api_key="sk-right", complete_after=2, fetch_inputs=True) as fake:
        settings = _apixo_settings(tmp_path, fake)
        settings = settings.model_copy(
            update={"media_public_url": f"http://127.0.0.1:{settings.callback_port}"}
        )
        read_end, write_end = os.pipe()
        stdin = os.fdopen(read_end, "r")
        out = io.StringIO()
        runtimes: list[Runtime] = []

        def factory(settings: Settings) -> Runtime:
            runtimes.append(Runtime(settings, clock=clock))
            return runtimes[-1]

        console = serve_console(settings, asyncio.Event(), stdin, out, factory)
        task = asyncio.ensure_future(drive(clock, console))
        try:
            os.write(write_end, f"/edit {photo} make it snowy\n".encode())
            await _until(lambda: "image saved" in out.getvalue() or task.done())
            assert len(fake.fetched_inputs) == 1, out.getvalue()
            [fetched] = fake.fetched_inputs
            assert fetched.status == 200 and fetched.content_type.startswith("image/")
            assert Image.open(io.BytesIO(fetched.data)).size == (512, 400)
            [submit] = fake.requests_for("submit")
            assert submit.json["input"]["image_urls"] == [fetched.url]
            assert fetched.url.startswith(f"http://127.0.0.1:{settings.callback_port}/media/")
            # The job has ended: its image is released and no longer served.
            media = runtimes[0].media
            assert media is not None
            await _until(lambda: media.count == 0)
            async with session.get(fetched.url) as response:
                assert response.status == 404
        finally:
            os.close(write_end)
        assert await task == 0, out.getvalue()
        stdin.close()
    assert len(list((tmp_path / "out").iterdir())) == 1, out.getvalue()


async def test_generate_without_a_public_url_refuses_before_any_charge(
    tmp_path: Path, clock: FakeClock
) -> None:
    photo = _photo(tmp_path / "in.png")
    async with FakeApixo(api_key="sk-right", fetch_inputs=True) as fake:
        settings = _apixo_settings(tmp_path, fake)
        assert settings.media_base_url() is None
        out, err = io.StringIO(), io.StringIO()
        args = build_parser().parse_args(["generate", "edit it", "--image", str(photo)])
        code = await drive(
            clock,
            generate(settings, args, asyncio.Event(), out, err, lambda s: Runtime(s, clock=clock)),
        )
        assert (code, out.getvalue()) == (2, "")
        assert "MEDIA_PUBLIC_URL" in err.getvalue() and "CALLBACK_PORT" in err.getvalue()
        assert fake.requests == [] and fake.tasks == {}
    async with Runtime(settings, clock=clock) as rt:
        assert await rt.jobs.user_jobs("console", "local") == []
        assert isinstance(rt.db, Database)
        assert await rt.db.fetchall("SELECT * FROM ledger") == []  # nothing reserved


async def test_generate_refuses_when_the_media_memory_is_full(
    tmp_path: Path, clock: FakeClock
) -> None:
    photo = _photo(tmp_path / "in.png")
    async with FakeApixo(api_key="sk-right", fetch_inputs=True) as fake:
        settings = _apixo_settings(tmp_path, fake, media_max_bytes=100)
        settings = settings.model_copy(
            update={"media_public_url": f"http://127.0.0.1:{settings.callback_port}"}
        )
        out, err = io.StringIO(), io.StringIO()
        args = build_parser().parse_args(["generate", "edit it", "--image", str(photo)])
        code = await drive(
            clock,
            generate(settings, args, asyncio.Event(), out, err, lambda s: Runtime(s, clock=clock)),
        )
        assert (code, out.getvalue()) == (1, "")
        assert "too many input images" in err.getvalue()
        assert "nothing was charged" in err.getvalue()
        assert "Traceback" not in err.getvalue()
        assert fake.requests == []


# --- doctor -------------------------------------------------------------------------


async def test_doctor_warns_when_apixo_has_no_public_url(tmp_path: Path) -> None:
    async with FakeApixo(api_key="sk-right") as fake:
        settings = _apixo_settings(tmp_path, fake)
        shown = io.StringIO()
        code = await doctor(settings, shown, settings_provider)
        text = shown.getvalue()
        assert code == 0, text
        assert "WARN  media: apixo only fetches input images from public URLs" in text
        assert "fix: set MEDIA_PUBLIC_URL" in text
        assert f"127.0.0.1:{settings.callback_port}" in text
        assert text.rstrip().endswith("All checks passed (1 warning).")

        configured = settings.model_copy(update={"media_public_url": "https://bot.example.com"})
        shown = io.StringIO()
        assert await doctor(configured, shown, settings_provider) == 0
        assert "OK    media: input images for apixo are served at https://bot.example.com" in (
            shown.getvalue()
        )
        assert shown.getvalue().rstrip().endswith("All checks passed.")


async def test_one_port_carries_media_and_metrics_when_they_share_it(
    tmp_path: Path, clock: FakeClock, session: aiohttp.ClientSession
) -> None:
    async with FakeApixo(api_key="sk-right") as fake:
        settings = _apixo_settings(tmp_path, fake)
        port = settings.callback_port
        settings = settings.model_copy(
            update={"media_public_url": f"http://127.0.0.1:{port}", "metrics_port": port}
        )
        async with Runtime(settings, clock=clock) as rt:
            await rt.start()
            assert rt.media is not None and len(rt.http_servers) == 1
            url = await rt.media.session().host(PNG, "image/png", "x.png")
            status, _, body = await _get(session, url)
            assert (status, body) == (200, PNG)
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert response.status == 200

"""Network safety end to end: the bot downloads only from Discord's CDN and the
provider's result hosts (DOWNLOAD_ALLOWED_HOSTS; the tests list 127.0.0.1, where the
fakes live), never from private or loopback addresses otherwise, and caps sizes while
streaming. A refused input image is a clear answer with no charge; a refused result
image fails the job with a refund, not a crash. (SafeDownloader's own rules are unit
tested in tests/test_download.py.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.core.clock import FakeClock
from bot.core.download import SafeDownloader
from bot.core.models import ErrorKind, JobState
from bot.settings import Settings
from tests.fakes.discord import FakeAttachment
from tests.fakes.providers import FakeFileServer, make_png
from tests.reliability.audit import (
    check_money,
    failure_shown,
    kind_shown,
    private_answer,
    result_messages,
    texts_of,
)
from tests.reliability.flows import imagine, job_for, settled_job
from tests.reliability.world import World, open_world
from tests.store_backends import space

PNG = make_png(512, 512)


class Resolver:
    """A DNS stand-in: names of the test domain point at loopback (where an attacker's
    server would be a private address); every lookup is recorded."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host.endswith(".example.test"):
            return ["127.0.0.1"]
        raise OSError("unknown host")


@pytest.fixture
async def attacker() -> AsyncIterator[FakeFileServer]:
    async with FakeFileServer() as server:
        yield server


def lying_attachment(world: World, url: str, filename: str = "cat.png") -> FakeAttachment:
    """An attachment whose URL is not where Discord keeps files (a forged or
    rewritten payload); its metadata looks perfectly fine."""
    attachment = world.fake.upload(PNG, filename)
    attachment.url = url
    return attachment


async def refused_input(world: World, attachment: FakeAttachment, reason: str) -> None:
    before = len(world.apixo.requests)
    interaction = await imagine(world, image1=attachment)
    answer = await world.drive(lambda: private_answer(world.fake, interaction))
    assert "image 1 (cat.png) could not be downloaded" in answer, answer
    assert reason in answer, answer
    await world.settle()
    assert await job_for(world, interaction) is None
    assert await world.rows("SELECT * FROM ledger") == []
    assert len(world.apixo.requests) == before


async def test_input_images_only_come_from_allowed_hosts(
    tmp_path: Path, clock: FakeClock, attacker: FakeFileServer
) -> None:
    resolver = Resolver()

    def downloader(settings: Settings, session: aiohttp.ClientSession) -> SafeDownloader:
        hosts = [*settings.download_allowed_hosts, "*.example.test"]
        return SafeDownloader(session, hosts, settings.download_max_bytes, resolver=resolver)

    served = attacker.add("cat.png", PNG)
    port = attacker.port
    async with open_world(tmp_path, clock, downloader=downloader) as world:
        for url, reason in [
            ("https://evil.example.com/cat.png", "images from evil.example.com are not accepted"),
            (f"http://localhost:{port}/cat.png", "images from localhost are not accepted"),
            (f"http://[::1]:{port}/cat.png", "images from ::1 are not accepted"),
            ("http://10.0.0.5/cat.png", "images from 10.0.0.5 are not accepted"),
            ("http://169.254.169.254/latest/meta-data/", "not accepted"),
            ("file:///etc/passwd", "only https links can be used"),
            ("ftp://127.0.0.1/cat.png", "only https links can be used"),
            # An allowed wildcard name whose DNS answer is private: refused, never fetched.
            (f"https://cdn.example.test:{port}/cat.png", "points to a private network address"),
            # Plain http only for exactly listed hosts.
            (f"http://cdn.example.test:{port}/cat.png", "only https links can be used"),
        ]:
            await refused_input(world, lying_attachment(world, url), reason)
        assert attacker.requests == []
        assert set(resolver.asked) == {"cdn.example.test"}
        # The same picture from the fake Discord CDN (allowed) goes through.
        ok = await imagine(world, image1=world.fake.upload(PNG, "cat.png"))
        job = await world.drive(lambda: settled_job(world, ok))
        assert job.state is JobState.DONE
        assert attacker.requests == [] and served.startswith("http://127.0.0.1")


async def test_input_downloads_are_capped_while_streaming(
    tmp_path: Path, clock: FakeClock, attacker: FakeFileServer
) -> None:
    """Metadata says 1 KB; the server streams 11 MB without a Content-Length (and, on
    another URL, announces it): refused at the 10 MB cap, nothing charged."""
    big = PNG + bytes(11 * 1024 * 1024)
    chunked = attacker.add("chunked.png", big, chunked=True)
    declared = attacker.add("declared.png", big)
    async with open_world(tmp_path, clock) as world:
        command = await world.fake.slash(
            "config", world.fake.owner, {"enabled": False}, subcommand="normalization"
        )
        await world.fake.wait_callback(command)

        def repair_off() -> bool:
            config = world.rt.chat.configs.peek(space(world.fake.guild_id))
            return config is not None and not config.normalize_images

        await world.drive(repair_off)
        for url in (chunked, declared):
            attachment = lying_attachment(world, url)
            attachment.data = PNG[:1024]  # what the payload's `size` reports
            await refused_input(world, attachment, "the file is larger than 10 MB")
        assert len(attacker.requests) == 2


async def test_result_images_only_come_from_allowed_hosts(
    tmp_path: Path, clock: FakeClock, attacker: FakeFileServer
) -> None:
    """A status answer naming results on forbidden hosts (private addresses, a
    redirect to one, something that is not an image) fails the job as the service's
    fault, refunds it and tells the user; good URLs in the same answer are delivered."""
    redirect = attacker.add("hop.png", redirect="http://10.0.0.1/x.png")
    html = attacker.add("page.png", b"<!DOCTYPE html><html>hi</html>", content_type="image/png")
    async with open_world(tmp_path, clock, complete_after=None) as world:
        bad = [
            "https://evil.example.com/x.png",
            "http://10.0.0.1/x.png",
            "http://169.254.169.254/latest/meta-data/iam",
            redirect,
        ]
        refused = await imagine(world, count=4)
        await world.settle()
        task = await world.apixo.next_task()
        world.apixo.complete(task.id)
        task.result_urls = bad
        job = await world.drive(lambda: settled_job(world, refused))
        assert job.state is JobState.FAILED and job.error_kind is ErrorKind.PROVIDER_OUTAGE
        shown = failure_shown(world.fake, job)
        assert shown is not None and kind_shown(shown) is ErrorKind.PROVIDER_OUTAGE
        assert result_messages(world.fake, job.id) == []

        partial = await imagine(world, count=2)
        await world.settle()
        task = await world.apixo.next_task()
        world.apixo.complete(task.id)
        task.result_urls = [task.result_urls[0], html]
        done = await world.drive(lambda: settled_job(world, partial))
        assert done.state is JobState.DONE and done.delivered == 1
        [message] = result_messages(world.fake, done.id)
        assert "1 of 2 images failed" in "\n".join(texts_of(message))
        totals = await check_money(world.rt.db, world.fake, await world.jobs())
        assert (totals.charged, totals.refunded) == (1, 5)
        # Only the redirect's first hop and the HTML page were fetched from the attacker.
        assert sorted(r.path for r in attacker.requests) == ["/hop.png", "/page.png"]

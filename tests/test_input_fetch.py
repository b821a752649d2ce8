"""Issue 13, rule 4: an input image that cannot be fetched RIGHT NOW (a 503, a hang, a
reset at its host) is told as such ("try again shortly"), never as an invalid image;
nothing is hosted, reserved or sent. Played against a loopback aiohttp file server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from bot.chat.wording import refusal
from bot.core.download import SafeDownloader
from bot.core.errors import ValidationFailed
from bot.core.models import Capabilities, ErrorKind
from bot.core.validation import ImageMeta, ImageSource, InputFetchFailed, prepare_images
from bot.discord.embeds import STYLE
from tests.fakes.discord import FakeDiscord, FakeUser
from tests.fakes.discord.harness import Running
from tests.fakes.providers import FakeFileServer
from tests.image_corpus import FakeHost, solid
from tests.store_backends import space

CAPS = Capabilities(
    name="apixo",
    max_input_images=3,
    aspect_ratios_t2i=["1:1"],
    aspect_ratios_i2i=["1:1"],
    supports_negative_prompt=True,
)


@pytest.fixture
async def files() -> AsyncIterator[FakeFileServer]:
    async with FakeFileServer() as server:
        yield server


def _source(url: str, index: int = 1) -> ImageSource:
    return ImageSource.from_url(url, ImageMeta(index, f"photo{index}.png"))


TRANSIENT: dict[str, Callable[[FakeFileServer], str]] = {
    "503": lambda files: files.add("busy.png", status=503),
    "hang": lambda files: files.hang("slow.png"),
    "reset": lambda files: files.reset("reset.png"),
}


@pytest.mark.parametrize("how", list(TRANSIENT))
async def test_an_input_the_host_cannot_serve_right_now_is_not_called_invalid(
    how: str, files: FakeFileServer, session: aiohttp.ClientSession
) -> None:
    url = TRANSIENT[how](files)
    fetch = SafeDownloader(session, ["127.0.0.1"], timeout=0.3)  # a short injected timeout
    host = FakeHost()
    with pytest.raises(InputFetchFailed) as caught:
        await prepare_images([_source(url)], CAPS, normalize=True, fetch=fetch, host=host)
    error = caught.value
    assert error.kind is ErrorKind.PROVIDER_OUTAGE and error.code == "input_unavailable"
    [problem] = error.problems
    assert "could not be fetched right now" in problem and "try again shortly" in problem
    text = refusal(error, STYLE, 0.0)
    assert "Nothing is wrong with your request" in text and text.count("right now") == 1
    assert "can't use" not in text and "invalid" not in text.lower()
    assert text.count("charged") == 1
    assert host.uploads == []


async def test_a_link_that_is_gone_is_still_the_images_problem(
    files: FakeFileServer, session: aiohttp.ClientSession
) -> None:
    url = files.add("gone.png", status=404)
    fetch = SafeDownloader(session, ["127.0.0.1"], timeout=2)
    with pytest.raises(ValidationFailed) as caught:
        await prepare_images([_source(url)], CAPS, normalize=True, fetch=fetch, host=FakeHost())
    assert not isinstance(caught.value, InputFetchFailed)
    assert "no longer available" in caught.value.problems[0]


async def test_a_real_problem_and_a_busy_host_are_both_told(
    files: FakeFileServer, session: aiohttp.ClientSession
) -> None:
    tiny = files.add("tiny.png", solid((64, 64), "PNG"))
    busy = files.add("busy.png", status=503)
    fetch = SafeDownloader(session, ["127.0.0.1"], timeout=2)
    with pytest.raises(ValidationFailed) as caught:
        await prepare_images(
            [_source(tiny, 1), _source(busy, 2)],
            CAPS,
            normalize=False,
            fetch=fetch,
            host=FakeHost(),
        )
    # The user must fix image 1 anyway; image 2 is said to be unreachable for now.
    assert not isinstance(caught.value, InputFetchFailed)
    problems = caught.value.problems
    assert any("photo1.png" in p for p in problems)
    assert any("photo2.png" in p and "right now" in p for p in problems)


async def test_discord_says_the_attachment_could_not_be_fetched_right_now(
    run: Running, fake: FakeDiscord, alice: FakeUser
) -> None:
    photo = fake.upload(solid((640, 480), "JPEG"), "photo.jpg")
    fake.fail_next("GET", rf"/attachments/\d+/{photo.id}/.*", 503, times=5)  # the CDN is down
    asked = await fake.slash("imagine", alice, {"prompt": "warmer", "image1": photo})
    await run.drive(lambda: asked.answer(ephemeral=True))
    text = asked.text()
    assert text.count("could not be fetched right now") == 1 and "try again shortly" in text
    assert "can't use" not in text and text.count("charged") == 1
    await run.settle()
    assert await run.rt.jobs.user_jobs("discord", alice.id) == []
    assert (await run.rt.quotas.usage(space(fake.guild_id), alice.id)).used == 0

"""bot.slack.files against the fake Slack's file host: the token goes only to Slack's
hosts (redirects included), sign-in pages and non-images are refused, size is capped."""

from __future__ import annotations

import aiohttp
import pytest
from pydantic import SecretStr

from bot.core.download import DownloadError
from bot.slack.files import SlackFiles
from tests.fakes.slack import BOT_TOKEN, FakeSlack, SlackUser
from tests.image_corpus import solid

OTHER_HOST = "media.elsewhere.test"  # not Slack: a redirect there must lose the token
SLACK_ORIGIN = "files-origin.slack.com"  # Slack's own: the token follows

# The shared Slack fixtures: slack, member, general.
pytest_plugins = ("tests.fakes.slack.fixtures",)


async def loopback(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


def files(
    slack: FakeSlack, session: aiohttp.ClientSession, token: str = BOT_TOKEN, **kw: object
) -> SlackFiles:
    # The test world: the fake on 127.0.0.1 is the API host; two more names resolve
    # to it, listed exactly (a wildcard never reaches a loopback address).
    return SlackFiles(
        session,
        SecretStr(token),
        api_base_url=slack.api_base,
        allowed_hosts=[OTHER_HOST, SLACK_ORIGIN],
        resolver=loopback,
        **kw,  # type: ignore[arg-type]
    )


async def test_a_shared_image_is_fetched_with_the_bearer_token(
    slack: FakeSlack, session: aiohttp.ClientSession, member: SlackUser
) -> None:
    image = solid((40, 30))
    file = slack.add_file(member, "cat.png", image, mimetype="")  # Slack may send ""
    got = await files(slack, session).fetch(file.wire())
    assert got.data == image and got.content_type == "image/png"
    [fetch] = slack.fetches
    assert fetch.authorization == f"Bearer {BOT_TOKEN}"
    assert fetch.path.endswith("/download/cat.png")


async def test_url_private_is_used_without_a_download_link(
    slack: FakeSlack, session: aiohttp.ClientSession, member: SlackUser
) -> None:
    file = slack.add_file(member, "cat.png", solid((8, 8)))
    wire = file.wire()
    del wire["url_private_download"]
    await files(slack, session).fetch(wire)
    assert "/download/" not in slack.fetches[0].path


async def test_a_redirect_off_slack_drops_the_token(
    slack: FakeSlack, session: aiohttp.ClientSession, member: SlackUser
) -> None:
    image = solid((16, 16))
    file = slack.add_file(member, "cat.png", b"")
    slack.file_script.external["cat.png"] = image
    slack.file_script.redirects[file.id] = f"http://{OTHER_HOST}:{slack.port}/ext/cat.png"
    got = await files(slack, session).fetch(file.wire())
    assert got.data == image
    first, second = slack.fetches
    assert first.authorization == f"Bearer {BOT_TOKEN}"
    assert second.host == f"{OTHER_HOST}:{slack.port}" and second.authorization is None


async def test_a_redirect_to_another_slack_host_keeps_the_token(
    slack: FakeSlack, session: aiohttp.ClientSession, member: SlackUser
) -> None:
    image = solid((16, 16))
    file = slack.add_file(member, "cat.png", image)
    moved = slack.add_file(member, "cat.png", image)
    slack.file_script.redirects[file.id] = (
        f"http://{SLACK_ORIGIN}:{slack.port}/files-pri/T0FAKE-{moved.id}/download/cat.png"
    )
    got = await files(slack, session).fetch(file.wire())
    assert got.data == image
    assert [f.authorization for f in slack.fetches] == [f"Bearer {BOT_TOKEN}"] * 2
    assert slack.fetches[1].host.startswith(SLACK_ORIGIN)


async def test_the_sign_in_page_is_refused_with_a_reason(
    slack: FakeSlack, session: aiohttp.ClientSession, member: SlackUser
) -> None:
    file = slack.add_file(member, "cat.png", solid((8, 8)))
    with pytest.raises(DownloadError) as caught:
        await files(slack, session, token="xoxb-revoked").fetch(file.wire())
    assert caught.value.code == "slack_sign_in" and "sign-in page" in caught.value.reason
    slack.file_script.sign_in_page.add(file.id)  # even with the right token
    with pytest.raises(DownloadError) as caught:
        await files(slack, session).fetch(file.wire())
    assert caught.value.code == "slack_sign_in"


async def test_text_named_png_is_not_an_image(
    slack: FakeSlack, session: aiohttp.ClientSession, member: SlackUser
) -> None:
    file = slack.add_file(member, "notes.png", b"just some text, honest" * 10)
    with pytest.raises(DownloadError) as caught:
        await files(slack, session).fetch(file.wire(), any_type=False)
    assert caught.value.code == "not_an_image"
    # any_type (for validation to judge) keeps the sniffed verdict, not the name's.
    got = await files(slack, session).fetch(file.wire())
    assert got.content_type == "application/octet-stream"


async def test_size_is_capped(
    slack: FakeSlack, session: aiohttp.ClientSession, member: SlackUser
) -> None:
    file = slack.add_file(member, "big.png", solid((8, 8)) + b"\0" * 50_000)
    with pytest.raises(DownloadError) as caught:
        await files(slack, session, max_bytes=10_000).fetch(file.wire())
    assert caught.value.code == "too_large"


async def test_other_hosts_are_refused_before_any_request(
    slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    wire = {"url_private_download": "https://evil.example/cat.png"}
    with pytest.raises(DownloadError) as caught:
        await files(slack, session).fetch(wire)
    assert caught.value.code == "host_not_allowed" and slack.fetches == []
    with pytest.raises(DownloadError) as caught:
        await files(slack, session).fetch({"name": "no link"})
    assert caught.value.code == "bad_url"


async def test_token_hosts(slack: FakeSlack, session: aiohttp.ClientSession) -> None:
    files_ = files(slack, session)
    for host in (
        "files.slack.com",
        "slack.com",
        "a.slack-edge.com",
        "127.0.0.1",
        "FILES.SLACK.COM.",
    ):
        assert files_.token_host(host), host
    for host in ("slack.com.evil.io", "evilslack.com", "files.slack.co", "localhost", ""):
        assert not files_.token_host(host), host


async def test_production_defaults_send_the_token_only_to_slack(
    session: aiohttp.ClientSession,
) -> None:
    real = SlackFiles(session, SecretStr("xoxb-x"))
    assert real.token_host("slack.com") and real.token_host("files.slack.com")
    assert not real.token_host("cdn.discordapp.com")
    with pytest.raises(ValueError):
        SlackFiles(session, SecretStr("xoxb-x"), api_base_url="not a url")


async def test_a_redirect_to_an_unlisted_host_is_refused(
    slack: FakeSlack, session: aiohttp.ClientSession, member: SlackUser
) -> None:
    file = slack.add_file(member, "cat.png", solid((8, 8)))
    slack.file_script.redirects[file.id] = f"http://collector.test:{slack.port}/ext/cat.png"
    with pytest.raises(DownloadError) as caught:
        await files(slack, session).fetch(file.wire())
    assert caught.value.code == "host_not_allowed"
    assert [f.host for f in slack.fetches] == [f"127.0.0.1:{slack.port}"]  # never asked

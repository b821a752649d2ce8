"""Reading a user's Slack file: SafeDownloader configured with Slack's rules.

Slack files are private: GET `url_private(_download)` with the bot token as a bearer
token (scope `files:read`). Without a valid token Slack answers 200 with an HTML
sign-in page, not 401 [ErikKalkoken gist; ocf/slackbridge#87], and file downloads
may redirect to another host [NousResearch/hermes-agent#114483]. So:
- the token goes only to Slack's own hosts (`*.slack.com`, `*.slack-edge.com`) and to
  the host of the API base URL, judged again on every redirect hop (SafeDownloader
  follows them by hand: aiohttp would drop or keep the header by its own rules);
- an HTML answer is refused with a reason, before its body is read;
- everything else (allow-list, pinned addresses, size cap while streaming, magic
  bytes) is SafeDownloader's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from pydantic import SecretStr
from yarl import URL

from bot.core.download import Downloaded, DownloadError, Resolver, SafeDownloader

DEFAULT_API_BASE_URL = "https://slack.com/api/"
SLACK_HOSTS = ("*.slack.com", "*.slack-edge.com")
_SLACK_DOMAINS = tuple(host.removeprefix("*.") for host in SLACK_HOSTS)


def _host(host: str | None) -> str:
    return (host or "").strip().strip("[]").rstrip(".").lower()


class SlackFiles:
    """Downloads the files users share with the bot."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        token: SecretStr,
        *,
        api_base_url: str = DEFAULT_API_BASE_URL,
        allowed_hosts: Sequence[str] = (),
        max_bytes: int = 25 * 1024 * 1024,
        timeout: float = 30.0,
        resolver: Resolver | None = None,
    ) -> None:
        """`allowed_hosts`: hosts a redirect may lead to besides Slack's (no token)."""
        self._token = token
        self._api_host = _host(URL(api_base_url).host)
        if not self._api_host:
            raise ValueError(f"the Slack API base URL has no host: {api_base_url!r}")
        # The API host is listed exactly: a loopback or private API host (a test fake,
        # a proxy) is the operator's choice, as in the download allow-list.
        self._downloader = SafeDownloader(
            session,
            [*SLACK_HOSTS, self._api_host, *allowed_hosts],
            max_bytes,
            timeout,
            resolver=resolver,
            headers_for=self._auth_for,
            check_response=_refuse_html,
        )

    @property
    def fetcher(self) -> SafeDownloader:
        """Fetches a Slack file's private URL (the chat layer's `Fetcher`)."""
        return self._downloader

    def token_host(self, host: str) -> bool:
        """Whether the bot token may be sent to this host."""
        name = _host(host)
        return name == self._api_host or any(
            name == domain or name.endswith("." + domain) for domain in _SLACK_DOMAINS
        )

    def _auth_for(self, url: URL) -> Mapping[str, str]:
        if not self.token_host(url.host or ""):
            return {}
        return {"Authorization": f"Bearer {self._token.get_secret_value()}"}

    async def fetch(self, file: Mapping[str, Any], *, any_type: bool = True) -> Downloaded:
        """Download a Slack file object (from an event, a shortcut or a modal).

        `any_type` (the default) keeps any sniffed type for validation to judge, as
        for Discord attachments; False insists on a provider-ready image."""
        url = file.get("url_private_download") or file.get("url_private")
        if not isinstance(url, str) or not url:
            raise DownloadError("the Slack file has no download link", code="bad_url")
        return await self._downloader.fetch(url, any_type=any_type)


def _refuse_html(response: aiohttp.ClientResponse) -> None:
    if response.content_type in ("text/html", "application/xhtml+xml"):
        raise DownloadError(
            "Slack answered with a sign-in page instead of the file: the bot may not read it "
            "(the app needs the files:read scope and must be in the conversation)",
            code="slack_sign_in",
        )

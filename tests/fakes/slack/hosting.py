"""The file host (url_private / url_private_download), the upload URL and response_url.

Slack serves a private file only with `Authorization: Bearer <token with files:read>`;
without it (or with a bad token) it answers 200 with an HTML sign-in page, not a 401
[ErikKalkoken gist; ocf/slackbridge#87]. Enterprise Grid redirects file downloads
to another host [NousResearch/hermes-agent#114483]: `redirect_file` scripts that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from tests.fakes.slack.wire import RecordedFetch
from tests.fakes.slack.world import BOT_TOKEN, World

SIGN_IN_PAGE = (
    b'<!DOCTYPE html><html lang="en-US"><head><title>Slack</title></head>'
    b'<body><h1>Sign in to Fake Workspace</h1><form action="/signin"></form></body></html>'
)


@dataclass
class FileScript:
    """How the file host treats a file, beyond the default (bytes for a good token)."""

    sign_in_page: set[str] = field(default_factory=set)  # file ids answered with HTML
    redirects: dict[str, str] = field(default_factory=dict)  # file id -> Location
    external: dict[str, bytes] = field(default_factory=dict)  # /ext/{name} bodies


class HostingMixin:
    world: World
    uploads: dict[str, str]
    fetches: list[RecordedFetch]
    upload_bodies: list[bytes]
    file_script: FileScript

    async def _file(self, request: web.Request) -> web.StreamResponse:
        fetch = RecordedFetch(
            path=request.path,
            host=request.headers.get("Host", ""),
            authorization=request.headers.get("Authorization"),
        )
        self.fetches.append(fetch)
        file_id = request.match_info["team_file"].split("-", 1)[-1]
        file = self.world.files.get(file_id)
        response: web.StreamResponse
        if file_id in self.file_script.redirects:
            response = web.Response(
                status=302, headers={"Location": self.file_script.redirects[file_id]}
            )
        elif (
            file is None
            or not file.uploaded
            or fetch.authorization != f"Bearer {BOT_TOKEN}"
            or file_id in self.file_script.sign_in_page
        ):
            response = web.Response(body=SIGN_IN_PAGE, content_type="text/html", charset="utf-8")
        else:
            response = web.Response(
                body=file.data,
                headers={"Content-Type": file.mimetype or "application/octet-stream"},
            )
        fetch.status = response.status
        return response

    async def _external(self, request: web.Request) -> web.Response:
        """A host outside Slack (for redirects that leave it): records whether a token came."""
        fetch = RecordedFetch(
            path=request.path,
            host=request.headers.get("Host", ""),
            authorization=request.headers.get("Authorization"),
        )
        self.fetches.append(fetch)
        body = self.file_script.external.get(request.match_info["name"])
        fetch.status = 404 if body is None else 200
        if body is None:
            return web.Response(status=404)
        return web.Response(body=body, content_type="application/octet-stream")

    async def _upload(self, request: web.Request) -> web.Response:
        """The upload URL from files.getUploadURLExternal: raw bytes or a multipart
        form (field `file`), no token needed; Slack answers 200 `OK - <length>`."""
        file_id = self.uploads.pop(request.match_info["token"], None)
        file = self.world.files.get(file_id or "")
        if file is None:
            return web.Response(status=404, text="upload URL not found or used")
        if request.content_type.startswith("multipart/"):
            data = b""
            async for part in await request.multipart():
                if getattr(part, "name", None) == "file":
                    data = bytes(await part.read(decode=False))  # type: ignore[union-attr]
        else:
            data = await request.read()
        self.upload_bodies.append(data)
        file.data = data
        file.mimetype, file.filetype = _sniff(data, file.name)
        file.uploaded = True
        return web.Response(text=f"OK - {len(data)}", content_type="text/plain")

    async def _respond(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.world.responses.append({"url": str(request.url), **body})
        return web.Response(text="ok", content_type="text/html")


def _sniff(data: bytes, name: str) -> tuple[str, str]:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png", "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg", "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "webp"
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else "binary"
    return "application/octet-stream", suffix

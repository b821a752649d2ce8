"""`wanbot invite`: the URL that adds the bot to a server with exactly what it needs.

The permission list is the one source of truth: docs/discord.md shows the same
table, and tests check it covers every permission the bot checks before a job.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord

from bot.core.http import call_timeout, make_http_session
from bot.core.retry import one_line
from bot.discord.portal import DISCORD_API, RESET_TOKEN, TOKEN_REJECTED
from bot.settings import Settings

SCOPES = ("bot", "applications.commands")  # the bot user, and its slash commands


@dataclass(frozen=True)
class Needed:
    flag: str  # the attribute of discord.Permissions
    name: str  # as the Discord UI shows it
    why: str


BOT_PERMISSIONS: tuple[Needed, ...] = (
    Needed("view_channel", "View Channels", "see where commands are used"),
    Needed("send_messages", "Send Messages", "status messages, inline results, replies"),
    Needed("send_messages_in_threads", "Send Messages in Threads", "results in the job's thread"),
    Needed("create_public_threads", "Create Public Threads", "one thread per job (thread mode)"),
    Needed("attach_files", "Attach Files", "results are real attachments"),
    Needed("embed_links", "Embed Links", "status cards and result embeds"),
    Needed(
        "read_message_history",
        "Read Message History",
        "replies: read the replied-to message; after a restart, find results already posted",
    ),
)


def bot_permissions() -> discord.Permissions:
    return discord.Permissions(**{needed.flag: True for needed in BOT_PERMISSIONS})


def invite_url(client_id: int) -> str:
    return discord.utils.oauth_url(client_id, permissions=bot_permissions(), scopes=SCOPES)


class InviteError(Exception):
    """The application id could not be found; the message says what to do. `exit_code`:
    2 for a setting to fix, 1 for Discord not answering."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


async def fetch_application_id(session: aiohttp.ClientSession, base: str, token: str) -> int:
    """The application id of the bot token (GET /oauth2/applications/@me)."""
    try:
        async with session.get(
            f"{base.rstrip('/')}/oauth2/applications/@me",
            headers={"Authorization": f"Bot {token}"},
            timeout=call_timeout(20, 10),
        ) as response:
            if response.status == 401:
                raise InviteError(f"{TOKEN_REJECTED}: {RESET_TOKEN}; or pass --client-id")
            body: Any = await response.json(content_type=None) if response.ok else None
    except ValueError:  # a 200 that is not JSON (a proxy's page): same as no answer
        body = None
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise InviteError(f"could not reach Discord at {base}: {one_line(exc)}", 1) from None
    if not isinstance(body, dict) or "id" not in body:
        raise InviteError(
            f"GET /oauth2/applications/@me answered HTTP {response.status}; pass --client-id",
            1,
        )
    return int(body["id"])


async def resolve_client_id(settings: Settings, client_id: int | None) -> int:
    if client_id is not None:
        return client_id
    if settings.discord_token is None:
        raise InviteError(
            "pass --client-id (the Application ID on the developer portal's General "
            "Information page), or set DISCORD_TOKEN so it can be looked up"
        )
    async with make_http_session() as session:
        return await fetch_application_id(
            session,
            settings.discord_api_base_url or DISCORD_API,
            settings.discord_token.get_secret_value(),
        )


def run_invite(settings: Settings, client_id: int | None = None) -> int:
    try:
        app_id = asyncio.run(resolve_client_id(settings, client_id))
    except InviteError as exc:
        print(f"wanbot: invite: {exc}", file=sys.stderr)
        return exc.exit_code
    print(invite_url(app_id))
    return 0

"""`wanbot doctor`'s Slack checks when a Slack token is set: the bot token with
`auth.test` (who the bot is, in which workspace) and the app-level token with
`apps.connections.open` (what Socket Mode calls first; the URL it returns is not
used). Plain HTTP: Slack answers 200 with `{"ok": false, "error": ...}` for a bad
token, and 429 with Retry-After when busy."""

from __future__ import annotations

from typing import Any

import aiohttp

from bot.core.http import call_timeout
from bot.ops.doctor.checks import Check, fail, ok, skip
from bot.settings import Settings

_TIMEOUT_SECONDS = 10.0
_TOKEN_ERRORS = ("invalid_auth", "not_authed", "account_inactive", "token_revoked")


async def _call(session: aiohttp.ClientSession, base: str, method: str, token: str) -> Any:
    url = base if base.endswith("/") else base + "/"
    async with session.post(
        f"{url}{method}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=call_timeout(_TIMEOUT_SECONDS, _TIMEOUT_SECONDS),
    ) as response:
        if response.status == 429:
            return {"ok": False, "error": "ratelimited"}
        return await response.json(content_type=None)


def _refused(name: str, setting: str, error: str, fix: str) -> Check:
    if error in _TOKEN_ERRORS:
        return fail(name, f"Slack refused {setting} ({error})", fix)
    if error == "not_allowed_token_type":
        return fail(name, f"{setting} is the wrong kind of token", fix)
    return fail(name, f"Slack answered {error or 'an error'}", fix)


async def check_slack(settings: Settings, session: aiohttp.ClientSession) -> list[Check]:
    bot, app = settings.slack_bot_token, settings.slack_app_token
    if bot is None and app is None:
        return [skip("slack", "SLACK_BOT_TOKEN and SLACK_APP_TOKEN not set: Slack is off")]
    base = settings.slack_api_base_url
    checks: list[Check] = []
    try:
        if bot is None:
            checks.append(
                fail("slack", "SLACK_BOT_TOKEN is not set", "copy the Bot User OAuth Token (xoxb-)")
            )
        else:
            me = await _call(session, base, "auth.test", bot.get_secret_value())
            if me.get("ok"):
                checks.append(
                    ok("slack", f"bot token accepted: {me.get('user')} in {me.get('team')}")
                )
            else:
                checks.append(
                    _refused(
                        "slack",
                        "SLACK_BOT_TOKEN",
                        str(me.get("error") or ""),
                        "copy the Bot User OAuth Token (xoxb-) from OAuth & Permissions, "
                        "after installing the app to the workspace (docs/slack.md)",
                    )
                )
        if app is None:
            checks.append(
                fail(
                    "socket mode",
                    "SLACK_APP_TOKEN is not set",
                    "create an app-level token (xapp-) with connections:write under Basic "
                    "Information -> App-Level Tokens",
                )
            )
        else:
            link = await _call(session, base, "apps.connections.open", app.get_secret_value())
            if link.get("ok"):
                checks.append(ok("socket mode", "app-level token accepted (Socket Mode)"))
            else:
                checks.append(
                    _refused(
                        "socket mode",
                        "SLACK_APP_TOKEN",
                        str(link.get("error") or ""),
                        "create an app-level token (xapp-) with the connections:write scope "
                        "and turn Socket Mode on (docs/slack.md)",
                    )
                )
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
        checks.append(
            fail(
                "slack",
                f"could not reach Slack at {base}: {type(exc).__name__} {exc}".rstrip(),
                "check your network (and SLACK_API_BASE_URL if you set it)",
            )
        )
    return checks

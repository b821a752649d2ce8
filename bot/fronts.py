"""`wanbot run` with Slack: every chat front end that has its tokens, on one Runtime
(one engine, one database, one ChatService). Discord's runner drives the process
when DISCORD_TOKEN is set and starts Slack beside it; alone, Slack runs here.

Slack's surface is registered before `rt.start()`, so jobs recovered from the
database find their front end; the Socket Mode connection opens after it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from collections.abc import Callable

from slack_sdk.errors import SlackApiError

from bot.lifecycle import run_until_stopped
from bot.runtime import Runtime
from bot.settings import Settings
from bot.slack.bot import SlackBot, slack_configured

log = logging.getLogger(__name__)


class SlackFrontEnd:
    """The Slack front end on a runtime: attach before `rt.start()`, `start` after."""

    def __init__(self, settings: Settings, rt: Runtime, *, alongside: bool = False) -> None:
        """`alongside`: Discord runs the process, so a refused Slack token is logged and
        Discord carries on."""
        self._alongside = alongside
        self.bot = SlackBot(
            settings,
            rt.chat,
            http=rt.http,
            provider=rt.provider,
            media=rt.media,
            clock=rt.clock,
            seen_events=rt.store.seen_events,
        )
        rt.health.watch_frontend("slack", self.bot.connected)
        rt.alert_sinks.add(self.bot.alerts)

    async def start(self) -> None:
        try:
            await self.bot.connect()
        except SlackApiError as exc:
            if not self._alongside:
                raise
            log.error("%s; running without Slack", refused(exc).removeprefix("wanbot: "))

    async def close(self) -> None:
        await self.bot.close()


def beside_discord(settings: Settings) -> Callable[[Runtime], SlackFrontEnd]:
    """For Discord's runner: Slack on the same runtime."""
    return functools.partial(SlackFrontEnd, settings, alongside=True)


def refused(exc: SlackApiError) -> str:
    error = exc.response.get("error") if exc.response is not None else None
    return (
        f"wanbot: Slack refused a token ({error or exc}): check SLACK_BOT_TOKEN (xoxb-) and "
        "SLACK_APP_TOKEN (xapp-, scope connections:write); see docs/slack.md"
    )


def run_slack(settings: Settings) -> int:
    """Slack alone (no DISCORD_TOKEN)."""
    if not slack_configured(settings):
        print(
            "wanbot: SLACK_BOT_TOKEN and SLACK_APP_TOKEN are both needed (docs/slack.md)",
            file=sys.stderr,
        )
        return 2
    return asyncio.run(run_until_stopped(functools.partial(serve_slack, settings)))


async def serve_slack(settings: Settings, stop: asyncio.Event) -> int:
    rt = Runtime(settings)
    slack = SlackFrontEnd(settings, rt)
    try:
        await rt.start()
        try:
            await slack.start()
        except SlackApiError as exc:
            print(refused(exc), file=sys.stderr)
            return 2
        await stop.wait()
        return 0
    finally:
        # Engine first (jobs stay stored for the next start), then Slack, then the rest.
        await rt.engine.close()
        await slack.close()
        await rt.close()
        log.info("stopped")

"""SlackBot: the Slack front end assembled from the runtime's parts (built in the
composition root, never at import time): the Web API client (429s retried after
Retry-After), the surface registered with the chat layer, the Bolt app, and the
Socket Mode connection.

    bot = SlackBot(settings, rt.chat, http=rt.http, provider=rt.provider,
                   media=rt.media, clock=rt.clock,
                   seen_events=rt.store.seen_events)  # before rt.start(): recovered
    await rt.start()                                 # Slack jobs find their surface
    await bot.connect()
    ...
    await bot.close()
"""

from __future__ import annotations

import logging

import aiohttp
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.chat.service import ChatService
from bot.core.clock import Clock
from bot.core.ports import ImageProvider, SeenEvents
from bot.core.tasks import TaskGroup
from bot.media import MediaHost
from bot.settings import Settings
from bot.slack.admins import SlackAdmins
from bot.slack.alerts import SlackAlerts
from bot.slack.app import build_app
from bot.slack.files import SlackFiles
from bot.slack.front import SlackFront
from bot.slack.inputs import SlackInputs
from bot.slack.surface import SlackSurface

log = logging.getLogger(__name__)

RATE_LIMIT_RETRIES = 2  # then the caller's own retry (the engine's, for deliveries)
API_TIMEOUT = 30


def slack_configured(settings: Settings) -> bool:
    return settings.slack_bot_token is not None and settings.slack_app_token is not None


def web_client(settings: Settings) -> AsyncWebClient:
    assert settings.slack_bot_token is not None
    return AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_base_url,
        timeout=API_TIMEOUT,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES)],
    )


class SlackBot:
    def __init__(
        self,
        settings: Settings,
        chat: ChatService,
        *,
        http: aiohttp.ClientSession,
        provider: ImageProvider,
        media: MediaHost | None,
        clock: Clock,
        seen_events: SeenEvents,
        client: AsyncWebClient | None = None,
    ) -> None:
        if not slack_configured(settings):
            raise ValueError("SLACK_BOT_TOKEN and SLACK_APP_TOKEN are both needed")
        assert settings.slack_bot_token is not None and settings.slack_app_token is not None
        self._app_token = settings.slack_app_token
        self.client = client or web_client(settings)
        files = SlackFiles(
            http,
            settings.slack_bot_token,
            api_base_url=settings.slack_api_base_url,
            max_bytes=settings.download_max_bytes,
        )
        self.surface = SlackSurface(self.client, clock, files.fetcher)
        # The one delivery path for Slack jobs, and the engine's port for them.
        self.delivery = chat.add_surface(self.surface)
        tasks = TaskGroup("slack")  # work after each ack, cancelled on close
        self.front = SlackFront(
            chat,
            self.surface,
            SlackInputs(files, provider, media, tasks),
            SlackAdmins(self.client, clock, settings.slack_admin_user_ids),
            clock,
            tasks,
        )
        # Events already handled by any process (rt.store.seen_events).
        self.app = build_app(self.front, self.client, seen_events)
        # Admin alerts about this workspace: its alerts channel, else the listed admins.
        self.alerts = SlackAlerts(self.client, chat.configs, settings.slack_admin_user_ids)
        self._handler: AsyncSocketModeHandler | None = None

    async def connect(self) -> None:
        """Open the Socket Mode connection (inside the running loop). Raises
        slack_sdk's SlackApiError when a token is refused."""
        await self.client.auth_test()  # the bot token, before the socket
        self._handler = AsyncSocketModeHandler(self.app, self._app_token.get_secret_value())
        await self._handler.connect_async()
        log.info("connected to Slack (Socket Mode)")

    def connected(self) -> bool:
        """For /healthz."""
        handler = self._handler
        session = getattr(handler.client, "current_session", None) if handler else None
        return session is not None and not session.closed

    async def close(self) -> None:
        if self._handler is not None:
            await self._handler.close_async()
            self._handler = None
        await self.front.tasks.close()

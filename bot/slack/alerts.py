"""Admin alerts on Slack (`bot.core.ports.AdminAlerts`): a message in the channel set
with `/wanbot config alerts #channel`, else a direct message to each admin listed in
SLACK_ADMIN_USER_IDS. Throttling and logging happen in the core (`bot.core.alerts`);
this only delivers, and says whether a person was told."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.chat.configs import SpaceConfigs
from bot.chat.wording import clip
from bot.core.alerts import alert_text
from bot.core.models import AdminAlert, Space

log = logging.getLogger(__name__)


class SlackAlerts:
    def __init__(
        self, client: AsyncWebClient, configs: SpaceConfigs, admin_ids: Sequence[str]
    ) -> None:
        self._client = client
        self._configs = configs
        self._admin_ids = list(admin_ids)

    async def alert(self, alert: AdminAlert) -> bool:
        if alert.guild_id is None or alert.platform != "slack":
            return False  # not a Slack workspace's: the log (and other front ends) have it
        text = clip(alert_text(alert), 3000)
        config = await self._configs.get(Space(platform="slack", id=alert.guild_id))
        if config.alerts_channel_id and await self._post(config.alerts_channel_id, text):
            return True
        hint = "(Choose a channel for these with `/wanbot config alerts #channel`.)"
        told = [await self._post(user, f"{text}\n{hint}") for user in self._admin_ids]
        if not told:
            log.warning(
                "workspace %s: no alerts channel and no SLACK_ADMIN_USER_IDS to tell",
                alert.guild_id,
            )
        return any(told)

    async def _post(self, channel: str, text: str) -> bool:
        try:
            await self._client.chat_postMessage(channel=channel, text=text)
        except SlackApiError as exc:
            log.warning("could not post an admin alert to %s (%s)", channel, exc)
            return False
        return True

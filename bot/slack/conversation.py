"""A request from Slack (a slash command, a mention, a shortcut, a button, a modal) as
the chat layer sees it: who asked, where, and how to answer them."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.chat.cards import Card
from bot.chat.configs import require_allowed_channel
from bot.chat.surface import HostSession
from bot.core.models import GuildConfig, Requester
from bot.slack import blocks
from bot.slack.style import STYLE, SlackStyle
from bot.slack.surface import SlackRef, SlackSurface, slack_error

log = logging.getLogger(__name__)

Respond = Callable[..., Awaitable[Any]]  # Bolt's respond(): posts to the response_url


@dataclass
class SlackConversation:
    surface: SlackSurface
    team_id: str
    user_id: str
    channel_id: str
    is_admin: bool
    # The thread the job's messages go in; None: the status message starts one.
    thread_ts: str | None = None
    respond: Respond | None = None  # the request's response_url, when it has one
    host_session: Callable[[], HostSession] | None = None
    display_name: str | None = None
    input_files: list[str] = field(default_factory=list)  # the Slack files of this request

    @property
    def style(self) -> SlackStyle:
        return STYLE

    @property
    def requester(self) -> Requester:
        return Requester(
            platform="slack",
            user_id=self.user_id,
            guild_id=self.team_id,
            channel_id=self.channel_id,
            is_admin=self.is_admin,
            display_name=self.display_name,
        )

    def check_place(self, config: GuildConfig | None) -> None:
        """The channel is allowed (the bot's membership is checked before, with I/O)."""
        if config is not None:
            require_allowed_channel(config, self.channel_id, self.style)

    def image_host(self) -> HostSession:
        if self.host_session is None:
            raise RuntimeError("this request carries no images to host")
        return self.host_session()

    async def post_status(self, card: Card) -> dict[str, Any]:
        response = await self.surface.client.chat_postMessage(
            channel=self.channel_id,
            thread_ts=self.thread_ts,
            blocks=blocks.blocks(card),
            text=blocks.fallback_text(card),
        )
        ts = str(response["ts"])
        return SlackRef(
            slack_channel=self.channel_id,
            slack_thread_ts=self.thread_ts or ts,
            slack_status_ts=ts,
            slack_input_files=self.input_files,
        ).stored()

    async def answer(self, card: Card | str, *, files: Sequence[Any] = ()) -> None:
        """Privately: an ephemeral message, else (the bot is not in the channel) the
        request's response_url."""
        if isinstance(card, str):
            fields: dict[str, Any] = {"text": card}
        else:
            fields = {"text": blocks.fallback_text(card), "blocks": blocks.blocks(card)}
        try:
            await self.surface.client.chat_postEphemeral(
                channel=self.channel_id, user=self.user_id, thread_ts=self.thread_ts, **fields
            )
            return
        except SlackApiError as exc:
            if self.respond is None:
                raise
            log.info("ephemeral failed (%s): answering through the response_url", slack_error(exc))
        await self.respond(response_type="ephemeral", replace_original=False, **fields)

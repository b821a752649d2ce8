"""Direct messages on the fake Discord, in the documented wire format:

- `POST /users/@me/channels` with `{"recipient_id": ...}` opens (or returns) the DM
  channel with that user: a channel object of type 1 (DM) with `recipients`;
- `POST /channels/{dm}/messages` posts in it; a user who does not accept DMs from the
  bot gets Discord's 403, code 50007 "Cannot send messages to this user".

DM channels are kept apart from the guild's channels (no permissions, no history
here); messages sent are in `dm_messages`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.discord.gateway import GatewayMixin
from tests.fakes.discord.payloads import FakeUser, iso_now
from tests.fakes.discord.wire import UPLOAD, ApiError, json_response

DM = 1
CANNOT_MESSAGE_USER = 50007


class DmMixin(GatewayMixin):
    def refuse_dms(self, user: FakeUser) -> None:
        """`user` does not accept direct messages from the bot (privacy settings)."""
        self.dms_closed.add(user.id)

    def dms_to(self, user: FakeUser) -> list[dict[str, Any]]:
        return [m for m in self.dm_messages if self.dm_channels.get(m["channel_id"]) == user.id]

    def is_dm_channel(self, channel_id: str) -> bool:
        return channel_id in self.dm_channels

    async def _open_dm(self, request: web.Request) -> web.Response:
        channels = self.dm_channels
        payload = request[UPLOAD].payload
        recipient = self.users.get(str(payload.get("recipient_id")))
        if recipient is None:
            raise ApiError(400, 50035, "Invalid Form Body: recipient_id")
        channel_id = next((c for c, u in channels.items() if u == recipient.id), None)
        if channel_id is None:
            channel_id = self._ids.next()
            channels[channel_id] = recipient.id
        return json_response(
            {
                "id": channel_id,
                "type": DM,
                "last_message_id": None,
                "flags": 0,
                "recipients": [recipient.payload()],
            }
        )

    async def _post_dm(self, request: web.Request) -> web.Response:
        channel_id = request.match_info["channel"]
        if self.dm_channels[channel_id] in self.dms_closed:
            raise ApiError(403, CANNOT_MESSAGE_USER, "Cannot send messages to this user")
        payload = request[UPLOAD].payload
        message = {
            "id": self._ids.next(),
            "channel_id": channel_id,
            "type": 0,
            "content": payload.get("content") or "",
            "author": self.bot.payload(),
            "attachments": [],
            "embeds": payload.get("embeds") or [],
            "components": [],
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "pinned": False,
            "tts": False,
            "timestamp": iso_now(),
            "edited_timestamp": None,
            "flags": 0,
        }
        self.dm_messages.append(message)
        return json_response(message)

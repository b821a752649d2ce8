"""The fake gateway: HELLO, IDENTIFY, READY, GUILD_CREATE, heartbeats, and dispatching
events (messages, threads, channel changes) to the connected bot."""

from __future__ import annotations

import json
import secrets
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.discord.payloads import (
    EPHEMERAL,
    FakeChannel,
    FakeUser,
)
from tests.fakes.discord.wire import (
    DISALLOWED_INTENTS,
    MESSAGE_CONTENT_INTENT,
    GatewayConnection,
)
from tests.fakes.discord.world import World


class GatewayMixin(World):
    @property
    def connected(self) -> bool:
        return any(c.ready for c in self._connections)

    async def wait_connected(self, timeout: float = 5.0) -> None:
        await self.wait_until(lambda: self.connected, timeout=timeout)

    async def _dispatch_all(self, event: str, data: dict[str, Any]) -> None:
        for conn in list(self._connections):
            if conn.ready and not conn.ws.closed:
                await self._send_dispatch(conn, event, data)
        await self._notify()

    async def _send_dispatch(
        self, conn: GatewayConnection, event: str, data: dict[str, Any]
    ) -> None:
        conn.seq += 1
        await conn.ws.send_str(json.dumps({"op": 0, "t": event, "s": conn.seq, "d": data}))

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send one gateway event to the connected bot."""
        if not self.connected:
            raise RuntimeError("no bot is connected to the fake gateway")
        await self._dispatch_all(event, data)

    async def _announce(self, message: dict[str, Any]) -> None:
        if not message["flags"] & EPHEMERAL:
            await self._dispatch_all("MESSAGE_CREATE", self._gateway_message(message))

    async def _delete_message(self, message: dict[str, Any]) -> None:
        self.messages.pop(message["id"], None)
        message["deleted"] = True
        await self._dispatch_all(
            "MESSAGE_DELETE",
            {"id": message["id"], "channel_id": message["channel_id"], "guild_id": self.guild_id},
        )

    async def create_channel(self, name: str, *, bot_deny: int = 0) -> FakeChannel:
        """A channel made while the bot is connected (CHANNEL_CREATE follows)."""
        channel = self.add_channel(name, bot_deny=bot_deny)
        await self._dispatch_all("CHANNEL_CREATE", self._channel_payload(channel))
        return channel

    async def delete_message(self, message_id: str) -> None:
        """Someone (a moderator, the author) deletes a message."""
        await self._delete_message(self.messages[message_id])

    async def add_thread(self, parent: FakeChannel, name: str, owner: FakeUser) -> FakeChannel:
        thread = self._new_thread(self._ids.next(), parent, name, owner)
        await self._dispatch_all(
            "THREAD_CREATE", {**self._channel_payload(thread), "newly_created": True}
        )
        return thread

    async def set_bot_deny(self, channel: FakeChannel, deny: int) -> None:
        """Change the bot's permission overwrite in a channel (CHANNEL_UPDATE follows)."""
        channel.bot_deny = deny
        await self._dispatch_all("CHANNEL_UPDATE", self._channel_payload(channel))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = GatewayConnection(ws)
        self._connections.append(conn)
        try:
            await ws.send_str(
                json.dumps({"op": 10, "d": {"heartbeat_interval": 45000}, "s": None, "t": None})
            )
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                op = frame.get("op")
                if op == 1:
                    await ws.send_str(json.dumps({"op": 11}))
                elif op == 2:
                    await self._identify(conn, frame["d"])
                elif op == 6:
                    # No session resumption here: ask for a fresh IDENTIFY.
                    await ws.send_str(json.dumps({"op": 9, "d": False}))
        finally:
            self._connections.remove(conn)
            await self._notify()
        return ws

    async def _identify(self, conn: GatewayConnection, data: dict[str, Any]) -> None:
        self.identifies.append(data)
        if (
            int(data.get("intents", 0)) & MESSAGE_CONTENT_INTENT
            and not self.message_content_allowed
        ):
            await conn.ws.close(code=DISALLOWED_INTENTS, message=b"Disallowed intent(s).")
            return
        ready = {
            "v": 10,
            "user": {**self.bot.payload(), "verified": True, "mfa_enabled": False, "flags": 0},
            "session_id": secrets.token_hex(16),
            "resume_gateway_url": self.gateway_url,
            "guilds": [{"id": self.guild_id, "unavailable": True}],
            "application": {"id": self.application_id, "flags": 0},
            "private_channels": [],
            "relationships": [],
        }
        await self._send_dispatch(conn, "READY", ready)
        await self._send_dispatch(conn, "GUILD_CREATE", self._guild_payload())
        conn.ready = True
        await self._notify()

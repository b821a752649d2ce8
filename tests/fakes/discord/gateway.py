"""The fake gateway: HELLO, IDENTIFY, READY, GUILD_CREATE, heartbeats, and dispatching
events (messages, threads, channel changes) to the connected bot.

Sharding as Discord documents it: IDENTIFY may carry `shard: [id, count]`; that
session gets READY and GUILD_CREATE for the guilds with (guild_id >> 22) % count == id
only, and only those guilds' events (DMs go to shard 0). A shard out of range, or one
already connected, is closed with 4010; without a shard while `sharding_required`,
4011. Each IDENTIFY is recorded in `identify_log` with its bucket
(shard_id % max_concurrency) and times, so tests can check the pacing.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.discord.payloads import (
    EPHEMERAL,
    FakeChannel,
    FakeUser,
)
from tests.fakes.discord.wire import (
    DISALLOWED_INTENTS,
    INVALID_SHARD,
    MESSAGE_CONTENT_INTENT,
    SHARDING_REQUIRED,
    GatewayConnection,
    IdentifyRecord,
)
from tests.fakes.discord.world import World


class GatewayMixin(World):
    @property
    def connected(self) -> bool:
        return any(c.ready for c in self._connections)

    async def wait_connected(self, timeout: float = 5.0) -> None:
        await self.wait_until(lambda: self.connected, timeout=timeout)

    def sessions_for(self, guild_id: str | None) -> list[GatewayConnection]:
        """The ready sessions that receive `guild_id`'s events."""
        return [c for c in self._connections if c.ready and not c.ws.closed and c.owns(guild_id)]

    @property
    def shards_connected(self) -> list[tuple[int, int]]:
        return sorted(c.shard for c in self._connections if c.ready and c.shard is not None)

    async def _dispatch_all(self, event: str, data: dict[str, Any]) -> None:
        """To every session of the shard owning the event's guild (Discord's routing)."""
        guild_id = data.get("guild_id")
        for conn in self.sessions_for(None if guild_id is None else str(guild_id)):
            await self._send_dispatch(conn, event, data)
        await self._notify()

    async def _send_dispatch(
        self, conn: GatewayConnection, event: str, data: dict[str, Any]
    ) -> None:
        conn.seq += 1
        # A client gone (killed) before its session is dropped: what Discord answers on
        # REST never depends on who is listening on the gateway.
        with contextlib.suppress(ConnectionResetError):
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
            {
                "id": message["id"],
                "channel_id": message["channel_id"],
                "guild_id": self.guild_of(message["channel_id"]),
            },
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

    def _refusal(self, shard: tuple[int, int] | None) -> tuple[int, bytes] | None:
        if shard is None:
            if self.sharding_required:
                return SHARDING_REQUIRED, b"Sharding required."
            return None
        shard_id, count = shard
        if count < 1 or not 0 <= shard_id < count:
            return INVALID_SHARD, b"Invalid shard."
        if any(c.shard == shard and c.ready and not c.ws.closed for c in self._connections):
            return INVALID_SHARD, b"Invalid shard."
        return None

    async def _identify(self, conn: GatewayConnection, data: dict[str, Any]) -> None:
        self.identifies.append(data)
        raw = data.get("shard")
        shard = (int(raw[0]), int(raw[1])) if raw else None
        record = IdentifyRecord(
            shard=shard,
            bucket=shard[0] % self.max_concurrency if shard else 0,
            clock_at=self.clock.monotonic(),
            real_at=time.monotonic(),
        )
        self.identify_log.append(record)
        refusal = self._refusal(shard)
        if refusal is not None:
            record.close_code = refusal[0]
            await conn.ws.close(code=refusal[0], message=refusal[1])
            await self._notify()
            return
        if (
            int(data.get("intents", 0)) & MESSAGE_CONTENT_INTENT
            and not self.message_content_allowed
        ):
            await conn.ws.close(code=DISALLOWED_INTENTS, message=b"Disallowed intent(s).")
            return
        conn.shard = shard
        guilds = [g for g in self.guilds if conn.owns(g)]
        ready = {
            "v": 10,
            "user": {**self.bot.payload(), "verified": True, "mfa_enabled": False, "flags": 0},
            "session_id": secrets.token_hex(16),
            "resume_gateway_url": self.gateway_url,
            "guilds": [{"id": g, "unavailable": True} for g in guilds],
            "application": {"id": self.application_id, "flags": 0},
            "private_channels": [],
            "relationships": [],
        }
        if shard is not None:
            ready["shard"] = list(shard)
        await self._send_dispatch(conn, "READY", ready)
        for guild_id in guilds:
            await self._send_dispatch(conn, "GUILD_CREATE", self._guild_payload(guild_id))
        conn.ready = True
        await self._notify()

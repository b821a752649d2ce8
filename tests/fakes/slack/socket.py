"""Socket Mode: the websocket `apps.connections.open` points at, envelopes out, acks in.

On connect Slack sends `{"type": "hello", ...}`; every delivery is an envelope
`{"envelope_id", "type", "payload", "accepts_response_payload"}` (events add
`retry_attempt`/`retry_reason`) and the app answers `{"envelope_id", "payload"?}` on
the same socket [docs.slack.dev/apis/events-api/using-socket-mode]. The server answers
the SDK's pings with pongs: slack_sdk pings `sdk-ping-pong:<t>` and connects with
`heartbeat=ping_interval`, so a silent socket is closed and replaced within about one
ping interval (slack_sdk/socket_mode/aiohttp).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.slack.wire import Ack, Envelope, Ids
from tests.fakes.slack.world import APP_ID


class SocketModeMixin:
    ids: Ids
    envelopes: list[Envelope]
    acks: list[Ack]
    unknown_acks: list[dict[str, Any]]
    sockets: list[web.WebSocketResponse]
    answer_pings: bool
    _connected: asyncio.Event

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        # Pongs by hand: answer_pings=False plays a half-dead link (the SDK's pings go
        # unanswered), switchable on an open socket.
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        self.sockets.append(ws)
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len([s for s in self.sockets if not s.closed]),
                "debug_info": {"host": "applink-fake", "approximate_connection_time": 18060},
                "connection_info": {"app_id": APP_ID},
            }
        )
        self._connected.set()
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._read_ack(json.loads(message.data))
                elif message.type == WSMsgType.PING and self.answer_pings:
                    await ws.pong(message.data)
                elif message.type == WSMsgType.CLOSE:
                    await ws.close()
        finally:
            if ws in self.sockets:
                self.sockets.remove(ws)
            if not any(not s.closed for s in self.sockets):
                self._connected.clear()
        return ws

    def _read_ack(self, frame: dict[str, Any]) -> None:
        envelope = next(
            (e for e in self.envelopes if e.envelope_id == frame.get("envelope_id")), None
        )
        if envelope is None:
            self.unknown_acks.append(frame)
            return
        ack = Ack(envelope.envelope_id, frame.get("payload"), time.monotonic() - envelope.sent_real)
        self.acks.append(ack)
        if envelope.ack is None:
            envelope.ack = ack
            envelope.acked.set()

    async def wait_connected(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def deliver(
        self,
        type_: str,
        payload: dict[str, Any],
        *,
        retry_attempt: int = 0,
        retry_reason: str = "",
        to: int | None = None,
    ) -> Envelope:
        """Send one envelope on the newest open socket, or on open socket number `to`
        (in connection order: with several connections Slack picks one per envelope).
        Waits for the app to connect."""
        await self.wait_connected()
        envelope = Envelope(
            envelope_id=f"{self.ids.make('env')}-{time.monotonic_ns()}",
            type=type_,
            payload=payload,
            sent_real=time.monotonic(),
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
        )
        self.envelopes.append(envelope)
        open_sockets = [s for s in self.sockets if not s.closed]
        socket = open_sockets[-1 if to is None else to]
        envelope.sent_real = time.monotonic()
        await socket.send_json(envelope.frame())
        return envelope

    async def redeliver(
        self, envelope: Envelope, reason: str = "timeout", *, to: int | None = None
    ) -> Envelope:
        """Slack's retry of an event: a new envelope, the same payload (same event_id),
        on any of the open sockets (`to`, as in `deliver`)."""
        return await self.deliver(
            envelope.type,
            envelope.payload,
            retry_attempt=envelope.retry_attempt + 1,
            retry_reason=reason,
            to=to,
        )

    async def wait_sockets(self, count: int, timeout: float = 5.0) -> None:
        """Until `count` sockets are open (several processes, one connection each)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while len([s for s in self.sockets if not s.closed]) < count:
            if loop.time() > end:
                raise TimeoutError(f"{count} Socket Mode connections never opened")
            await asyncio.sleep(0.005)  # polling a condition with a deadline

    async def acked(self, envelope: Envelope, timeout: float = 5.0) -> Ack:
        """The app's ack of `envelope` (TimeoutError when none comes in `timeout`)."""
        await asyncio.wait_for(envelope.acked.wait(), timeout)
        assert envelope.ack is not None
        return envelope.ack

    async def disconnect_socket(self, reason: str = "refresh_requested") -> None:
        """Slack's request to reconnect; the SDK opens a new socket."""
        for socket in list(self.sockets):
            await socket.send_json(
                {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}}
            )

"""The fake REST API (/api/v10) and CDN: sessions, commands, interaction callbacks and
webhooks (with their deadlines), channel messages (limits, permissions, nonces), threads."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from tests.fakes.discord.gateway import GatewayMixin
from tests.fakes.discord.payloads import (
    ATTACH_FILES,
    CREATE_PUBLIC_THREADS,
    EPHEMERAL,
    GUILD_TEXT,
    LOADING,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    VIEW_CHANNEL,
    FakeChannel,
)
from tests.fakes.discord.wire import (
    CALLBACK_DEFERRED_MESSAGE,
    CALLBACK_DEFERRED_UPDATE,
    CALLBACK_MESSAGE,
    CALLBACK_MODAL,
    CALLBACK_UPDATE_MESSAGE,
    GATEWAY_MESSAGE_CONTENT_LIMITED,
    UPLOAD,
    ApiError,
    FakeInteraction,
    RecordedFile,
    json_response,
)


class RestMixin(GatewayMixin):
    def _check_auth(self, request: web.Request) -> None:
        if not request.headers.get("Authorization", "").startswith("Bot "):
            raise ApiError(401, 0, "401: Unauthorized")

    async def _me(self, request: web.Request) -> web.Response:
        self._check_auth(request)
        return json_response(
            {**self.bot.payload(), "verified": True, "mfa_enabled": False, "flags": 0}
        )

    async def _get_user(self, request: web.Request) -> web.Response:
        user = self.users.get(request.match_info["user"])
        if user is None:
            raise ApiError(404, 10013, "Unknown User")
        return json_response(user.payload())

    async def _app_info(self, request: web.Request) -> web.Response:
        self._check_auth(request)
        return json_response(
            {
                "id": self.application_id,
                "name": "wanbot",
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self.owner.payload(),
                "verify_key": "0" * 64,
                "flags": GATEWAY_MESSAGE_CONTENT_LIMITED if self.message_content_allowed else 0,
                "team": None,
                "summary": "",
            }
        )

    async def _gateway_info(self, request: web.Request) -> web.Response:
        # GET /gateway answers the url only; /gateway/bot adds shards and the limits.
        if request.path.endswith("/gateway"):
            return json_response({"url": self.gateway_url})
        self._check_auth(request)
        return json_response(
            {
                "url": self.gateway_url,
                "shards": self.recommended_shards,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 1000,
                    "reset_after": 0,
                    "max_concurrency": self.max_concurrency,
                },
            }
        )

    async def _put_commands(self, request: web.Request) -> web.Response:
        self._check_auth(request)
        if request.match_info["app"] != self.application_id:
            raise ApiError(403, 50001, "Missing Access")
        guild = request.match_info.get("guild")
        echoed = []
        for command in request[UPLOAD].payload or []:
            cmd = {
                "id": self._command_id(command["name"]),
                "application_id": self.application_id,
                "version": self._ids.next(),
                "description": command.get("description", ""),
                **command,
            }
            if guild:
                cmd["guild_id"] = guild
            echoed.append(cmd)
        self.commands[guild] = echoed
        return json_response(echoed)

    async def _get_commands(self, request: web.Request) -> web.Response:
        return json_response(self.commands.get(request.match_info.get("guild"), []))

    def _interaction_by_token(self, app_id: str, token: str) -> FakeInteraction:
        interaction = self._by_token.get(token)
        if interaction is None or app_id != self.application_id:
            raise ApiError(404, 10015, "Unknown Webhook")
        if self.clock.monotonic() - interaction.dispatched_clock > self.TOKEN_LIFETIME:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        return interaction

    def _check_files(self, files: Sequence[RecordedFile]) -> None:
        if len(files) > self.MAX_FILES:
            raise ApiError(
                400, 30015, f"Maximum number of attachments in a message reached ({self.MAX_FILES})"
            )
        if any(len(f.data) > self.attachment_size_limit for f in files):
            raise ApiError(413, 40005, "Request entity too large")

    async def _callback(self, request: web.Request) -> web.Response:
        interaction = self.interactions.get(request.match_info["id"])
        if interaction is None or interaction.token != request.match_info["token"]:
            raise ApiError(404, 10062, "Unknown interaction")
        late_clock = self.clock.monotonic() - interaction.dispatched_clock > self.CALLBACK_WINDOW
        late_real = time.monotonic() - interaction.dispatched_real > self.CALLBACK_WINDOW
        if late_clock or (self.enforce_real_time_window and late_real):
            raise ApiError(404, 10062, "Unknown interaction")
        if interaction.callback is not None:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        upload = request[UPLOAD]
        body = upload.payload
        ctype = int(body.get("type", 0))
        data = body.get("data") or {}
        self._check_files(upload.files)
        channel = self.channels[interaction.channel_id]
        message: dict[str, Any] | None = None
        if ctype == CALLBACK_MESSAGE:
            message = self._message_from_payload(
                channel, data, upload.files, flags=int(data.get("flags", 0)) & EPHEMERAL
            )
        elif ctype == CALLBACK_DEFERRED_MESSAGE:
            flags = (int(data.get("flags", 0)) & EPHEMERAL) | LOADING
            message = self._new_message(channel, self.bot, flags=flags)
        elif ctype == CALLBACK_UPDATE_MESSAGE:
            target = interaction.payload.get("message")
            if target is None:
                raise ApiError(400, 40060, "Interaction has no message to update")
            message = self._edit_message(self.messages[target["id"]], data, upload.files)
        elif ctype not in (CALLBACK_DEFERRED_UPDATE, CALLBACK_MODAL):
            raise ApiError(400, 50035, f"Invalid Form Body: unknown callback type {ctype}")
        interaction.callback = body
        interaction.callback_clock = self.clock.monotonic()
        interaction.callback_real = time.monotonic()
        answer: dict[str, Any] = {
            "interaction": {
                "id": interaction.id,
                "type": interaction.type,
                "response_message_loading": ctype == CALLBACK_DEFERRED_MESSAGE,
                "response_message_ephemeral": bool(message and message["flags"] & EPHEMERAL),
            }
        }
        if message is not None:
            if ctype != CALLBACK_UPDATE_MESSAGE:
                interaction.original_message_id = message["id"]
                interaction.answers.append(message)
                await self._announce(message)
            answer["interaction"]["response_message_id"] = message["id"]
            answer["resource"] = {"type": ctype, "message": message}
        return json_response(answer)

    async def _followup(self, request: web.Request) -> web.Response:
        interaction = self._interaction_by_token(
            request.match_info["app"], request.match_info["token"]
        )
        if interaction.callback is None:
            raise ApiError(404, 10015, "Unknown Webhook")
        upload = request[UPLOAD]
        self._check_files(upload.files)
        original = self.messages.get(interaction.original_message_id or "")
        if original is not None and original["flags"] & LOADING:
            # Discord: the first follow-up after a deferral replaces the "thinking" message.
            message = self._edit_message(original, upload.payload, upload.files)
        else:
            channel = self.channels[interaction.channel_id]
            flags = int(upload.payload.get("flags", 0)) & EPHEMERAL
            message = self._message_from_payload(channel, upload.payload, upload.files, flags=flags)
            interaction.answers.append(message)
            await self._announce(message)
        if request.query.get("wait") in ("1", "true", "True"):
            return json_response(message)
        return web.Response(status=204)

    async def _webhook_message(self, request: web.Request) -> web.StreamResponse:
        interaction = self._interaction_by_token(
            request.match_info["app"], request.match_info["token"]
        )
        message_id = request.match_info["message"]
        if message_id == "@original":
            message_id = interaction.original_message_id or ""
        message = self.messages.get(message_id)
        if message is None:
            raise ApiError(404, 10008, "Unknown Message")
        if request.method == "GET":
            return json_response(message)
        if request.method == "PATCH":
            upload = request[UPLOAD]
            self._check_files(upload.files)
            return json_response(self._edit_message(message, upload.payload, upload.files))
        if request.method == "DELETE":
            await self._delete_message(message)
            return web.Response(status=204)
        raise ApiError(405, 0, "405: Method Not Allowed")

    def _channel(self, request: web.Request) -> FakeChannel:
        channel = self.channels.get(request.match_info["channel"])
        if channel is None:
            raise ApiError(404, 10003, "Unknown Channel")
        if not self.bot_permissions(channel) & VIEW_CHANNEL:
            raise ApiError(403, 50001, "Missing Access")
        return channel

    def _require(self, channel: FakeChannel, needed: int) -> None:
        if self.bot_permissions(channel) & needed != needed:
            raise ApiError(403, 50013, "Missing Permissions")

    async def _get_channel(self, request: web.Request) -> web.Response:
        return json_response(self._channel_payload(self._channel(request)))

    async def _post_message(self, request: web.Request) -> web.Response:
        self._check_auth(request)
        channel = self._channel(request)
        upload = request[UPLOAD]
        payload = upload.payload
        self._require(channel, SEND_MESSAGES_IN_THREADS if channel.is_thread else SEND_MESSAGES)
        if upload.files:
            self._require(channel, ATTACH_FILES)
        self._check_files(upload.files)
        nonce = payload.get("nonce")
        if nonce is not None and payload.get("enforce_nonce"):
            seen = self._nonces.get((self.bot.id, str(nonce)))
            if seen is not None and self.clock.monotonic() - seen[1] < self.NONCE_WINDOW:
                existing = self.messages.get(seen[0])
                if existing is not None:
                    return json_response(existing)
        reference = (payload.get("message_reference") or {}).get("message_id")
        reference = None if reference is None else str(reference)  # ints are snowflakes too
        if reference is not None and reference not in self.messages:
            if (payload.get("message_reference") or {}).get("fail_if_not_exists", True):
                raise ApiError(400, 50035, "Invalid Form Body: Unknown message")
            reference = None
        message = self._message_from_payload(
            channel, payload, upload.files, reply_to=reference, nonce=nonce
        )
        if nonce is not None:
            self._nonces[(self.bot.id, str(nonce))] = (message["id"], self.clock.monotonic())
        await self._announce(message)
        return json_response(message)

    async def _history(self, request: web.Request) -> web.Response:
        """GET /channels/{id}/messages: newest first, `limit` 1-100 (default 50), with at
        most one of `before`, `after`, `around`. Without Read Message History the answer
        is empty, as on Discord; nonces are not part of stored messages."""
        channel = self._channel(request)
        query = request.query
        try:
            limit = int(query.get("limit", "50"))
        except ValueError:
            limit = 0
        anchors = [key for key in ("before", "after", "around") if key in query]
        if not 1 <= limit <= 100 or len(anchors) > 1:
            raise ApiError(400, 50035, "Invalid Form Body")
        if not self.bot_permissions(channel) & READ_MESSAGE_HISTORY:
            return json_response([])
        found = sorted(
            (m for m in self.messages_in(channel) if not m["flags"] & EPHEMERAL),
            key=lambda m: int(m["id"]),
        )
        anchor = int(query[anchors[0]]) if anchors else None
        if anchor is None:
            found = found[-limit:]
        elif "before" in query:
            found = [m for m in found if int(m["id"]) < anchor][-limit:]
        elif "after" in query:
            found = [m for m in found if int(m["id"]) > anchor][:limit]
        else:
            older = [m for m in found if int(m["id"]) <= anchor][-((limit + 1) // 2) :]
            newer = [m for m in found if int(m["id"]) > anchor][: limit - len(older)]
            found = older + newer
        page = [
            {k: v for k, v in self._visible(m).items() if k != "nonce"} for m in reversed(found)
        ]
        return json_response(page)

    async def _channel_message(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        message = self.messages.get(request.match_info["message"])
        if message is None or message["channel_id"] != channel.id or message["flags"] & EPHEMERAL:
            raise ApiError(404, 10008, "Unknown Message")
        if request.method == "GET":
            return json_response(self._visible(message))
        if request.method == "PATCH":
            if message["author"]["id"] != self.bot.id:
                raise ApiError(403, 50005, "Cannot edit a message authored by another user")
            upload = request[UPLOAD]
            if upload.files:
                self._require(channel, ATTACH_FILES)
            self._check_files(upload.files)
            return json_response(self._edit_message(message, upload.payload, upload.files))
        if request.method == "DELETE":
            if message["author"]["id"] != self.bot.id:
                self._require(channel, 1 << 13)  # MANAGE_MESSAGES
            await self._delete_message(message)
            return web.Response(status=204)
        raise ApiError(405, 0, "405: Method Not Allowed")

    async def _thread_from_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        message = self.messages.get(request.match_info["message"])
        if message is None or message["channel_id"] != channel.id:
            raise ApiError(404, 10008, "Unknown Message")
        if channel.type != GUILD_TEXT:
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        self._require(channel, CREATE_PUBLIC_THREADS)
        if message["id"] in self.channels:
            raise ApiError(400, 160004, "A thread has already been created for this message")
        name = str(request[UPLOAD].payload.get("name") or "thread")[:100]
        # A thread started from a message has the message's id.
        thread = self._new_thread(message["id"], channel, name, self.bot)
        payload = self._channel_payload(thread)
        message["thread"] = payload
        await self._dispatch_all("THREAD_CREATE", {**payload, "newly_created": True})
        return json_response(payload, 201)

    async def _thread_without_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        if channel.type != GUILD_TEXT:
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        self._require(channel, CREATE_PUBLIC_THREADS)
        name = str(request[UPLOAD].payload.get("name") or "thread")[:100]
        thread = self._new_thread(self._ids.next(), channel, name, self.bot)
        payload = self._channel_payload(thread)
        await self._dispatch_all("THREAD_CREATE", {**payload, "newly_created": True})
        return json_response(payload, 201)

    async def _typing(self, request: web.Request) -> web.Response:
        self._channel(request)
        return web.Response(status=204)

    async def _get_member(self, request: web.Request) -> web.Response:
        user = self.users.get(request.match_info["user"])
        if user is None or request.match_info["guild"] not in self.guilds:
            raise ApiError(404, 10007, "Unknown Member")
        return json_response(user.member_payload())

    async def _cdn(self, request: web.Request) -> web.Response:
        attachment = self.attachments.get(request.match_info["attachment"])
        if attachment is None or attachment.filename != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=attachment.data, headers={"Content-Type": attachment.content_type})

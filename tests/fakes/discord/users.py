"""What users do in the fake Discord: slash commands (options and resolved objects),
message menus, button clicks, modal submits and ordinary messages."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tests.fakes.discord.gateway import GatewayMixin
from tests.fakes.discord.payloads import (
    ADMIN_PERMISSIONS,
    FakeAttachment,
    FakeChannel,
    FakeRole,
    FakeUser,
)
from tests.fakes.discord.wire import (
    APPLICATION_COMMAND,
    CALLBACK_MODAL,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    FakeInteraction,
    walk_components,
)


class UsersMixin(GatewayMixin):
    async def post_user_message(
        self,
        author: FakeUser,
        content: str = "",
        *,
        channel: FakeChannel | None = None,
        attachments: Sequence[FakeAttachment] = (),
        embeds: Sequence[dict[str, Any]] = (),
        reply_to: str | None = None,
        mention_bot: bool = False,
        include_referenced: bool = True,
    ) -> dict[str, Any]:
        """A user posts a message (MESSAGE_CREATE goes to the bot)."""
        channel = channel or self.general
        if mention_bot:
            content = f"<@{self.bot.id}> {content}".strip()
        msg = self._new_message(
            channel,
            author,
            content=content,
            attachments=[a.payload() for a in attachments],
            embeds=list(embeds),
            reply_to=reply_to,
        )
        event = self._gateway_message(msg)
        if not include_referenced:
            event.pop("referenced_message", None)
        await self.dispatch("MESSAGE_CREATE", event)
        return msg

    def _interaction(
        self,
        itype: int,
        user: FakeUser,
        channel: FakeChannel,
        data: dict[str, Any],
        message: dict[str, Any] | None = None,
    ) -> FakeInteraction:
        iid = self._ids.next()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)
        permissions = user.guild_permissions()
        payload: dict[str, Any] = {
            "id": iid,
            "application_id": self.application_id,
            "type": itype,
            "token": token,
            "version": 1,
            "attachment_size_limit": self.attachment_size_limit,
            "guild_id": channel.guild_id,
            "guild": {"id": channel.guild_id, "locale": "en-US", "features": []},
            "channel_id": channel.id,
            "channel": {**self._channel_payload(channel), "permissions": str(permissions)},
            "member": {**user.member_payload(), "permissions": str(permissions)},
            "app_permissions": str(self.bot_permissions(channel)),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": channel.guild_id},
            "context": 0,
            "data": data,
        }
        if message is not None:
            payload["message"] = message
        return FakeInteraction(
            id=iid,
            token=token,
            type=itype,
            payload=payload,
            channel_id=channel.id,
            user=user,
            dispatched_clock=0.0,
            dispatched_real=0.0,
        )

    async def _send_interaction(self, interaction: FakeInteraction) -> FakeInteraction:
        self.interactions[interaction.id] = interaction
        self._by_token[interaction.token] = interaction
        interaction.dispatched_clock = self.clock.monotonic()
        interaction.dispatched_real = time.monotonic()
        await self.dispatch("INTERACTION_CREATE", interaction.payload)
        return interaction

    def _command_id(self, name: str) -> str:
        return self._command_ids.setdefault(name, self._ids.next())

    async def slash(
        self,
        name: str,
        user: FakeUser,
        options: Mapping[str, Any] | None = None,
        *,
        channel: FakeChannel | None = None,
        subcommand: str | None = None,
        group: str | None = None,
    ) -> FakeInteraction:
        """A user runs `/name [group] [subcommand] options...` (values: str, int, float,
        bool, FakeAttachment, FakeUser, FakeRole or FakeChannel)."""
        channel = channel or self.general
        resolved: dict[str, dict[str, Any]] = {}
        opts = [self._option(k, v, resolved) for k, v in (options or {}).items()]
        if subcommand is not None:
            opts = [{"name": subcommand, "type": 1, "options": opts}]
        if group is not None:
            opts = [{"name": group, "type": 2, "options": opts}]
        data: dict[str, Any] = {
            "id": self._command_id(name),
            "name": name,
            "type": 1,
            "options": opts,
        }
        if resolved:
            data["resolved"] = resolved
        return await self._send_interaction(
            self._interaction(APPLICATION_COMMAND, user, channel, data)
        )

    def _option(self, name: str, value: Any, resolved: dict[str, dict[str, Any]]) -> dict[str, Any]:
        if isinstance(value, FakeAttachment):
            resolved.setdefault("attachments", {})[value.id] = value.payload()
            return {"name": name, "type": 11, "value": value.id}
        if isinstance(value, FakeUser):
            resolved.setdefault("users", {})[value.id] = value.payload()
            member = {**value.member_payload(with_user=False)}
            member["permissions"] = str(value.guild_permissions())
            resolved.setdefault("members", {})[value.id] = member
            return {"name": name, "type": 6, "value": value.id}
        if isinstance(value, FakeRole):
            position = list(self.roles).index(value.id)
            resolved.setdefault("roles", {})[value.id] = value.payload(position)
            return {"name": name, "type": 8, "value": value.id}
        if isinstance(value, FakeChannel):
            channel = {**self._channel_payload(value), "permissions": str(ADMIN_PERMISSIONS)}
            resolved.setdefault("channels", {})[value.id] = channel
            return {"name": name, "type": 7, "value": value.id}
        if isinstance(value, bool):
            return {"name": name, "type": 5, "value": value}
        if isinstance(value, int):
            return {"name": name, "type": 4, "value": value}
        if isinstance(value, float):
            return {"name": name, "type": 10, "value": value}
        return {"name": name, "type": 3, "value": str(value)}

    async def message_command(self, name: str, user: FakeUser, message_id: str) -> FakeInteraction:
        """A user picks `name` in a message's Apps menu (resolved message included,
        whatever the MESSAGE_CONTENT intent)."""
        message = self.messages[message_id]
        channel = self.channels[message["channel_id"]]
        data = {
            "id": self._command_id(name),
            "name": name,
            "type": 3,
            "target_id": message_id,
            "resolved": {"messages": {message_id: message}},
        }
        return await self._send_interaction(
            self._interaction(APPLICATION_COMMAND, user, channel, data)
        )

    async def click(self, user: FakeUser, message_id: str, custom_id: str) -> FakeInteraction:
        message = self.messages[message_id]
        if custom_id not in self.custom_ids(message):
            raise AssertionError(f"message {message_id} has no button {custom_id!r}")
        channel = self.channels[message["channel_id"]]
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._send_interaction(
            self._interaction(MESSAGE_COMPONENT, user, channel, data, message=message)
        )

    async def submit_modal(
        self,
        user: FakeUser,
        custom_id: str,
        values: Mapping[str, str],
        *,
        channel: FakeChannel | None = None,
    ) -> FakeInteraction:
        rows = [
            {"type": 1, "components": [{"type": 4, "custom_id": key, "value": value}]}
            for key, value in values.items()
        ]
        data = {"custom_id": custom_id, "components": rows}
        return await self._send_interaction(
            self._interaction(MODAL_SUBMIT, user, channel or self.general, data)
        )

    async def fill_modal(
        self, opened: FakeInteraction, *values: str, user: FakeUser | None = None
    ) -> FakeInteraction:
        """Submit the modal `opened` answered with, filling its text inputs in order."""
        callback = await self.wait_callback(opened)
        if callback.get("type") != CALLBACK_MODAL:
            raise AssertionError(f"the interaction was answered with {callback}, not a modal")
        modal = callback["data"]
        inputs = [
            c["custom_id"] for c in walk_components(modal["components"]) if c.get("type") == 4
        ]
        return await self.submit_modal(
            user or opened.user,
            modal["custom_id"],
            dict(zip(inputs, values, strict=False)),
            channel=self.channels[opened.channel_id],
        )

    async def wait_callback(
        self, interaction: FakeInteraction, timeout: float = 5.0
    ) -> dict[str, Any]:
        return await self.wait_until(lambda: interaction.callback, timeout=timeout)

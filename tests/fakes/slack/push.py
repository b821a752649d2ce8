"""Pushing what users do: the payloads Slack delivers over Socket Mode.

Shapes from docs.slack.dev (interaction payloads, slash commands, Events API) and
bolt-python's own test fixtures; each returns the Envelope, to await its ack with
`fake.acked(envelope)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.core.clock import Clock
from tests.fakes.slack.wire import Envelope, Ids, SlackError
from tests.fakes.slack.world import (
    APP_ID,
    BOT_USER_ID,
    TEAM_DOMAIN,
    TEAM_ID,
    SlackChannel,
    SlackFile,
    SlackUser,
    World,
)

VERIFICATION_TOKEN = "fake-verification-token"  # deprecated, still sent by Slack


class PushMixin:
    world: World
    ids: Ids
    clock: Clock
    base_url: str

    if TYPE_CHECKING:  # provided by SocketModeMixin and WebApiMixin

        async def deliver(
            self, type_: str, payload: dict[str, Any], *, to: int | None = None
        ) -> Envelope: ...

        def issue_trigger(self, user: str) -> str: ...

    def _response_url(self) -> str:
        return f"{self.base_url}/response/{self.ids.make('R')}"

    def _team(self) -> dict[str, str]:
        return {"id": TEAM_ID, "domain": TEAM_DOMAIN}

    async def slash_command(
        self, user: SlackUser, channel: SlackChannel, command: str = "/imagine", text: str = ""
    ) -> Envelope:
        # Form fields as strings, exactly as Slack posts them (no thread_ts, no files).
        payload = {
            "token": VERIFICATION_TOKEN,
            "team_id": TEAM_ID,
            "team_domain": TEAM_DOMAIN,
            "channel_id": channel.id,
            "channel_name": channel.name,
            "user_id": user.id,
            "user_name": user.name,
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": self._response_url(),
            "trigger_id": self.issue_trigger(user.id),
        }
        return await self.deliver("slash_commands", payload)

    def user_message(
        self,
        user: SlackUser,
        channel: SlackChannel,
        text: str = "",
        *,
        files: list[SlackFile] | None = None,
        thread_ts: str | None = None,
    ) -> dict[str, Any]:
        """Store a message a user posted (with files shared into it) and return it."""
        ts = self.ids.ts(self.clock.now())
        message: dict[str, Any] = {
            "type": "message",
            "text": text,
            "user": user.id,
            "team": TEAM_ID,
            "ts": ts,
            "blocks": [],
        }
        if files:
            message["subtype"] = "file_share"
            message["upload"] = True
            message["files"] = [f.wire() for f in files]
            for file in files:
                file.shares.setdefault(channel.id, []).insert(0, {"ts": ts})
        if thread_ts:
            message["thread_ts"] = thread_ts
        return self.world.store_message(channel.id, message)

    async def event(
        self, event: dict[str, Any], *, event_id: str | None = None, to: int | None = None
    ) -> Envelope:
        payload = {
            "token": VERIFICATION_TOKEN,
            "team_id": TEAM_ID,
            "context_team_id": TEAM_ID,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or self.ids.make("Ev"),
            "event_time": int(self.clock.now()),
            "authorizations": [
                {
                    "team_id": TEAM_ID,
                    "user_id": BOT_USER_ID,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": self.ids.make("EC"),
        }
        return await self.deliver("events_api", payload, to=to)

    async def mention(
        self,
        user: SlackUser,
        channel: SlackChannel,
        text: str,
        *,
        files: list[SlackFile] | None = None,
        thread_ts: str | None = None,
        to: tuple[int | None, int | None] = (None, None),
    ) -> tuple[Envelope, Envelope]:
        """A message mentioning the bot: Slack sends `app_mention` and the `message`
        (subtype file_share when files came with it), two events for one post. `to`:
        the socket of each (see `deliver`); with several, they may land apart."""
        message = self.user_message(
            user, channel, f"<@{BOT_USER_ID}> {text}", files=files, thread_ts=thread_ts
        )
        mention = {
            **message,
            "type": "app_mention",
            "channel": channel.id,
            "event_ts": message["ts"],
        }
        mention.pop("subtype", None)
        plain = {
            **message,
            "channel": channel.id,
            "channel_type": "channel",
            "event_ts": message["ts"],
        }
        return await self.event(mention, to=to[0]), await self.event(plain, to=to[1])

    async def block_action(
        self,
        user: SlackUser,
        channel: SlackChannel,
        message_ts: str,
        action_id: str,
        value: str = "",
        *,
        block_id: str = "wan_actions",
    ) -> Envelope:
        message = self.world.messages.get((channel.id, message_ts))
        if message is None:
            raise SlackError("message_not_found")
        payload = {
            "type": "block_actions",
            "user": user.brief(),
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel.id,
                "is_ephemeral": False,
            },
            "trigger_id": self.issue_trigger(user.id),
            "team": self._team(),
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel.id, "name": channel.name},
            "message": message,
            "state": {"values": {}},
            "response_url": self._response_url(),
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": block_id,
                    "text": {"type": "plain_text", "text": action_id, "emoji": True},
                    "value": value,
                    "type": "button",
                    "action_ts": self.ids.ts(self.clock.now()),
                }
            ],
        }
        return await self.deliver("interactive", payload)

    async def message_shortcut(
        self, user: SlackUser, channel: SlackChannel, message_ts: str, callback_id: str = "wan_edit"
    ) -> Envelope:
        message = self.world.messages.get((channel.id, message_ts))
        if message is None:
            raise SlackError("message_not_found")
        payload = {
            "type": "message_action",
            "token": VERIFICATION_TOKEN,
            "action_ts": self.ids.ts(self.clock.now()),
            "team": self._team(),
            "user": user.brief(),
            "channel": {"id": channel.id, "name": channel.name},
            "is_enterprise_install": False,
            "enterprise": None,
            "callback_id": callback_id,
            "trigger_id": self.issue_trigger(user.id),
            "response_url": self._response_url(),
            "message_ts": message_ts,
            "message": message,
        }
        return await self.deliver("interactive", payload)

    @staticmethod
    def file_input(files: list[SlackFile]) -> dict[str, Any]:
        """A `file_input` element's submitted value, for `view_submission` values
        [bolt-js src/types/view/index.ts]."""
        return {"type": "file_input", "files": [f.wire() for f in files]}

    async def view_submission(
        self, user: SlackUser, view_id: str, values: dict[str, dict[str, Any]]
    ) -> Envelope:
        """Submit an open modal; `values` as view.state.values ({block: {action: value}})."""
        view = self.world.views.get(view_id)
        if view is None:
            raise SlackError("not_found")
        submitted = {k: v for k, v in view.items() if k != "user"}
        submitted["state"] = {"values": values}
        payload = {
            "type": "view_submission",
            "team": self._team(),
            "user": user.brief(),
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "trigger_id": self.issue_trigger(user.id),
            "view": submitted,
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        return await self.deliver("interactive", payload)

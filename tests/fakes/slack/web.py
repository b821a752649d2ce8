"""The Web API methods the bot uses, answered from the World as Slack answers them."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from bot.core.clock import Clock
from tests.fakes.slack.wire import Ids, RecordedCall, SlackError
from tests.fakes.slack.world import (
    APP_ID,
    APP_TOKEN,
    BOT_ID,
    BOT_TOKEN,
    BOT_USER_ID,
    TEAM_DOMAIN,
    TEAM_ID,
    SlackChannel,
    SlackFile,
    Trigger,
    World,
)

Handler = Callable[[RecordedCall], Awaitable[dict[str, Any]]]
# views.open must use a trigger_id within 3 s, once [api.slack.com/docs/triggers].
TRIGGER_SECONDS = 3.0


class WebApiMixin:
    world: World
    ids: Ids
    clock: Clock
    base_url: str
    socket_url: str
    uploads: dict[str, str]  # upload token -> file id

    def web_methods(self) -> dict[str, Handler]:
        return {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.delete": self._delete,
            "conversations.info": self._conversations_info,
            "conversations.open": self._conversations_open,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "users.info": self._users_info,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "files.info": self._files_info,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "apps.connections.open": self._connections_open,
        }

    @staticmethod
    def check_token(call: RecordedCall) -> None:
        if not call.token:
            raise SlackError("not_authed")
        if call.method == "apps.connections.open":
            if call.token.startswith("xoxb-"):
                raise SlackError("not_allowed_token_type")
            if call.token != APP_TOKEN:
                raise SlackError("invalid_auth")
        elif call.token != BOT_TOKEN:
            raise SlackError(
                "not_allowed_token_type" if call.token.startswith("xapp-") else "invalid_auth"
            )

    # -- helpers

    def _dm(self, user: str) -> str:
        """The app's direct-message conversation with `user` (opened on first use)."""
        dm_id = "D" + user[1:]
        if dm_id not in self.world.channels:
            self.world.channels[dm_id] = SlackChannel(
                id=dm_id, name=f"dm-{user}", members={user, BOT_USER_ID}
            )
        return dm_id

    def _channel(self, call: RecordedCall, key: str = "channel", *, user_ok: bool = False) -> str:
        channel = call.args.get(key)
        if not channel:
            raise SlackError("channel_not_found")
        if user_ok and channel in self.world.users:
            # chat.postMessage takes a user id: the app's direct messages with them.
            channel = self._dm(str(channel))
        if channel not in self.world.channels:
            raise SlackError("channel_not_found")
        return str(channel)

    def _member(self, channel: str) -> None:
        if BOT_USER_ID not in self.world.channels[channel].members:
            raise SlackError("not_in_channel")

    def _message(self, channel: str, ts: Any) -> dict[str, Any]:
        message = self.world.messages.get((channel, str(ts)))
        if message is None:
            raise SlackError("message_not_found")
        return message

    def _bot_message(self, call: RecordedCall, ts: str) -> dict[str, Any]:
        args = call.args
        text = args.get("text") or ""
        if not text and not args.get("blocks") and not args.get("attachments"):
            raise SlackError("no_text")
        message: dict[str, Any] = {
            "type": "message",
            "subtype": "bot_message",
            "text": text,
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "ts": ts,
        }
        for key in ("blocks", "attachments", "metadata"):
            if args.get(key):
                message[key] = args[key]
        if args.get("thread_ts"):
            message["thread_ts"] = str(args["thread_ts"])
        return message

    # -- methods

    async def _auth_test(self, call: RecordedCall) -> dict[str, Any]:
        return {
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": "Fake Workspace",
            "user": "wanbot",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    async def _conversations_open(self, call: RecordedCall) -> dict[str, Any]:
        user = str(call.args.get("users") or "")
        if user not in self.world.users:
            raise SlackError("user_not_found")
        return {"channel": {"id": self._dm(user)}}

    async def _post_message(self, call: RecordedCall) -> dict[str, Any]:
        channel = self._channel(call, user_ok=True)
        self._member(channel)
        root = call.args.get("thread_ts")
        if root and (channel, str(root)) not in self.world.messages:
            raise SlackError("thread_not_found")
        message = self._bot_message(call, self.ids.ts(self.clock.now()))
        self.world.store_message(channel, message)
        return {"channel": channel, "ts": message["ts"], "message": dict(message)}

    async def _update(self, call: RecordedCall) -> dict[str, Any]:
        channel = self._channel(call)
        old = self._message(channel, call.args.get("ts"))
        if old.get("bot_id") != BOT_ID:
            raise SlackError("cant_update_message")
        new = self._bot_message(call, old["ts"])
        for key in ("thread_ts", "reply_count", "files"):
            if key in old and key not in new:
                new[key] = old[key]
        new["edited"] = {"user": BOT_USER_ID, "ts": self.ids.ts(self.clock.now())}
        old.clear()
        old.update(new)
        return {"channel": channel, "ts": new["ts"], "text": new["text"], "message": dict(new)}

    async def _post_ephemeral(self, call: RecordedCall) -> dict[str, Any]:
        channel = self._channel(call)
        self._member(channel)
        user = call.args.get("user")
        if user not in self.world.users:
            raise SlackError("user_not_found")
        if user not in self.world.channels[channel].members:
            raise SlackError("user_not_in_channel")
        message = self._bot_message(call, self.ids.ts(self.clock.now()))
        message["channel"] = channel
        message["to"] = user
        self.world.ephemerals.append(message)
        return {"message_ts": message["ts"]}

    async def _delete(self, call: RecordedCall) -> dict[str, Any]:
        channel = self._channel(call)
        message = self._message(channel, call.args.get("ts"))
        if message.get("bot_id") != BOT_ID:
            raise SlackError("cant_delete_message")
        del self.world.messages[(channel, message["ts"])]
        self.world.deleted.append({**message, "channel": channel})
        return {"channel": channel, "ts": message["ts"]}

    async def _conversations_info(self, call: RecordedCall) -> dict[str, Any]:
        channel = self._channel(call)
        return {"channel": self.world.channels[channel].wire(BOT_USER_ID)}

    async def _history(self, call: RecordedCall) -> dict[str, Any]:
        channel = self._channel(call)
        self._member(channel)
        top = [
            m for m in self.world.channel_messages(channel) if m.get("thread_ts") in (None, m["ts"])
        ]
        limit = int(call.args.get("limit") or 100)
        return {"messages": list(reversed(top))[:limit], "has_more": len(top) > limit}

    async def _replies(self, call: RecordedCall) -> dict[str, Any]:
        channel = self._channel(call)
        self._member(channel)
        root = str(call.args.get("ts") or "")
        if (channel, root) not in self.world.messages:
            raise SlackError("thread_not_found")
        return {"messages": self.world.thread(channel, root), "has_more": False}

    async def _users_info(self, call: RecordedCall) -> dict[str, Any]:
        user = self.world.users.get(str(call.args.get("user") or ""))
        if user is None:
            raise SlackError("user_not_found")
        return {"user": user.wire()}

    def issue_trigger(self, user: str) -> str:
        trigger = f"{int(self.clock.now())}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"
        self.world.triggers[trigger] = Trigger(user, self.clock.monotonic())
        return trigger

    async def _views_open(self, call: RecordedCall) -> dict[str, Any]:
        trigger = self.world.triggers.get(str(call.args.get("trigger_id") or ""))
        if trigger is None:
            raise SlackError("invalid_trigger_id")
        if trigger.used:
            raise SlackError("exchanged_trigger_id")
        if self.clock.monotonic() - trigger.issued_at > TRIGGER_SECONDS:
            raise SlackError("expired_trigger_id")
        trigger.used = True
        return {"view": self._store_view(call.args.get("view"), self.ids.make("V"), trigger.user)}

    async def _views_update(self, call: RecordedCall) -> dict[str, Any]:
        view_id = call.args.get("view_id")
        if view_id not in self.world.views:
            raise SlackError("not_found")
        old = self.world.views[view_id]
        if call.args.get("hash") and call.args["hash"] != old["hash"]:
            raise SlackError("hash_conflict")
        return {"view": self._store_view(call.args.get("view"), view_id, old["user"])}

    def _store_view(self, view: Any, view_id: str, user: str) -> dict[str, Any]:
        if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
            raise SlackError("invalid_arguments")
        title = (view.get("title") or {}).get("text", "")
        if view["type"] == "modal" and not 0 < len(title) <= 24:
            raise SlackError("invalid_arguments")
        if len(view.get("private_metadata") or "") > 3000:
            raise SlackError("invalid_arguments")
        stored = {
            **view,
            "id": view_id,
            "team_id": TEAM_ID,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
            "hash": self.ids.make("h"),
            "state": {"values": {}},
            "private_metadata": view.get("private_metadata") or "",
            "callback_id": view.get("callback_id") or "",
            "user": user,
        }
        self.world.views[view_id] = stored
        return {k: v for k, v in stored.items() if k != "user"}

    async def _files_info(self, call: RecordedCall) -> dict[str, Any]:
        file = self.world.files.get(str(call.args.get("file") or ""))
        if file is None or not file.uploaded:
            raise SlackError("file_not_found")
        return {"file": file.wire()}

    async def _get_upload_url(self, call: RecordedCall) -> dict[str, Any]:
        filename = call.args.get("filename")
        length = call.args.get("length")
        if not filename or length in (None, ""):
            raise SlackError("invalid_arguments")
        file = SlackFile(
            id=self.ids.make("F"),
            name=str(filename),
            title=str(filename),
            mimetype="",
            filetype="",
            data=b"",
            user=BOT_USER_ID,
            created=int(self.clock.now()),
            base_url=self.base_url,
            uploaded=False,
        )
        self.world.files[file.id] = file
        token = secrets.token_urlsafe(16)
        self.uploads[token] = file.id
        return {"upload_url": f"{self.base_url}/upload/v1/{token}", "file_id": file.id}

    async def _complete_upload(self, call: RecordedCall) -> dict[str, Any]:
        entries = call.args.get("files")
        if not isinstance(entries, list) or not entries:
            raise SlackError("invalid_arguments")
        files = []
        for entry in entries:
            file = self.world.files.get(str(entry.get("id")))
            if file is None or not file.uploaded:
                raise SlackError("file_not_found")
            if entry.get("title"):
                file.title = str(entry["title"])
            files.append(file)
        channel = call.args.get("channel_id") or call.args.get("channels")
        if channel:
            channel = self._channel(
                call, "channel_id" if call.args.get("channel_id") else "channels"
            )
            self._member(channel)
            root = call.args.get("thread_ts")
            if root and (channel, str(root)) not in self.world.messages:
                raise SlackError("thread_not_found")
            self._share(channel, files, call.args.get("initial_comment") or "", root)
        return {"files": [{"id": f.id, "title": f.title} for f in files]}

    def _share(self, channel: str, files: list[SlackFile], comment: str, root: Any) -> None:
        ts = self.ids.ts(self.clock.now())
        message: dict[str, Any] = {
            "type": "message",
            "subtype": "file_share",
            "text": comment,
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "ts": ts,
            "upload": True,
            "files": [f.wire() for f in files],
        }
        if root:
            message["thread_ts"] = str(root)
        self.world.store_message(channel, message)
        for file in files:
            file.public = not self.world.channels[channel].is_private
            share: dict[str, Any] = {"ts": ts, "channel_name": self.world.channels[channel].name}
            if root:
                share["thread_ts"] = str(root)
            file.shares.setdefault(channel, []).insert(0, share)

    async def _connections_open(self, call: RecordedCall) -> dict[str, Any]:
        return {"url": f"{self.socket_url}?ticket={secrets.token_hex(8)}&app_id={APP_ID}"}

"""The Slack app manifest (`wanbot slack manifest`): paste it at api.slack.com/apps ->
Create New App -> From a manifest.

Socket Mode: no request URLs anywhere [node-slack-sdk web-api manifest types]. Every
event subscribed here needs a listener in the adapter, or Bolt answers 404, sends no
ack and Slack delivers it again [slack.md §1]: `listeners()` is the list to check.
"""

from __future__ import annotations

import json
import re
from typing import Any

IMAGINE = "/imagine"
WANBOT = "/wanbot"
EDIT_SHORTCUT = "wan_edit"  # callback_id of the "Edit image" message shortcut

# Event -> the scope Slack requires to deliver it [docs.slack.dev/reference/events].
EVENT_SCOPES = {
    "app_mention": "app_mentions:read",
    "message.channels": "channels:history",
    "message.groups": "groups:history",
    "message.im": "im:history",
    "message.mpim": "mpim:history",
}

# Why each scope is asked for (docs/slack.md repeats this for admins).
BOT_SCOPES = {
    "commands": "the /imagine and /wanbot commands and the Edit image shortcut",
    "chat:write": "the status message in the thread, its updates, ephemeral replies",
    "files:read": "reading the images users share with the bot",
    "files:write": "posting the generated images into the thread",
    "users:read": "telling workspace admins and owners apart (users.info)",
    "im:write": "direct messages to admins: alerts, the /wanbot quota report chart",
    **{scope: f"receiving the {event} event" for event, scope in EVENT_SCOPES.items()},
}


def build_manifest(name: str = "wanbot") -> dict[str, Any]:
    return {
        "display_information": {
            "name": name,
            "description": "Images from Alibaba's Wan 2.5 model, with quotas.",
            "background_color": "#2c2d30",
        },
        "features": {
            "app_home": {
                "home_tab_enabled": False,
                "messages_tab_enabled": True,
                "messages_tab_read_only_enabled": False,
            },
            "bot_user": {"display_name": name, "always_online": True},
            "slash_commands": [
                {
                    "command": IMAGINE,
                    "description": "Generate an image (no text: open the form)",
                    "usage_hint": "[prompt] [--aspect 16:9] [-n 2]",
                    "should_escape": False,
                },
                {
                    "command": WANBOT,
                    "description": "Usage, jobs, quotas and settings",
                    "usage_hint": "usage | jobs | show | cancel | quota | config | help",
                    "should_escape": False,
                },
            ],
            "shortcuts": [
                {
                    "name": "Edit image",
                    "type": "message",
                    "callback_id": EDIT_SHORTCUT,
                    "description": "Edit this message's image with a prompt",
                }
            ],
        },
        "oauth_config": {"scopes": {"bot": list(BOT_SCOPES)}},
        "settings": {
            "event_subscriptions": {"bot_events": list(EVENT_SCOPES)},
            "interactivity": {"is_enabled": True},
            "org_deploy_enabled": False,
            "socket_mode_enabled": True,
            "token_rotation_enabled": False,
        },
    }


def listeners(manifest: dict[str, Any]) -> set[tuple[str, str]]:
    """What the adapter must register for this manifest: ("command", "/imagine"),
    ("shortcut", "wan_edit"), ("event", "app_mention"), ("event", "message"), ...
    (every `message.*` subscription arrives as the `message` event)."""
    features = manifest.get("features", {})
    found = {("command", c["command"]) for c in features.get("slash_commands", [])}
    found |= {("shortcut", s["callback_id"]) for s in features.get("shortcuts", [])}
    events = manifest.get("settings", {}).get("event_subscriptions", {}).get("bot_events", [])
    found |= {("event", event.split(".", 1)[0]) for event in events}
    return found


def manifest_yaml(name: str = "wanbot") -> str:
    return to_yaml(build_manifest(name))


# -- a small YAML emitter for the manifest's plain data (no YAML dependency at run time)

_PLAIN = re.compile(r"[A-Za-z/][A-Za-z0-9 _./:#'-]*")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    text = str(value)
    if (
        _PLAIN.fullmatch(text)
        and text.lower() not in _RESERVED
        and ": " not in text
        and " #" not in text
        and not text.endswith((" ", ":"))
    ):
        return text
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


def _lines(value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{_scalar(key)}:")
                lines += _lines(item, indent + 1)
            else:
                lines.append(f"{pad}{_scalar(key)}: {_empty(item) or _scalar(item)}")
        return lines
    if isinstance(value, list):
        lines = []
        for item in value:
            nested = _lines(item, indent + 1) if isinstance(item, dict | list) and item else None
            if nested:
                lines.append(f"{pad}- {nested[0].lstrip()}")
                lines += nested[1:]
            else:
                lines.append(f"{pad}- {_empty(item) or _scalar(item)}")
        return lines
    return [pad + _scalar(value)]


def _empty(value: Any) -> str:
    if isinstance(value, dict) and not value:
        return "{}"
    if isinstance(value, list) and not value:
        return "[]"
    return ""


def to_yaml(data: dict[str, Any]) -> str:
    return "\n".join(_lines(data, 0)) + "\n"

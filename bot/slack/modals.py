"""The modals: /imagine with no text (prompt, negative, aspect, count, 1-3 images),
the Edit image shortcut's prompt, and a result's Edit image N prompt.

A `view_submission` has no channel and no response_url, so where the job goes is
carried in `private_metadata` (JSON, at most 3000 chars) [slack.md §2].
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bot.core.models import Capabilities

IMAGINE_MODAL = "wan_imagine_modal"
EDIT_MODAL = "wan_edit_modal"  # the message shortcut's
EDIT_RESULT_MODAL = "wan_edit_result_modal"  # a result's Edit image N button
IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "bmp"]


def _text_input(
    block_id: str, label: str, *, optional: bool, limit: int, hint: str
) -> dict[str, Any]:
    return {
        "type": "input",
        "block_id": block_id,
        "optional": optional,
        "label": {"type": "plain_text", "text": label},
        "element": {
            "type": "plain_text_input",
            "action_id": "value",
            "multiline": block_id == "prompt",
            "max_length": limit,
            "placeholder": {"type": "plain_text", "text": hint},
        },
    }


def _select(block_id: str, label: str, options: Sequence[str], initial: str) -> dict[str, Any]:
    choices = [{"text": {"type": "plain_text", "text": o}, "value": o} for o in options]
    return {
        "type": "input",
        "block_id": block_id,
        "label": {"type": "plain_text", "text": label},
        "element": {
            "type": "static_select",
            "action_id": "value",
            "options": choices,
            "initial_option": next(c for c in choices if c["value"] == initial),
        },
    }


def _modal(
    callback_id: str, title: str, submit: str, metadata: dict[str, Any], body: list[Any]
) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": {"type": "plain_text", "text": title[:24]},
        "submit": {"type": "plain_text", "text": submit},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": json.dumps(metadata, separators=(",", ":")),
        "blocks": body,
    }


def imagine_modal(caps: Capabilities, channel_id: str) -> dict[str, Any]:
    ratios = list(dict.fromkeys([*caps.aspect_ratios_t2i, *caps.aspect_ratios_i2i]))
    body = [
        _text_input(
            "prompt",
            "Prompt",
            optional=False,
            limit=caps.max_prompt_chars,
            hint="A red fox in the snow",
        ),
        _text_input(
            "negative",
            "Negative prompt",
            optional=True,
            limit=caps.max_prompt_chars,
            hint="blurry, low quality",
        ),
        _select("aspect", "Aspect ratio", ratios, "1:1" if "1:1" in ratios else ratios[0]),
        _select("count", "Images", [str(n) for n in range(1, caps.max_count + 1)], "1"),
        {
            "type": "input",
            "block_id": "images",
            "optional": True,
            "label": {"type": "plain_text", "text": "Images to edit or combine"},
            "element": {
                "type": "file_input",
                "action_id": "files",
                "filetypes": IMAGE_TYPES,
                "max_files": max(1, caps.max_input_images),
            },
        },
    ]
    return _modal(IMAGINE_MODAL, "Imagine", "Generate", {"c": channel_id}, body)


def prompt_modal(
    callback_id: str, title: str, metadata: dict[str, Any], limit: int
) -> dict[str, Any]:
    body = [
        _text_input(
            "prompt", "What should change?", optional=False, limit=limit, hint="Make it snowy"
        )
    ]
    return _modal(callback_id, title, "Edit", metadata, body)


def metadata(view: dict[str, Any]) -> dict[str, Any]:
    try:
        data = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def value(view: dict[str, Any], block_id: str) -> str | None:
    """A text input's or a select's submitted value."""
    entry = (view.get("state") or {}).get("values", {}).get(block_id, {}).get("value") or {}
    if entry.get("type") == "static_select":
        selected = entry.get("selected_option") or {}
        return selected.get("value")
    text = entry.get("value")
    return text.strip() if isinstance(text, str) and text.strip() else None


def files(view: dict[str, Any]) -> list[dict[str, Any]]:
    entry = (view.get("state") or {}).get("values", {}).get("images", {}).get("files") or {}
    return list(entry.get("files") or [])

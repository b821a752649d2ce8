"""Drawing chat cards as Block Kit: a header, the text, fields, notes, and buttons whose
values carry the job id (so they work after a restart: nothing is kept in memory).

Limits [docs.slack.dev/reference/block-kit/blocks]: header text 150 chars, section text
3000, 10 fields of 2000 per section, context 10 elements, actions 25 elements, button
text 75, value 2000, 50 blocks per message.
"""

from __future__ import annotations

from typing import Any

from bot.chat.cards import Action, ActionKind, Card
from bot.chat.wording import clip

ACTION_PREFIX = "wan_"
EDIT_PREFIX = "wan_edit_"  # + the 1-based image number
RESULT_BLOCK = "wan_result_"  # + job id: the block that marks a job's result card
RETRY_BLOCK = "wan_failed_"  # + job id: a failure card's Try again
_LABELS = {
    ActionKind.REROLL: "🎲 Reroll",
    ActionKind.INFO: "ℹ️ Info",
    ActionKind.DELETE: "🗑️ Delete",
    ActionKind.RETRY: "🔁 Try again",
}
MAX_FIELDS = 10


def action_id(action: Action) -> str:
    if action.kind is ActionKind.EDIT:
        return f"{EDIT_PREFIX}{(action.index or 0) + 1}"
    return f"{ACTION_PREFIX}{action.kind.value}"


def parse_action(action_id: str, value: str) -> tuple[str, str, int | None]:
    """(kind, job id, image index) from a clicked button."""
    if action_id.startswith(EDIT_PREFIX):
        return ActionKind.EDIT.value, value, int(action_id.removeprefix(EDIT_PREFIX)) - 1
    return action_id.removeprefix(ACTION_PREFIX), value, None


def button(action: Action) -> dict[str, Any]:
    if action.kind is ActionKind.EDIT:
        label = f"✏️ Edit image {(action.index or 0) + 1}"
    else:
        label = _LABELS.get(action.kind, action.kind.value.title())
    element: dict[str, Any] = {
        "type": "button",
        "action_id": action_id(action),
        "text": {"type": "plain_text", "text": clip(label, 75), "emoji": True},
        "value": action.job_id,
    }
    if action.kind is ActionKind.DELETE:
        element["style"] = "danger"
    return element


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def blocks(card: Card, *, mention: str | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(card.title, 150)}}
    ]
    text = "\n".join(part for part in (mention, card.text) if part)
    if text:
        out.append({"type": "section", "text": _mrkdwn(clip(text, 3000))})
    fields = [_mrkdwn(clip(f"*{f.name}*\n{f.value or '—'}", 2000)) for f in card.fields]
    for start in range(0, len(fields), MAX_FIELDS):
        out.append({"type": "section", "fields": fields[start : start + MAX_FIELDS]})
    if card.image_urls:
        links = "\n".join(f"<{url}|Image {n}>" for n, url in enumerate(card.image_urls, 1))
        out.append({"type": "section", "text": _mrkdwn(clip(links, 3000))})
    if card.notes:
        out.append({"type": "context", "elements": [_mrkdwn(clip("\n".join(card.notes), 2000))]})
    if card.footer:
        out.append({"type": "context", "elements": [_mrkdwn(clip(card.footer, 2000))]})
    if card.actions:
        job_id = card.actions[0].job_id
        # Only a result card carries the result block id (what a restart looks for).
        results = any(a.kind is not ActionKind.RETRY for a in card.actions)
        out.append(
            {
                "type": "actions",
                "block_id": f"{RESULT_BLOCK if results else RETRY_BLOCK}{job_id}",
                "elements": [button(a) for a in card.actions[:25]],
            }
        )
    return out[:50]


def fallback_text(card: Card) -> str:
    """The notification and screen-reader text that goes with the blocks."""
    return clip(f"{card.title}: {card.text}" if card.text else card.title, 3000)

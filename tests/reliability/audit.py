"""Audits of the outcome of a session: what every user saw, and what they paid.

Money is read from SQLite (jobs, the append-only ledger, the daily totals); what was
delivered and said is read from the fake Discord's records. The two must agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.core.models import ErrorKind, Job, JobState
from storage.sqlite.db import Database
from tests.fakes.discord import FakeDiscord, FakeInteraction

# The phrases of each kind of cause, as users read them (bot/core/engine/failures.py,
# shown as they are by bot/discord/render.py failure_text). A failure must show phrases
# of exactly one kind: the true cause, never a second one.
KIND_PHRASES: dict[ErrorKind, tuple[str, ...]] = {
    ErrorKind.USER_INPUT: ("refused your prompt or image",),
    ErrorKind.PROVIDER_CONFIG: (
        "image service account has a problem",
        "could not accept the request the bot sent",
        "image service was changed",
    ),
    ErrorKind.PROVIDER_OUTAGE: (
        "failing or overloaded",
        "may have started",
        "lost this job's task",
        "cancelled this task on its side",
        "The image service finished but",
    ),
    ErrorKind.TIMEOUT: ("did not finish within",),
    ErrorKind.CANCELLED: ("Cancelled by",),
    ErrorKind.INTERNAL: ("went wrong inside the bot",),
}
FAILED_TITLES = ("❌ Failed", "🚫 Cancelled")
EPHEMERAL = 1 << 6


def kind_shown(text: str) -> ErrorKind:
    """The one cause `text` gives; fails if it gives none or several."""
    found = [kind for kind, phrases in KIND_PHRASES.items() if any(p in text for p in phrases)]
    assert len(found) == 1, f"expected exactly one cause in {text!r}, found {found}"
    return found[0]


def texts_of(payload: Mapping[str, Any] | None) -> list[str]:
    """The readable text of a message payload: content, embed titles, descriptions, fields."""
    if not payload:
        return []
    found = [str(payload["content"])] if payload.get("content") else []
    for embed in payload.get("embeds") or []:
        for key in ("title", "description"):
            if embed.get(key):
                found.append(str(embed[key]))
        for item in embed.get("fields") or []:
            found.append(f"{item.get('name', '')}: {item.get('value', '')}")
        footer = (embed.get("footer") or {}).get("text")
        if footer:
            found.append(str(footer))
    return found


# --- interactions -----------------------------------------------------------------------


def answers_by_token(fake: FakeDiscord) -> dict[str, list[tuple[str, bool]]]:
    """(text, private) shown through each interaction token: follow-ups and edits of the
    original response (the callbacks themselves are on the FakeInteraction)."""
    index: dict[str, list[tuple[str, bool]]] = {}
    for rec in fake.requests:
        if (
            not rec.ok
            or rec.method not in ("POST", "PATCH")
            or not rec.path.startswith("/webhooks/")
        ):
            continue
        token = rec.path.split("/")[3]
        payload = rec.json if isinstance(rec.json, dict) else {}
        private = bool(int(payload.get("flags", 0)) & EPHEMERAL)
        index.setdefault(token, []).extend((text, private) for text in texts_of(payload))
    return index


def interaction_answers(
    fake: FakeDiscord,
    interaction: FakeInteraction,
    index: Mapping[str, list[tuple[str, bool]]] | None = None,
) -> list[tuple[str, bool]]:
    """(text, private) for everything the user was shown in answer to `interaction`:
    the callback's message, follow-ups and edits of the original response."""
    shown: list[tuple[str, bool]] = []
    if interaction.callback is not None:
        data = interaction.callback.get("data") or {}
        private = bool(int(data.get("flags", 0)) & EPHEMERAL)
        shown += [(text, private) for text in texts_of(data)]
    index = index if index is not None else answers_by_token(fake)
    return shown + list(index.get(interaction.token, []))


def answer_text(fake: FakeDiscord, interaction: FakeInteraction) -> str:
    return "\n".join(text for text, _ in interaction_answers(fake, interaction))


def private_answer(
    fake: FakeDiscord,
    interaction: FakeInteraction,
    index: Mapping[str, list[tuple[str, bool]]] | None = None,
) -> str | None:
    """The text of the private (ephemeral) answer, if the interaction got one."""
    shown = interaction_answers(fake, interaction, index)
    private = [text for text, is_private in shown if is_private]
    return "\n".join(private) if private else None


# --- results and failures on Discord ------------------------------------------------------


def _result_name(job_id: str) -> re.Pattern[str]:
    return re.compile(rf"^wan_{re.escape(job_id)}_\d+\.\w+$")


def result_messages(fake: FakeDiscord, job_id: str) -> list[dict[str, Any]]:
    """Messages holding result attachments of `job_id`."""
    pattern = _result_name(job_id)
    return [
        message
        for message in fake.messages.values()
        if message["author"]["id"] == fake.bot.id
        and any(pattern.match(a["filename"]) for a in message["attachments"])
    ]


def delivered_images(fake: FakeDiscord, job_id: str) -> int:
    pattern = _result_name(job_id)
    return sum(
        1
        for message in result_messages(fake, job_id)
        for attachment in message["attachments"]
        if pattern.match(attachment["filename"])
    )


def result_posts(fake: FakeDiscord, job_id: str) -> int:
    """Successful uploads of `job_id`'s results (a nonce repeat answered with the existing
    message is counted by its message id once)."""
    pattern = _result_name(job_id)
    ids = {
        rec.response["id"]
        for rec in fake.requests
        if rec.method == "POST"
        and rec.ok
        and any(pattern.match(f.filename) for f in rec.files)
        and isinstance(rec.response, dict)
    }
    return len(ids)


def failure_shown(fake: FakeDiscord, job: Job) -> str | None:
    """What the user was told about a failed job: its status message turned into a
    failure card, or a message in the channel mentioning them."""
    status_id = str(job.delivery.get("status_message_id") or "")
    status = fake.messages.get(status_id)
    if status is not None:
        for embed in status["embeds"]:
            if embed.get("title") in FAILED_TITLES:
                return "\n".join(texts_of({"embeds": [embed]}))
    for message in fake.messages.values():
        if message.get("nonce") == f"wb{job.id}9":
            return "\n".join(texts_of(message))
    return None


# --- money ---------------------------------------------------------------------------------


async def ledger(db: Database) -> dict[str, dict[str, int]]:
    """{job id: {kind: images}} from the append-only ledger."""
    found: dict[str, dict[str, int]] = {}
    for row in await db.fetchall("SELECT job_id, kind, images FROM ledger"):
        entries = found.setdefault(row[0], {})
        assert row[1] not in entries, f"two {row[1]} entries for job {row[0]}"
        entries[row[1]] = int(row[2])
    for entries in found.values():
        if "charge" in entries:
            # Settled: a refund of nothing has no row since migration 0006.
            entries.setdefault("refund", 0)
    return found


@dataclass(frozen=True)
class Totals:
    jobs: int
    reserved: int
    charged: int
    refunded: int
    delivered_on_discord: int


async def check_money(db: Database, fake: FakeDiscord, jobs: Sequence[Job]) -> Totals:
    """Every final job settled exactly once, charged exactly what Discord shows as
    delivered (in one post), and the daily usage totals agree with the ledger."""
    entries = await ledger(db)
    assert set(entries) == {job.id for job in jobs}, "ledger rows without a job, or the reverse"
    posted_total = 0
    for job in jobs:
        rows = entries[job.id]
        assert rows.get("reserve") == job.reserved == job.request.count, (job.id, rows)
        posted = delivered_images(fake, job.id)
        posted_total += posted
        if not job.state.final:
            assert set(rows) == {"reserve"}, (job.id, job.state, rows)
            continue
        assert rows == {
            "reserve": job.reserved,
            "charge": job.delivered,
            "refund": job.reserved - job.delivered,
        }, (job.id, job.state, rows)
        if job.state is JobState.DONE:
            assert job.delivered >= 1
            assert posted == job.delivered, (job.id, posted, job.delivered)
            assert len(result_messages(fake, job.id)) == 1, f"job {job.id} posted twice"
            assert result_posts(fake, job.id) == 1, f"job {job.id} uploaded twice"
        else:
            assert job.delivered == 0 and posted == 0, (job.id, job.state, posted)
    charged = sum(rows.get("charge", 0) for rows in entries.values())
    refunded = sum(rows.get("refund", 0) for rows in entries.values())
    reserved = sum(rows["reserve"] for rows in entries.values())
    daily = await db.fetchone(
        "SELECT COALESCE(SUM(used), 0), COALESCE(SUM(charged), 0) FROM usage_daily"
    )
    assert daily is not None
    assert int(daily[1]) == charged
    assert int(daily[0]) == reserved - refunded
    return Totals(len(jobs), reserved, charged, refunded, posted_total)


def states(jobs: Iterable[Job]) -> dict[JobState, int]:
    counts: dict[JobState, int] = {}
    for job in jobs:
        counts[job.state] = counts.get(job.state, 0) + 1
    return counts

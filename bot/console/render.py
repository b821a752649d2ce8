"""Cards as terminal text, and the console's own additions: one-line progress, and
hints for the person at the keyboard, who also runs the bot."""

from __future__ import annotations

from collections.abc import Sequence

from bot.chat import wording
from bot.chat.cards import ActionKind, Card
from bot.core.errors import ProviderError
from bot.core.models import ErrorKind, FailureCategory, GenerationRequest, Job, JobState

_OPERATOR_HINT = {
    ErrorKind.PROVIDER_CONFIG: "You run this bot: `wanbot doctor` shows what to fix.",
    ErrorKind.INTERNAL: "The log above has the details.",
}


def card_text(card: Card) -> str:
    """Any card as plain lines: title, text, `name: value` fields, notes, images, footer."""
    lines = [card.title]
    if card.text:
        lines.append(card.text)
    for field in card.fields:
        if "\n" in field.value:  # a table (top users): one row a line, indented
            lines += [f"{field.name}:", *(f"  {row}" for row in field.value.splitlines())]
        else:
            lines.append(f"{field.name}: {field.value}")
    lines += [f"note: {note}" for note in card.notes]
    lines += [f"  {url}" for url in card.image_urls]
    if card.footer:
        lines.append(card.footer)
    return "\n".join(lines)


def progress_words(card: Card, shown_notes: Sequence[str] = ()) -> str:
    """`generating 40%, ~12 s left` / `queued (position 2)` from a status card; notes
    in `shown_notes` were printed already."""
    state = card.state or JobState.QUEUED
    text = wording.state_words(state)
    if card.progress is not None and state is JobState.RUNNING:
        text += f" {card.progress}%"
    if card.queue_position is not None and state is JobState.QUEUED:
        text += f" (position {card.queue_position})"
    if card.eta_seconds is not None and card.eta_seconds > 0:
        text += f", {wording.eta_text(card.eta_seconds)}"
    for note in card.notes:
        if note not in shown_notes:
            text += f" ({note.rstrip('.')})"
    return text


def progress_bar(card: Card, shown_notes: Sequence[str] = (), width: int = 24) -> str:
    """An ASCII bar (safe on any terminal encoding) followed by the words."""
    if card.state in (JobState.DONE, JobState.DELIVERING):
        fraction = 1.0
    elif card.progress is not None:
        fraction = max(0, min(100, card.progress)) / 100
    else:
        fraction = 0.0
    filled = round(fraction * width)
    return f"[{'#' * filled}{'-' * (width - filled)}] {progress_words(card, shown_notes)}"


def failure_text(card: Card, kind: ErrorKind | None, retry_line: str | None = None) -> str:
    """The failure card's words, a hint for the operator (by the failure's `kind`), and
    what to type to try again (`retry_line`, else "the same command") when offered."""
    text = card.text or card.title
    hint = _OPERATOR_HINT.get(kind) if kind else None
    if hint:
        text += f" {hint}"
    if any(action.kind is ActionKind.RETRY for action in card.actions):
        again = f"`{retry_line}`" if retry_line else "the same command"
        text += f"\nTo try again as a new job, enter {again}."
    return text


def retry_command(request: GenerationRequest) -> str | None:
    """The /imagine line that asks for `request` again; None when no line can say it
    exactly (input images were hosted for this job; a prompt with double quotes)."""
    texts = [request.prompt, request.negative_prompt or ""]
    if request.images or any('"' in text for text in texts):
        return None
    parts = ["/imagine", _quoted(request.prompt)]
    if request.negative_prompt:
        parts += ["--negative", _quoted(request.negative_prompt)]
    if request.aspect_ratio != "1:1":
        parts += ["--aspect", request.aspect_ratio]
    if request.count != 1:
        parts += ["-n", str(request.count)]
    return " ".join(parts)


def _quoted(text: str) -> str:
    # Quoted, option-like words in the prompt stay prompt words.
    return '"' + " ".join(text.split()) + '"'


def upload_failure_text(provider: str, exc: ProviderError) -> str:
    """An input image could not be put on the provider's file host: not the user's fault
    unless the provider says the file itself was refused."""
    detail = exc.message or exc.code
    if exc.category is FailureCategory.USER:
        return f"{provider} refused the input image: {detail}. {wording.NOTHING_CHARGED}"
    if exc.category in (FailureCategory.CONFIG, FailureCategory.REQUEST):
        # The bot's key, balance or request (docs/providers.md): waiting will not help.
        return (
            f"The input image could not be uploaded to {provider} ({detail}). This is a "
            "problem with the bot's provider account or request, not with your image. "
            f"{_OPERATOR_HINT[ErrorKind.PROVIDER_CONFIG]} {wording.NOTHING_CHARGED}"
        )
    return (
        f"The input image could not be uploaded to {provider} ({detail}); "
        f"please try again later. {wording.NOTHING_CHARGED}"
    )


def queued_text(job: Job, notes: Sequence[str]) -> str:
    """`[id] queued: 2 images, text-to-image`, and the request's notes."""
    images = wording.plural(job.request.count, "image")
    lines = [f"[{job.id}] queued: {images}, {job.request.mode.value}"]
    return "\n".join(lines + [f"[{job.id}] note: {note}" for note in notes])

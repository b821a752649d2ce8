"""Which task a provider's webhook is about. The body is never trusted beyond that:
the engine re-queries the task's status."""

from __future__ import annotations

from typing import Any

from bot.core.providers import apixo, evolink


def task_id_from_callback(provider: str, payload: Any) -> str | None:
    if provider == "apixo":
        return apixo.task_id_from_callback(payload)
    if provider == "evolink":
        return evolink.task_id_from_callback(payload)
    return None  # DashScope and the mock send no webhooks

"""`/healthz`: is the database reachable, are the front ends connected, is the
provider answering? 200 when all hold, else 503, with a JSON body naming each
check and what failed (an orchestrator restarts on 503; a person reads the body)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

# Transient failures in a row (no normal answer between) before the provider is
# "failing": one 502 or timeout is retried quietly and is no reason to restart.
TRANSIENT_LIMIT = 3
# A database that takes longer than this to answer `SELECT 1` is not healthy.
DB_TIMEOUT_SECONDS = 2.0


class ProviderHealth:
    """Follows the provider's answers (fed by the engine's metrics hooks)."""

    def __init__(self) -> None:
        self.transient_in_a_row = 0
        self.config_failure = False  # key, billing or access refused until an answer is ok

    def ok(self) -> None:
        self.transient_in_a_row = 0
        self.config_failure = False

    def failed(self, category: str) -> None:
        if category == "config":
            self.config_failure = True
        elif category == "transient":
            self.transient_in_a_row += 1

    def problem(self) -> str | None:
        if self.config_failure:
            return "the provider refuses the bot's key, billing or access"
        if self.transient_in_a_row >= TRANSIENT_LIMIT:
            return f"{self.transient_in_a_row} provider errors in a row (outage or rate limit)"
        return None


@dataclass
class HealthChecks:
    """The three checks; front ends add themselves with `watch_frontend`."""

    ping_database: Callable[[], Awaitable[object]]
    provider: ProviderHealth
    frontends: dict[str, Callable[[], bool]] = field(default_factory=dict)

    def watch_frontend(self, name: str, connected: Callable[[], bool]) -> None:
        self.frontends[name] = connected

    async def run(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, dict[str, Any]] = {
            "database": await self._database(),
            "frontends": self._frontends(),
            "provider": self._provider(),
        }
        failed = [name for name, check in checks.items() if not check["ok"]]
        return not failed, {"ok": not failed, "failed": failed, "checks": checks}

    async def _database(self) -> dict[str, Any]:
        try:
            await asyncio.wait_for(self.ping_database(), DB_TIMEOUT_SECONDS)
        except TimeoutError:
            return {"ok": False, "detail": f"no answer within {DB_TIMEOUT_SECONDS:.0f} s"}
        except Exception as exc:
            return {"ok": False, "detail": f"unreachable: {exc}"}
        return {"ok": True}

    def _frontends(self) -> dict[str, Any]:
        states = {}
        for name, connected in self.frontends.items():
            try:
                states[name] = bool(connected())
            except Exception:
                states[name] = False
        down = sorted(name for name, up in states.items() if not up)
        check: dict[str, Any] = {"ok": not down, "connected": states}
        if down:
            check["detail"] = "not connected: " + ", ".join(down)
        return check

    def _provider(self) -> dict[str, Any]:
        problem = self.provider.problem()
        return {"ok": True} if problem is None else {"ok": False, "detail": problem}

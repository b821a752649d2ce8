"""The repo's fake APIXO and EvoLink servers (tests/fakes/providers.py), made to run
their tasks by themselves on a shared clock (see bench/model.py for the timing).

Submits of acknowledgement probes are refused (HTTP 400). A status query answers
from the clock: pending, then running with progress (EvoLink reports it, APIXO does
not), then completed. The instant a task finished is known
exactly (submit + duration, on the clock), and so is the instant the first status
query saw it. A task submitted with a callback_url (APIXO's `request_type:
"callback"`) completes at that instant by itself and its status envelope is POSTed
there (the fakes' `send_callback`), retried up to 3 times, as the provider does.
Result images are tiny PNGs carrying their task id in a text chunk, so the fake
Discord can tell which task an upload belongs to.
"""

from __future__ import annotations

import asyncio
import io
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from PIL import Image, PngImagePlugin

from bench.common import ScaledClock
from bench.model import Timing, draw, parse_tag
from tests.fakes.providers import FakeApixo, FakeEvolink, FakeProviderServer, FakeTask

MARKER = b"wanbench"
CALLBACK_RETRIES = (1.0, 2.0, 4.0)  # provider-seconds before each retry of a failed webhook

log = logging.getLogger(__name__)


@dataclass
class TaskRecord:
    task_id: str
    kind: str
    serial: int
    timing: Timing
    submitted: float  # clock seconds
    seen_done: float | None = None  # clock seconds of the first status query that saw it
    seen_done_real: float | None = None  # time.monotonic() of the same
    status_calls: int = 0
    callback_at: float | None = None  # clock seconds the webhook was answered 200
    callback_status: int | None = None  # HTTP status of its last attempt (0: no answer)
    callback_attempts: int = 0

    @property
    def finished(self) -> float:
        return self.submitted + self.timing.duration


class SelfDriving:
    """Mixin for a FakeProviderServer subclass: tasks complete on the clock."""

    clock: ScaledClock
    records: dict[str, TaskRecord]
    rng: random.Random

    def setup_driving(self, clock: ScaledClock, seed: int) -> None:
        self.clock = clock
        self.records = {}
        self.rng = random.Random(seed)
        self.webhooks: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        for webhook in list(self.webhooks):
            webhook.cancel()
        await asyncio.gather(*self.webhooks, return_exceptions=True)
        closing: Any = super().close  # FakeProviderServer's, after this mixin in the MRO
        await closing()

    def prompt_of(self, body: Any) -> str:
        raise NotImplementedError

    async def _submit(self, request: web.Request) -> web.Response:
        tagged = parse_tag(self.prompt_of(await request.json()))
        if tagged is not None and tagged[0] == "probe":
            refuse: Any = self.error_response
            return refuse(400, None, "refused on purpose (an acknowledgement probe)")
        return await super()._submit(request)

    def _add_task(self, task: FakeTask) -> FakeTask:
        added = super()._add_task(task)
        kind, serial = parse_tag(self.prompt_of(task.body)) or ("normal", -1)
        record = TaskRecord(task.id, kind, serial, draw(self.rng, kind), self.clock.monotonic())
        self.records[task.id] = record
        if task.callback_url:
            webhook = asyncio.get_running_loop().create_task(self._webhook(task, record))
            self.webhooks.add(webhook)
            webhook.add_done_callback(self.webhooks.discard)
        return added

    async def _webhook(self, task: FakeTask, record: TaskRecord) -> None:
        """At the completion instant, finish the task and POST its status envelope to
        the callback_url; retry on an error or a non-200 answer."""
        await self.clock.sleep(record.finished - self.clock.monotonic())
        if task.state in ("pending", "running"):
            self.complete(task.id)
        for retry in (*CALLBACK_RETRIES, None):
            record.callback_attempts += 1
            try:
                post: Any = self.send_callback  # FakeProviderServer's
                record.callback_status = await post(task.id)
            except Exception as exc:  # the bot is not listening (yet): retry as APIXO does
                log.warning("webhook for %s failed: %r", task.id, exc)
                record.callback_status = 0
            if record.callback_status == 200:
                record.callback_at = self.clock.monotonic()
                return
            if retry is None:
                return
            await self.clock.sleep(retry)

    def _poll(self, task: FakeTask) -> None:
        task.status_calls += 1
        record = self.records.get(task.id)
        if record is None:
            return
        record.status_calls += 1
        now = self.clock.monotonic()
        progress = record.timing.progress(now - record.submitted)
        if progress is None:
            if record.seen_done is None:
                record.seen_done, record.seen_done_real = now, time.monotonic()
            if task.state in ("pending", "running"):
                self.complete(task.id)
        elif task.state in ("pending", "running") and now - record.submitted > record.timing.queued:
            task.state, task.progress = "running", progress

    def result_png(self, task_id: str, index: int) -> bytes:
        cache: dict[tuple[str, int], bytes] = self._pngs
        key = (task_id, index)
        if key not in cache:
            info = PngImagePlugin.PngInfo()
            info.add_text(MARKER.decode(), f"{task_id};")
            buffer = io.BytesIO()
            Image.new("RGB", (64, 48), (30, 120, 200)).save(buffer, "PNG", pnginfo=info)
            cache[key] = buffer.getvalue()
        return cache[key]


def task_of_upload(data: bytes) -> str | None:
    """The task id a result PNG carries (see `result_png`), None for other files."""
    start = data.find(MARKER + b"\x00")
    if start < 0:
        return None
    start += len(MARKER) + 1
    end = data.find(b";", start)
    return data[start:end].decode() if end > start else None


class DrivenApixo(SelfDriving, FakeApixo):
    """APIXO-like: no progress, no estimate; only pending / processing / success."""

    def prompt_of(self, body: Any) -> str:
        return str((body.get("input") or {}).get("prompt", ""))


class DrivenEvolink(SelfDriving, FakeEvolink):
    """EvoLink-like: progress 0-100 and an `estimated_time` of 30 s (as the fake sends)."""

    def prompt_of(self, body: Any) -> str:
        return str(body.get("prompt", ""))


def make_provider(name: str, clock: ScaledClock, seed: int = 1) -> FakeProviderServer:
    server: FakeProviderServer
    if name == "apixo":
        server = DrivenApixo()
    elif name == "evolink":
        server = DrivenEvolink(require_https_callback=False)
    else:
        raise ValueError(f"no self-driving fake for {name!r}")
    assert isinstance(server, SelfDriving)
    server.setup_driving(clock, seed)
    return server

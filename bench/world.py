"""The world outside the bot, in its own process: the fake Discord, a self-driving
fake provider and a small control API for the benchmark driving the bot.

    python -m bench.world --provider apixo --users 1000 --scale 1 --epoch E --wall W

prints one JSON line (the URLs) and serves until POST /stop or until its stdin
closes (the benchmark that started it has ended). Running it apart keeps
the fakes' CPU, memory and event-loop time out of the bot's figures, as real Discord
and a real provider would be; its own loop lag is reported so a busy fake shows.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import sys
import time
from typing import Any

from aiohttp import web

from bench.common import LoopLag, ScaledClock, percentile
from bench.model import KINDS, tag
from bench.paced import BigApixo, PacedDiscord, input_images
from bench.providers import SelfDriving, make_provider, task_of_upload
from tests.fakes.discord import FakeDiscord, FakeInteraction, RecordedRequest

PROMPT = "a lighthouse on a cliff at dusk, oil painting"
_IDS = re.compile(r"/\d{5,}")  # snowflakes
_TOKENS = re.compile(r"/[A-Za-z0-9_-]{40,}")  # interaction tokens


class World:
    def __init__(self, provider: str, users: int, clock: ScaledClock, big: bool = False) -> None:
        self.clock = clock
        # --big: real-sized images and transfers at a network's speed (bench/paced.py).
        self.discord = PacedDiscord() if big else FakeDiscord()
        self.provider = make_provider(provider, clock)
        self.inputs: list[bytes] = []
        if big:
            self.provider = BigApixo()
            self.provider.setup_driving(clock, 1)
            self.inputs = input_images()
        assert isinstance(self.provider, SelfDriving)
        self.driving: SelfDriving = self.provider
        self.users = [self.discord.add_user(f"user{i}") for i in range(users)]
        self.serials = itertools.count(1)
        self.interactions: list[tuple[str, FakeInteraction]] = []  # (label, interaction)
        self.posted: dict[str, float] = {}  # task id -> time.monotonic() of the upload
        self._scanned = 0
        self.dispatching: dict[str, int] = {}  # label -> interactions still to send
        self.lag = LoopLag(0.01)
        self.stop = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.control_url = ""

    async def start(self) -> dict[str, Any]:
        await self.discord.start()
        await self.provider.start()
        app = web.Application()
        app.router.add_post("/dispatch", self._dispatch)
        app.router.add_get("/state", self._state)
        app.router.add_get("/acks", self._acks)
        app.router.add_get("/tasks", self._tasks)
        app.router.add_get("/discord", self._discord_summary)
        app.router.add_post("/reset_lag", self._reset_lag)
        app.router.add_post("/stop", self._stop)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.control_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self.lag.start()
        return {
            "control": self.control_url,
            "discord_api": self.discord.api_base,
            "gateway": self.discord.gateway_url,
            "provider_base": self.provider.base_url,
        }

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await self.lag.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.provider.close()
        await self.discord.close()

    # --- control API ---------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.Response:
        """Start sending `n` /imagine interactions at `rate` per second (in the
        background); each asks for one image of a task of `kind`."""
        body = await request.json()
        kind = str(body.get("kind", "normal"))
        if kind not in KINDS:
            return web.json_response({"error": f"unknown kind {kind}"}, status=400)
        n, rate = int(body["n"]), float(body.get("rate", 100.0))
        label = str(body.get("label", kind))
        # Optional: images per job, real-sized results and an input image (--big only).
        extra = {k: body[k] for k in ("count", "big", "inputs", "short") if k in body}
        task = asyncio.get_running_loop().create_task(self._send(n, rate, kind, label, extra))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return web.json_response({"ok": True})

    async def _send(
        self, n: int, rate: float, kind: str, label: str, extra: dict[str, Any] | None = None
    ) -> None:
        extra = extra or {}
        if not self.discord.connected:
            await self.discord.wait_connected(timeout=30.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.dispatching[label] = self.dispatching.get(label, 0) + n
        sent = 0
        try:
            for i in range(n):
                delay = start + i / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                serial = next(self.serials)
                user = self.users[serial % len(self.users)]
                options: dict[str, Any] = {"prompt": f"{PROMPT} {tag(kind, serial)}"}
                if extra.get("count"):
                    options["count"] = int(extra["count"])
                if extra.get("big") and isinstance(self.provider, BigApixo):
                    self.provider.big_serials.add(serial)
                if extra.get("short") and isinstance(self.provider, BigApixo):
                    self.provider.short_serials.add(serial)
                if extra.get("inputs") and self.inputs:
                    data = self.inputs[serial % len(self.inputs)]
                    options["image1"] = self.discord.upload(data, f"input{serial}.png")
                interaction = await self.discord.slash("imagine", user, options)
                self.interactions.append((label, interaction))
                self.dispatching[label] -= 1
                sent += 1
        finally:
            self.dispatching[label] -= n - sent

    async def _state(self, request: web.Request) -> web.Response:
        self._scan_uploads()
        labels: dict[str, list[int]] = {}
        for label, interaction in self.interactions:
            counts = labels.setdefault(label, [0, 0])
            counts[0] += 1
            counts[1] += interaction.callback_real is not None
        return web.json_response(
            {
                "labels": labels,  # label -> [sent, answered]
                "dispatched": len(self.interactions),
                "dispatching": self.dispatching,
                "acked": sum(1 for _, i in self.interactions if i.callback_real is not None),
                "tasks": len(self.driving.records),
                "posted": len(self.posted),
                "loop_lag_p99_ms": 1000 * (percentile(self.lag.samples, 99) or 0.0),
                "loop_lag_max_ms": 1000 * max(self.lag.samples, default=0.0),
                "discord_errors": [repr(e) for e in self.discord.errors[:5]],
                "uploaded_bytes": getattr(self.discord, "uploaded_bytes", 0),
            }
        )

    async def _acks(self, request: web.Request) -> web.Response:
        """[label, dispatched (time.monotonic), seconds to the first response or null,
        callback type] for every interaction sent (with `?label=`: with that label)."""
        wanted = request.query.get("label")
        rows = [
            [label, i.dispatched_real, i.ack_real_seconds, i.callback_type]
            for label, i in self.interactions
            if wanted is None or label == wanted
        ]
        return web.json_response(rows)

    def _scan_uploads(self) -> None:
        requests: list[RecordedRequest] = self.discord.requests
        while self._scanned < len(requests):
            rec = requests[self._scanned]
            if rec.status == 0:
                break  # still being answered: look again next time
            self._scanned += 1
            if not rec.ok:
                continue
            for file in rec.files:
                task_id = task_of_upload(file.data)
                if task_id is not None and task_id not in self.posted:
                    self.posted[task_id] = rec.real_at

    async def _tasks(self, request: web.Request) -> web.Response:
        """Every provider task: timing on the shared clock, status calls, the webhook
        (when one was asked for), upload time."""
        self._scan_uploads()
        rows = []
        for record in self.driving.records.values():
            posted = self.posted.get(record.task_id)
            rows.append(
                {
                    "task": record.task_id,
                    "kind": record.kind,
                    "serial": record.serial,
                    "submitted": record.submitted,
                    "finished": record.finished,
                    "seen_done": record.seen_done,
                    "seen_done_real": record.seen_done_real,
                    "status_calls": record.status_calls,
                    "callback_at": record.callback_at,
                    "callback_status": record.callback_status,
                    "callback_attempts": record.callback_attempts,
                    "posted_real": posted,
                    "posted": None if posted is None else self.clock.at_real(posted),
                }
            )
        return web.json_response(rows)

    async def _discord_summary(self, request: web.Request) -> web.Response:
        """REST calls the bot made, by method and route."""
        counts: dict[str, int] = {}
        for rec in self.discord.requests:
            path = _TOKENS.sub("/{token}", _IDS.sub("/{id}", rec.path))
            key = f"{rec.method} {path}"
            counts[key] = counts.get(key, 0) + 1
        return web.json_response(counts)

    async def _reset_lag(self, request: web.Request) -> web.Response:
        self.lag.reset()
        return web.json_response({"ok": True})

    async def _stop(self, request: web.Request) -> web.Response:
        self.stop.set()
        return web.json_response({"ok": True})


async def main(args: argparse.Namespace) -> None:
    clock = ScaledClock(args.scale, args.epoch, args.wall)
    world = World(args.provider, args.users, clock, big=args.big)
    info = await world.start()
    print(json.dumps(info), flush=True)
    loop = asyncio.get_running_loop()
    # Stop as well when the parent goes away (its end of our stdin closes).
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    try:
        await asyncio.wait(
            {asyncio.ensure_future(world.stop.wait()), stdin_closed},
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        await world.close()
    # The stdin reader thread may still be blocked: do not wait for it.
    sys.stdout.flush()
    os._exit(0)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.world")
    parser.add_argument("--provider", choices=("apixo", "evolink"), default="apixo")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--epoch", type=float, default=time.monotonic())
    parser.add_argument("--wall", type=float, default=time.time())
    parser.add_argument("--big", action="store_true", help="real-sized images, paced transfers")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))

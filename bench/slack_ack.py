"""Slack command acknowledgement latency with 0 and 1,000 jobs in flight: from the fake
Slack writing a slash-command envelope to the Socket Mode websocket to the bot's ack
read back. Real time; the bot is built as `wanbot run` builds it for Slack (Runtime,
SQLite, SlackBot with the real Bolt and slack_sdk), with the mock provider holding
every job for minutes so the level stays put.

Unlike `ack` (Discord), the fake Slack runs in the bot's process and event loop, so
its own work counts in the figure (a conservative measure)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from bench.common import Figure, LoopLag, Section, fmt, md_table, percentile, target_below
from bot.fronts import SlackFrontEnd
from bot.runtime import Runtime
from bot.settings import Settings
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack

LEVELS = (0, 1000)
PROBES = 300
PROBE_RATE = 15.0  # per second
FILL_RATE = 200.0  # /imagine commands per second while filling up to a level
USERS = 100
TARGET_MS = 100.0


def _settings(fake: FakeSlack, db: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_path=db,
        wan_provider="mock",
        mock_latency_seconds=3600.0,
        slack_bot_token=BOT_TOKEN,
        slack_app_token=APP_TOKEN,
        slack_api_base_url=fake.api_base,
        provider_concurrency=2000,
        max_running_jobs_per_user=50,
        max_queued_jobs_per_user=50,
        default_user_limit=100_000,
    )


async def _probe(fake: FakeSlack, users: list, channel: object, count: int) -> list[float]:
    acks: list[float] = []
    for n in range(count):
        user = users[n % len(users)]
        envelope = await fake.slash_command(user, channel, "/wanbot", "usage")  # type: ignore[arg-type]
        acks.append((await fake.acked(envelope, timeout=30)).latency)
        await asyncio.sleep(1 / PROBE_RATE)
    return acks


async def measure() -> list[tuple[int, list[float], float]]:
    """(level, ack latencies in seconds, loop lag p99 in seconds) per level."""
    out = []
    async with FakeSlack() as fake:
        users = [fake.add_user(f"user{n}") for n in range(USERS)]
        channel = fake.add_channel("bench")
        with tempfile.TemporaryDirectory(prefix="wanbot-bench-") as tmp:
            rt = Runtime(_settings(fake, Path(tmp) / "bot.sqlite3"))
            slack = SlackFrontEnd(rt.settings, rt)
            await rt.start()
            await slack.start()
            await fake.wait_connected()
            lag = LoopLag(0.01)
            lag.start()
            try:
                for level in LEVELS:
                    sent = 0
                    while rt.engine.active_count < 0.97 * level:
                        if sent < level:
                            user = users[sent % len(users)]
                            await fake.slash_command(user, channel, "/imagine", f"fill {sent}")  # type: ignore[arg-type]
                            sent += 1
                        await asyncio.sleep(1 / FILL_RATE)
                    lag.reset()
                    acks = await _probe(fake, users, channel, PROBES)
                    out.append((level, acks, percentile(lag.samples, 99) or 0.0))
            finally:
                await lag.stop()
                await rt.engine.close()
                await slack.close()
                await rt.close()
    return out


def run() -> Section:
    levels = asyncio.run(measure())
    figures: list[Figure] = []
    rows = []
    for level, acks, lag in levels:
        ms = [a * 1000 for a in acks]
        p50, p99 = percentile(ms, 50), percentile(ms, 99)
        target, ok = target_below(p99, TARGET_MS, "ms") if level == max(LEVELS) else (None, None)
        figures.append(Figure(f"Slack ack p50, {level:,} jobs in flight", p50, "ms"))
        figures.append(Figure(f"Slack ack p99, {level:,} jobs in flight", p99, "ms", target, ok))
        rows.append(
            [
                f"{level:,}",
                fmt(p50, 1, "ms"),
                fmt(percentile(ms, 95), 1, "ms"),
                f"**{fmt(p99, 1, 'ms')}**",
                fmt(max(ms, default=None), 1, "ms"),
                fmt(lag * 1000, 1, "ms"),
            ]
        )
    table = md_table(
        ["jobs in flight", "ack p50", "ack p95", "ack p99", "ack max", "loop lag p99"], rows
    )
    body = f"""{table}

Method: {PROBES} `/wanbot usage` commands at {PROBE_RATE:g}/s from {USERS} users, after
`/imagine` commands (at up to {FILL_RATE:g}/s) have put the level's jobs in flight on
the mock provider (each held for an hour). The latency is the fake Slack's: from just
before it writes the envelope to the Socket Mode websocket to the moment it reads the
bot's ack. The fake runs in the bot's process and loop (bench/slack_ack.py), so its
own work is in the figure; compare with the Discord `ack` section, whose fake runs in
another process."""
    return Section("slack_ack", "Slack command acknowledgement under load", figures, body)


if __name__ == "__main__":
    for level, acks, lag in asyncio.run(measure()):
        ms = [a * 1000 for a in acks]
        print(
            f"{level:5d} jobs in flight: ack p50 {percentile(ms, 50):.1f} ms, "
            f"p99 {percentile(ms, 99):.1f} ms, max {max(ms):.1f} ms, loop lag p99 "
            f"{lag * 1000:.1f} ms"
        )

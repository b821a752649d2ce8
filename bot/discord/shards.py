"""Discord sharding across processes: SHARD_COUNT / SHARD_IDS pick the shards this
process runs (discord.py's AutoShardedBot), and every IDENTIFY waits for its turn
at the `IdentifyGate` shared by all the bot's processes.

Discord allows `max_concurrency` IDENTIFYs per 5 s, one per bucket
(shard_id % max_concurrency; /gateway/bot says how many). discord.py 2.7 paces the
shards of one process only (its default hook sleeps 5 s before each but the first)
and never reads max_concurrency when given a shard count: the gate does both for
every process together. Deliveries need no shard: they go over REST (surface.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
from discord.ext import commands

from bot.core.ports import IdentifyGate
from bot.discord.bot import WanBot
from bot.discord.context import DiscordRuntime

log = logging.getLogger(__name__)

IDENTIFY_SPACING = 5.0  # seconds between IDENTIFYs of one bucket (Discord's gateway docs)


class ShardedWanBot(WanBot, commands.AutoShardedBot):
    def __init__(
        self,
        rt: DiscordRuntime,
        *,
        shard_count: int,
        shard_ids: list[int] | None,
        gate: IdentifyGate,
        identify_spacing: float = IDENTIFY_SPACING,
        **options: Any,
    ) -> None:
        super().__init__(rt, shard_count=shard_count, shard_ids=shard_ids, **options)
        self._gate = gate
        self._identify_spacing = identify_spacing
        self._max_concurrency: int | None = None
        self._limits_lock = asyncio.Lock()

    async def max_concurrency(self) -> int:
        """From /gateway/bot, asked once; 1 (the strictest) while it cannot be read."""
        async with self._limits_lock:
            if self._max_concurrency is None:
                try:
                    limits = await self.fetch_session_start_limits()
                except Exception as exc:  # asked again at the next IDENTIFY
                    log.warning("could not read Discord's max_concurrency (%s); using 1", exc)
                    return 1
                self._max_concurrency = max(1, int(limits.max_concurrency))
            return self._max_concurrency

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # Replaces discord.py's 5 s sleep: the gate's slot is the wait, initial or not
        # (another process may have just identified in this bucket).
        bucket = (shard_id or 0) % await self.max_concurrency()
        try:
            await self._gate.wait_turn(bucket, self._identify_spacing)
        except Exception as exc:
            # discord.py ends the whole client when this hook raises during a re-IDENTIFY:
            # a database hiccup must not. Wait one spacing here instead; at worst Discord
            # answers a clash with INVALID_SESSION and discord.py identifies again.
            log.warning(
                "shard %s: IDENTIFY pacing through the database failed (%s); waiting %.0f s",
                shard_id,
                exc,
                self._identify_spacing,
            )
            await self.rt.clock.sleep(self._identify_spacing)
        log.debug("shard %s: IDENTIFY (bucket %d)", shard_id, bucket)


def build_bot(
    rt: DiscordRuntime,
    *,
    shard_count: int | None,
    shard_ids: list[int] | None,
    gate: IdentifyGate | None,
    **options: Any,
) -> WanBot:
    """The bot for these settings: one gateway connection without SHARD_COUNT (as
    before), else the shards SHARD_IDS names (all when unset), paced by `gate`."""
    if shard_count is None:
        return WanBot(rt, **options)
    if gate is None:
        raise ValueError("a sharded bot needs an IdentifyGate")
    return ShardedWanBot(rt, shard_count=shard_count, shard_ids=shard_ids, gate=gate, **options)


def is_sharded(bot: discord.Client) -> bool:
    return isinstance(bot, discord.AutoShardedClient)


def all_shards_connected(bot: discord.AutoShardedClient) -> bool:
    shards = bot.shards
    return bool(shards) and not any(shard.is_closed() for shard in shards.values())

"""Retention, the same for every backend: finished jobs older than JOB_RETENTION_DAYS
are deleted in short batches (each its own transaction, so a running bot's writes
never wait long behind a prune); the ledger stays. Each backend supplies the DELETE."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

DAY = 86400.0
BATCH = 500

# (cutoff, batch size) -> how many jobs that one batch deleted.
DeleteBatch = Callable[[float, int], Awaitable[int]]


async def prune_in_batches(delete_batch: DeleteBatch, *, now: float, retention_days: int) -> int:
    """Delete the finished jobs older than `retention_days`; returns how many.
    `retention_days` 0 keeps everything."""
    if retention_days <= 0:
        return 0
    cutoff = now - retention_days * DAY
    total = 0
    while True:
        deleted = await delete_batch(cutoff, BATCH)
        total += deleted
        if deleted < BATCH:
            break
    if total:
        log.info("pruned %d finished job(s) older than %d days", total, retention_days)
    return total

"""The daily maintenance job: purge tombstones past the horizon and expired history.

It reschedules itself for the next day, deduplicated, so any number of workers keep
exactly one queued.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from service.config import Settings
from service.store import jobs as job_store
from service.store import sync as sync_store
from service.worker.runner import Job

__all__ = ["KIND", "ensure_scheduled", "make_handler"]

KIND = "maintenance"
_DEDUPE = "daily"
log = logging.getLogger("kith.worker")


async def ensure_scheduled(pool: asyncpg.Pool[Any], delay_s: float = 0.0) -> None:
    await job_store.enqueue(pool, KIND, dedupe_key=_DEDUPE, delay_s=delay_s)


def make_handler(pool: asyncpg.Pool[Any], settings: Settings) -> Callable[[Job], Awaitable[None]]:
    async def run(_: Job) -> None:
        now = dt.datetime.now(dt.UTC)
        async with pool.acquire() as conn:
            purged = await sync_store.purge_tombstones(
                conn, now - dt.timedelta(days=settings.tombstone_horizon_days)
            )
            conflicts, batches = await sync_store.purge_expired(
                conn,
                conflicts_before=now - dt.timedelta(days=settings.conflict_retention_days),
                batches_before=now - dt.timedelta(days=settings.batch_retention_days),
            )
        log.info(
            "maintenance: %d tombstones, %d conflicts, %d batches purged",
            purged,
            conflicts,
            batches,
        )
        await ensure_scheduled(pool, delay_s=24 * 3600)

    return run

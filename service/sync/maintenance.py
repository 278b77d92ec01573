"""The daily maintenance job: purge tombstones past the horizon, expired history, web
sessions and invitations, and dead jobs older than a month.

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
from service.jobs import Job, Kind
from service.store import care as care_store
from service.store import jobs as job_store
from service.store import sync as sync_store
from service.store import web as web_store

__all__ = ["ensure_scheduled", "make_handler"]

_DEDUPE = "daily"
DEAD_JOB_DAYS = 30
log = logging.getLogger("kith.worker")


async def ensure_scheduled(pool: asyncpg.Pool[Any], delay_s: float = 0.0) -> None:
    await job_store.enqueue(pool, Kind.MAINTENANCE, dedupe_key=_DEDUPE, delay_s=delay_s)


def make_handler(pool: asyncpg.Pool[Any], settings: Settings) -> Callable[[Job], Awaitable[None]]:
    async def run(_: Job) -> None:
        now = dt.datetime.now(dt.UTC)
        async with pool.acquire() as conn:
            purged = await sync_store.purge_tombstones(
                conn, now - dt.timedelta(days=settings.sync.tombstone_horizon_days)
            )
            conflicts, batches = await sync_store.purge_expired(
                conn,
                conflicts_before=now - dt.timedelta(days=settings.sync.conflict_retention_days),
                batches_before=now - dt.timedelta(days=settings.sync.batch_retention_days),
            )
            sessions = await web_store.purge_sessions(conn, now)
            invitations = await care_store.purge_invitations(conn, now - dt.timedelta(days=7))
            dead = await job_store.purge_dead(conn, now - dt.timedelta(days=DEAD_JOB_DAYS))
        log.info(
            "maintenance: %d tombstones, %d conflicts, %d batches, %d web sessions, "
            "%d invitations, %d dead jobs purged",
            purged,
            conflicts,
            batches,
            sessions,
            invitations,
            dead,
        )
        await ensure_scheduled(pool, delay_s=24 * 3600)

    return run

"""``kith worker``: the separate background process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from service.care.escalation import Escalation
from service.care.jobs import CarePushJobs
from service.care.service import CareService
from service.config import Settings, SettingsError
from service.infra import heap
from service.infra.metrics import Metrics, flushing
from service.insights import jobs as evaluation
from service.insights.service import InsightEvaluator
from service.jobs import Handler, Kind
from service.nudges.jobs import NudgeJobs
from service.push.factory import build_providers
from service.store.db import create_pool
from service.sync import maintenance
from service.sync.realtime import ChangeNotifier
from service.sync.service import SyncService
from service.worker.runner import Worker, WorkerConfig
from service.worker.wakeup import listen
from sync.hlc import Clock

__all__ = ["run_worker"]

log = logging.getLogger("kith.worker")


RECURRING_CHECK_S = 600.0


async def ensure_recurring(pool: asyncpg.Pool[Any], kinds: set[str]) -> None:
    """Queue the recurring jobs this worker runs unless one is queued already (deduplicated):
    a recurring job that died or was deleted comes back within one check, without a
    restart."""
    if Kind.MAINTENANCE in kinds:
        await maintenance.ensure_scheduled(pool)
    if Kind.SWEEP in kinds:
        await evaluation.ensure_sweep_scheduled(pool)


async def keep_recurring(pool: asyncpg.Pool[Any], kinds: set[str], stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await ensure_recurring(pool, kinds)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("recurring jobs not checked: %s", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RECURRING_CHECK_S)


async def run_worker(settings: Settings, config: WorkerConfig | None = None) -> None:
    """Run until SIGTERM/SIGINT, then drain in-flight jobs and return (exit code 0)."""
    assert settings.database_url
    pool = await create_pool(settings.database_url, min_size=1, max_size=settings.db_pool_max)
    redis_client = aioredis.Redis.from_url(
        settings.redis_url or "redis://127.0.0.1:6379/0", socket_timeout=2, socket_connect_timeout=2
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    notifier = ChangeNotifier(redis_client)
    evaluator = InsightEvaluator(
        pool,
        Clock(f"wrk-{secrets.token_hex(4)}"),
        publish=notifier.publish,
        announce=notifier.announce,
    )
    handlers: dict[str, Handler] = {
        Kind.MAINTENANCE: maintenance.make_handler(pool, settings),
        **evaluation.make_handlers(
            pool, evaluator, morning_hour=settings.sweep_morning_hour, chunk=settings.sweep_chunk
        ),
    }
    providers = build_providers(settings, pool)
    metrics = Metrics()  # flushed to Redis every second, like the API's (service/infra/metrics.py)
    handlers |= NudgeJobs(pool, providers, metrics=metrics).handlers()
    sync = SyncService(
        pool,
        Clock(f"wrk-{secrets.token_hex(4)}"),
        max_skew_ms=settings.max_clock_skew_ms,
        publish=notifier.publish,
        announce=notifier.announce,
    )
    handlers |= Escalation(pool, CareService(pool, sync)).handlers()
    handlers |= CarePushJobs(pool, providers).handlers()
    if not providers:
        log.warning("no push provider configured: nudges are planned but not pushed")
    config = config or WorkerConfig(
        concurrency=settings.worker_concurrency, lease_s=float(settings.worker_lease_s)
    )
    if settings.worker_kinds:
        # A dedicated pool (say, delivery only): take just these kinds; the rest, and the
        # recurring jobs, are left to the workers that run everything.
        unknown = set(settings.worker_kinds) - handlers.keys()
        if unknown:
            raise SettingsError(f"KITH_WORKER_KINDS names unknown job kinds: {sorted(unknown)}")
        handlers = {k: h for k, h in handlers.items() if k in settings.worker_kinds}
    worker = Worker(pool, handlers, config, metrics=metrics)
    heap.settle()  # start-up objects frozen, fewer collections (service/infra/heap.py)
    keeper = asyncio.create_task(keep_recurring(pool, set(handlers), stop))
    listener = (
        asyncio.create_task(listen(settings.redis_url, worker.wake, stop))
        if settings.redis_url
        else None
    )
    try:
        async with flushing(metrics, redis_client):
            await worker.run(stop)
    finally:
        stop.set()
        await keeper
        if listener is not None:
            await listener
        await notifier.close()
        await redis_client.aclose()
        for provider in providers.values():
            await provider.aclose()
        await pool.close()

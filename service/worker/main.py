"""``kith worker``: the separate background process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

import asyncpg

from service.care.escalation import Escalation
from service.care.jobs import CarePushJobs
from service.care.ladder import Ladder
from service.config import Settings, SettingsError
from service.infra import heap
from service.infra.metrics import Metrics, flushing
from service.infra.wakeup import listen
from service.insights import jobs as evaluation
from service.insights.service import InsightEvaluator
from service.jobs import Handler, Kind
from service.lifecycle.erasure import Erasure
from service.nudges.jobs import NudgeJobs
from service.push.factory import build_providers
from service.sync import maintenance
from service.wiring import Core, core
from service.worker.runner import Worker, WorkerConfig

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
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with core(settings, "worker") as c:
        metrics = Metrics()  # flushed to Redis every second, like the API's
        handlers = _handlers(c, metrics)
        config = config or WorkerConfig(
            concurrency=settings.worker.concurrency, lease_s=float(settings.worker.lease_s)
        )
        worker = Worker(c.pool, handlers, config, metrics=metrics)
        heap.settle()  # start-up objects frozen, fewer collections (service/infra/heap.py)
        keeper = asyncio.create_task(keep_recurring(c.pool, set(handlers), stop))
        listener = (
            asyncio.create_task(listen(settings.redis_url, worker.wake, stop))
            if settings.redis_url
            else None
        )
        try:
            async with flushing(metrics, c.redis):
                await worker.run(stop)
        finally:
            stop.set()
            await keeper
            if listener is not None:
                await listener


def _handlers(c: Core, metrics: Metrics) -> dict[str, Handler]:
    """Every job kind's handler (``service.jobs.Kind`` lists them), or, with
    ``KITH_WORKER_KINDS``, just those kinds: a dedicated pool (say, delivery only) takes
    them, and the rest, and the recurring jobs, are left to the workers that run everything."""
    settings, pool = c.settings, c.pool
    evaluator = InsightEvaluator(
        pool, c.clock, publish=c.notifier.publish, announce=c.notifier.announce
    )
    sync = c.sync_service()
    care = c.care_service(sync)
    alerts = c.alert_service(sync, care)
    providers = build_providers(settings, pool)
    if not providers:
        log.warning("no push provider configured: nudges are planned but not pushed")
    handlers: dict[str, Handler] = {
        Kind.MAINTENANCE: maintenance.make_handler(pool, settings),
        **evaluation.make_handlers(
            pool,
            evaluator,
            morning_hour=settings.worker.sweep_morning_hour,
            chunk=settings.worker.sweep_chunk,
        ),
        **NudgeJobs(pool, providers, metrics=metrics).handlers(),
        **Escalation(pool, care, settings=settings.care, alerts=alerts).handlers(),
        **Ladder(pool, alerts, settings.care).handlers(),
        **alerts.handlers(),
        **CarePushJobs(pool, providers).handlers(),
        Kind.ACCOUNT_ERASE: Erasure(
            pool, c.sync_service(), on_revoke=c.notifier.session_revoked
        ).run,
    }
    assert handlers.keys() == set(Kind), "every job kind has its handler"
    kinds = settings.worker.kinds
    if kinds:
        unknown = set(kinds) - handlers.keys()
        if unknown:
            raise SettingsError(f"KITH_WORKER_KINDS names unknown job kinds: {sorted(unknown)}")
        handlers = {k: h for k, h in handlers.items() if k in kinds}
    return handlers

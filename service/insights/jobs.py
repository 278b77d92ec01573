"""Jobs that run the rules engine.

* ``evaluate`` — one person, shortly after their data changed. A push enqueues it with the
  space as debounce key and a delay, so many pushes in a minute make one evaluation.
* ``sweep`` — every few minutes: claims the people whose local morning has come and who
  were not swept today, and queues them in ``evaluate_batch`` chunks, so the daily sweep
  spreads over time zones and runs in parallel across workers.
* ``evaluate_batch`` — a chunk of people, histories read with set-based queries. A person
  whose evaluation fails does not fail the chunk: the others are written, and the failed
  person gets an ``evaluate`` job of their own, which retries and, if it can never
  succeed, dead-letters with its reason for ``kith report`` — without holding anyone back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec

from service.infra.clock import WallClock, utcnow
from service.insights.service import InsightEvaluator
from service.jobs import Job, Kind
from service.store import care as care_store
from service.store import insights as insight_store
from service.store import jobs as job_store
from service.store import nudges as nudge_store

__all__ = ["ensure_sweep_scheduled", "make_handlers"]

SWEEP_EVERY_S = 600.0
log = logging.getLogger("kith.worker")
_encode = msgspec.json.Encoder()


async def ensure_sweep_scheduled(pool: asyncpg.Pool[Any], delay_s: float = 0.0) -> None:
    await job_store.enqueue(pool, Kind.SWEEP, dedupe_key="tick", delay_s=delay_s)


def make_handlers(
    pool: asyncpg.Pool[Any],
    evaluator: InsightEvaluator,
    *,
    morning_hour: int,
    chunk: int,
    now: WallClock = utcnow,
) -> dict[str, Callable[[Job], Awaitable[None]]]:
    async def evaluate_one(job: Job) -> None:
        if job.space_id:
            result = await evaluator.evaluate_spaces([job.space_id], now())
            for _, exc in result.failed:
                raise exc  # one person: their own job retries (and says why if it dies)
            # Settings or a snooze may have changed what waiting nudges should do, and the
            # check-in schedule and caregivers' summaries follow the person's data.
            await nudge_store.replan_if_pending(pool, job.space_id)
            await care_store.enqueue_followups(pool, Kind.CARE_CHECK_IN, [job.space_id])

    async def evaluate_batch(job: Job) -> None:
        space_ids = list(job.payload["space_ids"])
        result = await evaluator.evaluate_spaces(space_ids, now())
        for space_id, _ in result.failed:
            await job_store.enqueue(pool, Kind.EVALUATE, space_id=space_id, dedupe_key=space_id)
        await care_store.enqueue_followups(pool, Kind.CARE_CHECK_IN, space_ids)  # at least daily
        log.info(
            "evaluated %d people: %d changed, %d new insights, %d nudge requests, "
            "%d failed (queued on their own)",
            result.people,
            result.changed_people,
            result.created,
            result.nudges,
            len(result.failed),
        )

    async def sweep(_: Job) -> None:
        async with pool.acquire() as conn, conn.transaction():
            due = await insight_store.due_for_morning_sweep(conn, now(), morning_hour)
            for start in range(0, len(due), chunk):
                payload = _encode.encode({"space_ids": due[start : start + chunk]}).decode()
                await job_store.enqueue(conn, Kind.EVALUATE_BATCH, payload)
        if due:
            log.info("morning sweep: %d people queued", len(due))
        await ensure_sweep_scheduled(pool, SWEEP_EVERY_S)

    return {Kind.EVALUATE: evaluate_one, Kind.EVALUATE_BATCH: evaluate_batch, Kind.SWEEP: sweep}

"""The job runner: claim durable jobs, run their handlers, retry, dead-letter.

At-least-once by construction: a job row leaves the table only when its handler has
returned. Handlers must therefore be idempotent (a push send uses the nudge id as its
collapse id; an evaluation is deterministic).

* Claiming: ``FOR UPDATE SKIP LOCKED`` with a lease (``service/store/jobs.py``); a
  heartbeat extends the leases of running jobs, and every loop requeues expired leases,
  so a SIGKILLed worker's jobs run again within ``lease_s``.
* Failure: exponential backoff with full jitter up to ``max_attempts``, then ``dead``.
  :class:`Retry` sets the delay (e.g. a provider's Retry-After); :class:`Permanent`
  dead-letters at once.
* Waking: Redis pub/sub on ``kith:jobs`` wakes idle workers early; without Redis they poll.
* Stopping: ``stop`` set (SIGTERM) → claim nothing more, let in-flight jobs finish within
  ``grace_s``, hand back the rest, return.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import msgspec

from service.infra.logs import request_id_var
from service.infra.outages import which
from service.jobs import Handler, Job, Permanent, Retry, backoff_s
from service.store import jobs as store

__all__ = ["JobObserver", "Worker", "WorkerConfig", "failure_reason"]

log = logging.getLogger("kith.worker")


class JobObserver(Protocol):
    """Where the worker reports what happens to jobs (``service.infra.metrics.Metrics``)."""

    def job_claimed(self, kind: str) -> None: ...

    def job_finished(self, kind: str, outcome: str, seconds: float) -> None:
        """``outcome``: succeeded, failed (to be retried) or dead."""


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    concurrency: int = 32
    lease_s: float = 60.0
    poll_interval_s: float = 1.0
    grace_s: float = 20.0
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 3600.0
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{secrets.token_hex(3)}")


_ROOT = Path(__file__).resolve().parent.parent.parent  # the project: service/, sync/, ...


def failure_reason(exc: BaseException) -> str:
    """Why a job failed, for ``kith report``, without the exception's message (it can carry
    personal data): its type and the innermost line of the project's own code it came
    through, e.g. ``OverflowError in service/care/summary.py:121 (build_summary)``; a
    failure that is an outage of PostgreSQL or Redis says so."""
    name = type(exc).__name__
    dependency = which(exc)
    if dependency is not None:
        return f"{name}: {dependency} unavailable"
    where = None
    tb = exc.__traceback__
    while tb is not None:
        path = Path(tb.tb_frame.f_code.co_filename)
        if path.is_relative_to(_ROOT) and ".venv" not in path.parts:
            relative = path.relative_to(_ROOT).as_posix()
            where = f"{relative}:{tb.tb_lineno} ({tb.tb_frame.f_code.co_name})"
        tb = tb.tb_next
    return f"{name} in {where}" if where else name


_decode = msgspec.json.decode
COMPLETE_BATCH = 200
COMPLETE_EVERY_S = 0.02


class Worker:
    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        handlers: dict[str, Handler],
        config: WorkerConfig | None = None,
        *,
        wakeup: asyncio.Event | None = None,
        rnd: random.Random | None = None,
        metrics: JobObserver | None = None,
    ) -> None:
        self._pool = pool
        self._metrics = metrics
        self._handlers = handlers
        self._kinds = sorted(handlers)
        self.config = config or WorkerConfig()
        self._wakeup = wakeup or asyncio.Event()
        self._rnd = rnd or random.Random()  # noqa: S311 - jitter, not secrecy
        self._inflight: dict[int, asyncio.Task[None]] = {}
        # Finished jobs are deleted in batches (one statement per few milliseconds, not one
        # per job); a crash before the delete only means those jobs run again, which
        # at-least-once handlers already allow.
        self._done: list[int] = []
        self._done_ready = asyncio.Event()
        self._completing = True
        self.counters = {"claimed": 0, "succeeded": 0, "retried": 0, "dead": 0}

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.config
        heartbeat = asyncio.create_task(self._heartbeat(stop))
        self._completing = True
        completer = asyncio.create_task(self._complete_loop())
        log.info("worker %s started (concurrency %d)", cfg.worker_id, cfg.concurrency)
        next_reap = 0.0
        try:
            while not stop.is_set():
                # Clear before looking for work, not before sleeping: a wake-up that arrives
                # while we claim must still cut the next sleep short.
                self._wakeup.clear()
                if time.monotonic() >= next_reap:
                    # Once per poll tick, not per claim: a busy worker claims many times a
                    # second, and a lease is only ever checked against whole seconds anyway.
                    await store.requeue_expired(self._pool)
                    next_reap = time.monotonic() + cfg.poll_interval_s
                free = cfg.concurrency - len(self._inflight)
                claimed = []
                if free > 0:
                    claimed = await store.claim(
                        self._pool, cfg.worker_id, free, cfg.lease_s, self._kinds
                    )
                for row in claimed:
                    self.counters["claimed"] += 1
                    if self._metrics is not None:
                        self._metrics.job_claimed(row.kind)
                    self._inflight[row.id] = asyncio.create_task(self._run_one(row))
                if len(claimed) == free and free > 0:
                    await asyncio.sleep(0)  # more may be due: claim again at once
                    continue
                await self._idle(stop)
        finally:
            await self._drain()
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            # Let the completer finish its current delete rather than cancel it mid-flight
            # (a cancelled DELETE may still run on the server, and its count would be lost);
            # then record whatever finished since.
            self._completing = False
            self._done_ready.set()
            await completer
            await self._flush_done()
            log.info("worker %s stopped", cfg.worker_id)

    async def _idle(self, stop: asyncio.Event) -> None:
        """Sleep until woken (Redis), a job finishes (a slot frees), stop, or the poll tick."""
        waiters: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self._wakeup.wait()),
            asyncio.ensure_future(stop.wait()),
        ]
        if self._inflight and len(self._inflight) >= self.config.concurrency:
            waiters.append(
                asyncio.ensure_future(
                    asyncio.wait(list(self._inflight.values()), return_when=asyncio.FIRST_COMPLETED)
                )
            )
        _, pending = await asyncio.wait(
            waiters, timeout=self.config.poll_interval_s, return_when=asyncio.FIRST_COMPLETED
        )
        for fut in pending:
            fut.cancel()

    async def _run_one(self, row: store.JobRow) -> None:
        cfg = self.config
        request_id_var.set(f"job-{row.id}")  # this task's log lines name their job
        started = time.monotonic()
        outcome: str | None = None  # stays None if cancelled (handed back at shutdown)
        try:
            handler = self._handlers.get(row.kind)
            if handler is None:
                raise Permanent(f"no handler for job kind {row.kind!r}")
            await handler(Job(row.id, row.kind, row.space_id, _decode(row.payload), row.attempts))
        except asyncio.CancelledError:
            raise
        except Permanent as exc:
            outcome = await self._fail(row, f"permanent: {exc}", None)
        except Retry as exc:
            outcome = await self._fail(row, f"retry: {exc}", exc.after_s)
        except Exception as exc:
            # The type and where it was raised only: messages can carry personal data.
            delay = backoff_s(row.attempts, cfg.backoff_base_s, cfg.backoff_cap_s, self._rnd)
            outcome = await self._fail(row, failure_reason(exc), delay)
        else:
            outcome = "succeeded"
            self._done.append(row.id)
            if len(self._done) >= COMPLETE_BATCH:
                self._done_ready.set()
        finally:
            self._inflight.pop(row.id, None)
            self._wakeup.set()  # a slot is free
            if outcome is not None and self._metrics is not None:
                self._metrics.job_finished(row.kind, outcome, time.monotonic() - started)

    async def _fail(self, row: store.JobRow, error: str, retry_in_s: float | None) -> str:
        """Record the failure; return ``dead`` or ``failed`` (for the metrics)."""
        state = await store.fail(self._pool, row.id, self.config.worker_id, error, retry_in_s)
        if state == "dead":
            self.counters["dead"] += 1
            log.warning(
                "job %d (%s) is dead after %d attempts: %s", row.id, row.kind, row.attempts, error
            )
            return "dead"
        if state == "queued":
            self.counters["retried"] += 1
        return "failed"

    async def _complete_loop(self) -> None:
        while self._completing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done_ready.wait(), COMPLETE_EVERY_S)
            self._done_ready.clear()
            try:
                await self._flush_done()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("recording finished jobs failed (will retry): %s", type(exc).__name__)

    async def _flush_done(self) -> None:
        if not self._done:
            return
        ids, self._done = self._done, []
        try:
            self.counters["succeeded"] += await store.complete_many(
                self._pool, ids, self.config.worker_id
            )
        except BaseException:
            self._done.extend(ids)
            raise

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self.config.lease_s / 3)
            if self._inflight:
                try:
                    await store.extend_leases(
                        self._pool, list(self._inflight), self.config.worker_id, self.config.lease_s
                    )
                except (OSError, asyncpg.PostgresError) as exc:
                    log.warning("lease heartbeat failed: %s", type(exc).__name__)

    async def _drain(self) -> None:
        """Let in-flight jobs finish within the grace period; hand back the rest."""
        if not self._inflight:
            return
        tasks = list(self._inflight.values())
        _, unfinished = await asyncio.wait(tasks, timeout=self.config.grace_s)
        if unfinished:
            ids = list(self._inflight)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
            released = await store.release(self._pool, ids, self.config.worker_id)
            log.info("released %d unfinished jobs at shutdown", released)

"""SQL of the durable job queue (``migrations/0002_jobs.sql``).

A job is claimed by setting ``state = 'running'`` with a lease. Claiming uses
``FOR UPDATE SKIP LOCKED``: concurrent workers each take different rows without waiting on
one another. Every later transition checks ``locked_by`` so a worker whose lease expired
(and whose job another worker took) cannot complete or fail a job it no longer owns.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from service.store.db import Connection, Executor

__all__ = [
    "DeadJob",
    "JobRow",
    "claim",
    "complete",
    "complete_many",
    "dead_jobs",
    "enqueue",
    "enqueue_many",
    "enqueue_or_advance",
    "extend_leases",
    "fail",
    "purge_dead",
    "queue_stats",
    "release",
    "requeue_expired",
    "retry_dead",
]


@dataclass(frozen=True, slots=True)
class JobRow:
    id: int
    kind: str
    space_id: str | None
    payload: str  # JSON text
    attempts: int
    max_attempts: int


async def enqueue(
    conn: Executor,
    kind: str,
    payload_json: str = "{}",
    *,
    space_id: str | None = None,
    dedupe_key: str | None = None,
    delay_s: float = 0.0,
    max_attempts: int = 8,
) -> int | None:
    """Queue a job; with a ``dedupe_key`` already queued, do nothing and return None
    (this is how "many pushes in a minute → one evaluation" debouncing works)."""
    value = await conn.fetchval(
        """
        INSERT INTO jobs (kind, payload, space_id, dedupe_key, run_at, max_attempts)
        VALUES ($1, $2::jsonb, $3, $4, now() + make_interval(secs => $5), $6)
        ON CONFLICT (kind, dedupe_key) WHERE state = 'queued' AND dedupe_key IS NOT NULL
        DO NOTHING
        RETURNING id
        """,
        kind,
        payload_json,
        space_id,
        dedupe_key,
        delay_s,
        max_attempts,
    )
    return int(value) if value is not None else None


async def enqueue_or_advance(
    conn: Executor, kind: str, *, space_id: str, dedupe_key: str, delay_s: float = 0.0
) -> None:
    """Queue a job, or, if one is already queued under ``dedupe_key``, move it earlier
    when this one is due sooner (a plan waiting for tomorrow runs now if asked to now)."""
    await conn.execute(
        """
        INSERT INTO jobs (kind, space_id, dedupe_key, run_at)
        VALUES ($1, $2, $3, now() + make_interval(secs => $4))
        ON CONFLICT (kind, dedupe_key) WHERE state = 'queued' AND dedupe_key IS NOT NULL
        DO UPDATE SET run_at = least(jobs.run_at, excluded.run_at), updated_at = now()
        """,
        kind,
        space_id,
        dedupe_key,
        delay_s,
    )


async def enqueue_many(
    conn: Executor, kind: str, space_id: str | None, payloads: list[str], max_attempts: int = 8
) -> None:
    """Queue several jobs of one kind in one statement (a nudge to each of a person's devices)."""
    if not payloads:
        return
    await conn.execute(
        """
        INSERT INTO jobs (kind, space_id, payload, max_attempts)
        SELECT $1, $2, p::jsonb, $4 FROM unnest($3::text[]) AS p
        """,
        kind,
        space_id,
        payloads,
        max_attempts,
    )


async def claim(
    conn: Executor,
    worker_id: str,
    limit: int,
    lease_s: float,
    kinds: list[str] | None = None,
) -> list[JobRow]:
    """Take up to ``limit`` due jobs, oldest first, under a lease of ``lease_s`` — only of
    ``kinds`` if given (a worker never takes a job it has no handler for: during a rolling
    deploy, an older worker leaves a new kind of job to the newer ones)."""
    rows = await conn.fetch(
        """
        WITH due AS (
            SELECT id FROM jobs
            WHERE state = 'queued' AND run_at <= now()
              AND ($4::text[] IS NULL OR kind = ANY($4::text[]))
            ORDER BY run_at
            LIMIT $2
            FOR UPDATE SKIP LOCKED
        )
        UPDATE jobs j
           SET state = 'running', attempts = j.attempts + 1, locked_by = $1,
               lease_until = now() + make_interval(secs => $3), updated_at = now()
          FROM due
         WHERE j.id = due.id
        RETURNING j.id, j.kind, j.space_id, j.payload::text AS payload, j.attempts, j.max_attempts
        """,
        worker_id,
        limit,
        lease_s,
        kinds,
    )
    return [
        JobRow(r["id"], r["kind"], r["space_id"], r["payload"], r["attempts"], r["max_attempts"])
        for r in rows
    ]


async def complete(conn: Executor, job_id: int, worker_id: str) -> bool:
    """Done jobs are deleted: the queue holds only work still to do (and the dead)."""
    return bool(
        await conn.fetchval(
            """
            DELETE FROM jobs WHERE id = $1 AND locked_by = $2 AND state = 'running'
            RETURNING true
            """,
            job_id,
            worker_id,
        )
    )


async def complete_many(conn: Executor, job_ids: list[int], worker_id: str) -> int:
    """Delete finished jobs in one statement (a busy worker finishes hundreds a second)."""
    result = await conn.execute(
        "DELETE FROM jobs WHERE id = ANY($1::bigint[]) AND locked_by = $2 AND state = 'running'",
        job_ids,
        worker_id,
    )
    return int(result.split()[-1])


async def purge_dead(conn: Executor, before: dt.datetime) -> int:
    """Dead jobs an operator has had a month to look at (maintenance)."""
    result = await conn.execute("DELETE FROM jobs WHERE state = 'dead' AND updated_at < $1", before)
    return int(result.split()[-1])


async def fail(
    conn: Executor, job_id: int, worker_id: str, error: str, retry_in_s: float | None
) -> str | None:
    """Schedule a retry in ``retry_in_s`` seconds, or (None, or attempts used up) mark the
    job dead for an operator to look at. Returns the new state, or None if not ours."""
    value = await conn.fetchval(
        """
        UPDATE jobs
           SET state = CASE WHEN $4::float8 IS NULL OR attempts >= max_attempts
                            THEN 'dead' ELSE 'queued' END,
               run_at = now() + make_interval(secs => coalesce($4::float8, 0)),
               lease_until = NULL, locked_by = NULL, last_error = left($3, 500),
               updated_at = now()
         WHERE id = $1 AND locked_by = $2 AND state = 'running'
        RETURNING state
        """,
        job_id,
        worker_id,
        error,
        retry_in_s,
    )
    return str(value) if value is not None else None


async def extend_leases(conn: Executor, job_ids: list[int], worker_id: str, lease_s: float) -> int:
    """Heartbeat: a long job keeps its lease as long as its worker is alive."""
    result = await conn.execute(
        """
        UPDATE jobs SET lease_until = now() + make_interval(secs => $3), updated_at = now()
        WHERE id = ANY($1::bigint[]) AND locked_by = $2 AND state = 'running'
        """,
        job_ids,
        worker_id,
        lease_s,
    )
    return int(result.split()[-1])


async def release(conn: Executor, job_ids: list[int], worker_id: str) -> int:
    """Hand unfinished jobs back at shutdown, without counting the interrupted attempt."""
    result = await conn.execute(
        """
        UPDATE jobs
           SET state = 'queued', run_at = now(), attempts = greatest(attempts - 1, 0),
               lease_until = NULL, locked_by = NULL, updated_at = now()
         WHERE id = ANY($1::bigint[]) AND locked_by = $2 AND state = 'running'
        """,
        job_ids,
        worker_id,
    )
    return int(result.split()[-1])


async def requeue_expired(conn: Executor) -> int:
    """Jobs whose worker died (lease passed) run again — or die if out of attempts.

    An expired job whose ``dedupe_key`` is already queued again (or held by an older
    expired job) is deleted instead of queued: the queued one does the same work, and a
    second queued job under one key would break ``jobs_dedupe`` (and the reaper with it)."""
    result = await conn.execute(
        """
        WITH expired AS (
            SELECT id, kind, dedupe_key, attempts >= max_attempts AS spent
            FROM jobs WHERE state = 'running' AND lease_until < now()
            FOR UPDATE
        ), covered AS (
            DELETE FROM jobs j USING expired e
             WHERE j.id = e.id AND e.dedupe_key IS NOT NULL AND NOT e.spent
               AND (EXISTS (SELECT 1 FROM jobs q WHERE q.state = 'queued' AND q.kind = e.kind
                                                   AND q.dedupe_key = e.dedupe_key)
                    OR EXISTS (SELECT 1 FROM expired o WHERE NOT o.spent AND o.kind = e.kind
                                                       AND o.dedupe_key = e.dedupe_key
                                                       AND o.id < e.id))
            RETURNING j.id
        )
        UPDATE jobs j
           SET state = CASE WHEN e.spent THEN 'dead' ELSE 'queued' END,
               run_at = now(), lease_until = NULL, locked_by = NULL,
               last_error = 'lease expired (worker stopped or stalled)', updated_at = now()
          FROM expired e
         WHERE j.id = e.id AND e.id NOT IN (SELECT id FROM covered)
        """
    )
    return int(result.split()[-1])


async def queue_stats(conn: Executor) -> dict[str, int]:
    rows = await conn.fetch("SELECT state, count(*) AS n FROM jobs GROUP BY state")
    stats = {"queued": 0, "running": 0, "dead": 0}
    stats.update({r["state"]: int(r["n"]) for r in rows})
    return stats


@dataclass(frozen=True, slots=True)
class DeadJob:
    id: int
    kind: str
    attempts: int
    last_error: str | None
    updated_at: dt.datetime


async def dead_jobs(conn: Executor, limit: int = 100) -> list[DeadJob]:
    rows = await conn.fetch(
        """
        SELECT id, kind, attempts, last_error, updated_at FROM jobs
        WHERE state = 'dead' ORDER BY updated_at DESC LIMIT $1
        """,
        limit,
    )
    return [
        DeadJob(r["id"], r["kind"], r["attempts"], r["last_error"], r["updated_at"]) for r in rows
    ]


async def retry_dead(conn: Connection, job_id: int) -> bool:
    """An operator sends a dead job back to the queue with fresh attempts."""
    return bool(
        await conn.fetchval(
            """
            UPDATE jobs SET state = 'queued', attempts = 0, run_at = now(), updated_at = now()
            WHERE id = $1 AND state = 'dead' RETURNING true
            """,
            job_id,
        )
    )

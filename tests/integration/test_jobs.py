"""The durable job runner on real PostgreSQL and Redis, including killed workers.

What a user would notice if these broke: a nudge or a caregiver alert that never goes out
after a deploy or a crash, or one that goes out twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from service.infra.wakeup import listen, notify
from service.jobs import Job, Permanent, Retry
from service.store import jobs as store
from service.worker.runner import Worker, WorkerConfig
from tests.conftest import CITUS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
    await pool.execute(
        """
        CREATE TABLE IF NOT EXISTS job_effects (job_id bigint PRIMARY KEY, tag text, runs int);
        TRUNCATE job_effects; DELETE FROM jobs;
        """
    )
    yield pool
    await pool.execute("DELETE FROM jobs")
    await pool.close()


async def run_until(
    worker: Worker, done: Callable[[], Awaitable[bool]], limit_s: float = 20
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        async with asyncio.timeout(limit_s):
            while not await done():
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task


async def effects(pool: asyncpg.Pool[Any]) -> dict[int, int]:
    return {
        r["job_id"]: r["runs"] for r in await pool.fetch("SELECT job_id, runs FROM job_effects")
    }


def recorder(pool: asyncpg.Pool[Any]) -> Callable[[Job], Awaitable[None]]:
    async def effect(job: Job) -> None:
        await asyncio.sleep(float(job.payload.get("sleep_s", 0)))
        await pool.execute(
            "INSERT INTO job_effects VALUES ($1, $2, 1) "
            "ON CONFLICT (job_id) DO UPDATE SET runs = job_effects.runs + 1",
            job.id,
            str(job.payload.get("tag", "")),
        )

    return effect


async def test_enqueueing_the_same_debounce_key_twice_queues_one_job(
    pool: asyncpg.Pool[Any],
) -> None:
    first = await store.enqueue(pool, "evaluate", space_id="s1", dedupe_key="s1", delay_s=60)
    again = await store.enqueue(pool, "evaluate", space_id="s1", dedupe_key="s1", delay_s=60)
    other = await store.enqueue(pool, "evaluate", space_id="s2", dedupe_key="s2", delay_s=60)
    assert first is not None
    assert again is None
    assert other is not None
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE kind = 'evaluate'") == 2


async def test_several_workers_run_every_job_exactly_once(pool: asyncpg.Pool[Any]) -> None:
    ids = [await store.enqueue(pool, "effect", '{"sleep_s": 0.01}') for _ in range(120)]
    workers = [
        Worker(
            pool,
            {"effect": recorder(pool)},
            WorkerConfig(concurrency=8, worker_id=f"w{i}", poll_interval_s=0.05),
        )
        for i in range(3)
    ]

    async def all_done() -> bool:
        return len(await effects(pool)) == len(ids)

    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        async with asyncio.timeout(30):
            while not await all_done():
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    runs = await effects(pool)
    assert set(runs) == set(ids)
    assert set(runs.values()) == {1}
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 0  # done jobs leave the queue
    assert sum(w.counters["succeeded"] for w in workers) == 120


async def test_a_failing_job_backs_off_then_goes_to_the_dead_letter_state(
    pool: asyncpg.Pool[Any],
) -> None:
    calls: list[float] = []

    async def flaky(job: Job) -> None:
        calls.append(time.monotonic())
        raise ValueError("journal text must never reach the error column")

    job_id = await store.enqueue(pool, "flaky", max_attempts=3)
    assert job_id is not None
    worker = Worker(pool, {"flaky": flaky}, WorkerConfig(backoff_base_s=0.2, poll_interval_s=0.05))

    async def dead() -> bool:
        return bool(await pool.fetchval("SELECT state FROM jobs WHERE id = $1", job_id) == "dead")

    await run_until(worker, dead)
    row = await pool.fetchrow("SELECT attempts, last_error FROM jobs WHERE id = $1", job_id)
    assert row is not None
    assert row["attempts"] == 3
    assert len(calls) == 3
    # The type and where it was raised (for `kith report`), never the message.
    assert row["last_error"].startswith("ValueError in tests/integration/test_jobs.py:")
    assert row["last_error"].endswith(" (flaky)")
    assert "journal" not in row["last_error"]
    assert [j.id for j in await store.dead_jobs(pool)] == [job_id]
    assert worker.counters == {"claimed": 3, "succeeded": 0, "retried": 2, "dead": 1}

    # An operator sends it back once the cause is fixed.
    async with pool.acquire() as conn:
        assert await store.retry_dead(conn, job_id)
    assert await pool.fetchval("SELECT state FROM jobs WHERE id = $1", job_id) == "queued"


async def test_retry_after_and_permanent_failures_are_honoured(pool: asyncpg.Pool[Any]) -> None:
    async def throttled(job: Job) -> None:
        raise Retry("429 from the provider", after_s=120)

    async def poison(job: Job) -> None:
        raise Permanent("payload too large")

    slow = await store.enqueue(pool, "throttled")
    bad = await store.enqueue(pool, "poison")
    unknown = await store.enqueue(pool, "no-such-kind")
    worker = Worker(
        pool, {"throttled": throttled, "poison": poison}, WorkerConfig(poll_interval_s=0.05)
    )

    async def settled() -> bool:
        n = await pool.fetchval(
            "SELECT count(*) FROM jobs WHERE id = ANY($1) AND (state = 'running' OR "
            "(state = 'queued' AND run_at <= now()))",
            [slow, bad],
        )
        return bool(n == 0 and worker.counters["claimed"] >= 2)

    await run_until(worker, settled)
    wait = await pool.fetchval(
        "SELECT extract(epoch FROM run_at - now()) FROM jobs WHERE id = $1", slow
    )
    assert 100 < float(wait) <= 120
    assert await pool.fetchval("SELECT state FROM jobs WHERE id = $1", bad) == "dead"
    # A kind this worker has no handler for is left for a worker that has one (a rolling
    # deploy), not claimed and dead-lettered.
    row = await pool.fetchrow("SELECT state, attempts FROM jobs WHERE id = $1", unknown)
    assert row is not None
    assert (row["state"], row["attempts"]) == ("queued", 0)
    await pool.execute("DELETE FROM jobs WHERE id = $1", unknown)


async def test_a_job_whose_worker_vanished_runs_again_after_its_lease(
    pool: asyncpg.Pool[Any],
) -> None:
    job_id = await store.enqueue(pool, "effect")
    assert job_id is not None
    # A worker claims it and dies without a word (no heartbeat, no completion).
    claimed = await store.claim(pool, "ghost", 1, lease_s=0.5)
    assert [j.id for j in claimed] == [job_id]
    worker = Worker(pool, {"effect": recorder(pool)}, WorkerConfig(poll_interval_s=0.05))

    async def ran() -> bool:
        return job_id in await effects(pool)

    started = time.monotonic()
    await run_until(worker, ran)
    assert time.monotonic() - started >= 0.3  # not before the lease ran out
    assert not await store.complete(pool, job_id, "ghost")  # the ghost can't touch it now


async def test_a_vanished_workers_debounced_job_gives_way_to_the_one_queued_since(
    pool: asyncpg.Pool[Any],
) -> None:
    """A worker dies holding "evaluate ana"; pushes since then queued "evaluate ana" again
    (twice claimed by ghosts). Reaping must leave one queued job for the key — not stop the
    reaper (and every worker with it) on the one-queued-job-per-key index."""
    first = await store.enqueue(pool, "effect", dedupe_key="ana")
    await store.claim(pool, "ghost-1", 1, lease_s=0.2)
    second = await store.enqueue(pool, "effect", dedupe_key="ana")
    await store.claim(pool, "ghost-2", 1, lease_s=0.2)
    third = await store.enqueue(pool, "effect", dedupe_key="ana")
    assert None not in (first, second, third)
    await asyncio.sleep(0.3)
    await store.requeue_expired(pool)
    rows = await pool.fetch("SELECT id, state FROM jobs WHERE dedupe_key = 'ana' ORDER BY id")
    assert [(r["id"], r["state"]) for r in rows] == [(third, "queued")]
    worker = Worker(pool, {"effect": recorder(pool)}, WorkerConfig(poll_interval_s=0.05))

    async def ran() -> bool:
        return third in await effects(pool)

    await run_until(worker, ran)
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 0


def start_worker(server_env: dict[str, str], worker_id: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.worker_process"],
        cwd=ROOT,
        env={**server_env, "WORKER_ID": worker_id, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


# A short lease so the victim's jobs come back soon; 10 s on Citus (KITH_TEST_CITUS=1),
# where three PostgreSQL servers share this machine's cores with the test and a heartbeat
# can come later than 2 s, so live jobs would run again (tests/integration/test_push_faults.py
# says more).
LEASE_S = "10" if CITUS else "2"


async def test_sigkill_mid_batch_loses_nothing(
    pool: asyncpg.Pool[Any], server_env: dict[str, str]
) -> None:
    ids = [await store.enqueue(pool, "effect", '{"sleep_s": 0.15}') for _ in range(60)]
    victim = start_worker(server_env, "victim", WORKER_LEASE_S=LEASE_S)
    survivor = start_worker(server_env, "survivor", WORKER_LEASE_S=LEASE_S)
    try:
        async with asyncio.timeout(20):
            while len(await effects(pool)) < 10:
                await asyncio.sleep(0.05)
        in_flight = await pool.fetchval(
            "SELECT count(*) FROM jobs WHERE state = 'running' AND locked_by = 'victim'"
        )
        victim.send_signal(signal.SIGKILL)
        victim.wait(5)
        async with asyncio.timeout(40):
            while len(await effects(pool)) < len(ids):
                await asyncio.sleep(0.1)
    finally:
        for proc in (victim, survivor):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
    runs = await effects(pool)
    assert set(runs) == set(ids)  # every job ran
    # At-least-once: only a job caught between its effect and its completion may run twice.
    assert sum(n - 1 for n in runs.values()) <= in_flight
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE kind = 'effect'") == 0


async def test_sigterm_finishes_in_flight_jobs_and_exits_cleanly(
    pool: asyncpg.Pool[Any], server_env: dict[str, str]
) -> None:
    ids = [await store.enqueue(pool, "effect", '{"sleep_s": 1.0}') for _ in range(4)]
    proc = start_worker(server_env, "graceful", WORKER_GRACE_S="10", WORKER_CONCURRENCY="4")
    async with asyncio.timeout(20):
        while await pool.fetchval("SELECT count(*) FROM jobs WHERE state = 'running'") < 4:
            await asyncio.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    rc = await asyncio.to_thread(proc.wait, 15)
    assert rc == 0
    assert set(await effects(pool)) == set(ids)  # the in-flight sends completed
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 0


async def test_sigterm_past_the_grace_period_hands_jobs_back(
    pool: asyncpg.Pool[Any], server_env: dict[str, str]
) -> None:
    job_id = await store.enqueue(pool, "effect", '{"sleep_s": 30}')
    proc = start_worker(server_env, "impatient", WORKER_GRACE_S="0.5")
    async with asyncio.timeout(20):
        while await pool.fetchval("SELECT state FROM jobs WHERE id = $1", job_id) != "running":
            await asyncio.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 10) == 0
    row = await pool.fetchrow("SELECT state, attempts FROM jobs WHERE id = $1", job_id)
    assert row is not None
    assert (row["state"], row["attempts"]) == ("queued", 0)  # ready for the next worker now


async def test_redis_wakes_an_idle_worker_at_once(pool: asyncpg.Pool[Any], redis_url: str) -> None:
    worker = Worker(pool, {"effect": recorder(pool)}, WorkerConfig(poll_interval_s=30))
    stop = asyncio.Event()
    listener = asyncio.create_task(listen(redis_url, worker.wake, stop))
    task = asyncio.create_task(worker.run(stop))
    client = aioredis.Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(10):  # idle, and subscribed
            while (await client.pubsub_numsub("kith:jobs"))[0][1] < 1:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        job_id = await store.enqueue(pool, "effect")
        started = time.monotonic()
        await notify(client)
        async with asyncio.timeout(5):
            while job_id not in await effects(pool):
                await asyncio.sleep(0.02)
        assert time.monotonic() - started < 2  # far sooner than the 30 s poll
    finally:
        stop.set()
        await asyncio.gather(task, listener)
        await client.aclose()


async def test_with_redis_down_jobs_still_run_by_polling(pool: asyncpg.Pool[Any]) -> None:
    worker = Worker(pool, {"effect": recorder(pool)}, WorkerConfig(poll_interval_s=0.2))
    stop = asyncio.Event()
    listener = asyncio.create_task(listen("redis://127.0.0.1:1/0", worker.wake, stop))
    job_id = await store.enqueue(pool, "effect")
    assert job_id is not None

    async def ran() -> bool:
        return job_id in await effects(pool)

    started = time.monotonic()
    try:
        await run_until(worker, ran, limit_s=10)
        # The wake-up listener keeps retrying in the background instead of taking the
        # worker down with it.
        assert not listener.done()
    finally:
        stop.set()
        await listener
    assert (await effects(pool))[job_id] == 1  # ran, once
    assert time.monotonic() - started < 5  # within a few poll ticks, not a Redis timeout
    assert worker.counters["succeeded"] == 1


def test_worker_module_is_importable_without_a_database() -> None:
    """`kith worker` fails with a clear message, not a traceback, without DATABASE_URL."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    out = subprocess.run(
        [sys.executable, "-m", "service.cli", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 2
    assert "DATABASE_URL is not set" in out.stderr

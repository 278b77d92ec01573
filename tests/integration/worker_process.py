"""A worker process for the fault tests: real process, real signals, test handlers.

Run as ``python -m tests.integration.worker_process``; configured by environment.
The ``effect`` handler sleeps, then records its job id once (idempotent, like a push
send with a collapse id), so tests can see exactly which jobs completed.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import asyncpg

from service.infra.wakeup import listen
from service.jobs import Job
from service.store.db import create_pool
from service.worker.runner import Worker, WorkerConfig


async def main() -> None:
    pool = await create_pool(os.environ["DATABASE_URL"], min_size=1, max_size=4)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def effect(job: Job) -> None:
        await asyncio.sleep(float(job.payload.get("sleep_s", 0)))
        await record(pool, job)

    worker = Worker(
        pool,
        {"effect": effect},
        WorkerConfig(
            concurrency=int(os.environ.get("WORKER_CONCURRENCY", "8")),
            lease_s=float(os.environ.get("WORKER_LEASE_S", "2")),
            poll_interval_s=0.2,
            grace_s=float(os.environ.get("WORKER_GRACE_S", "5")),
            worker_id=os.environ.get("WORKER_ID", f"proc-{os.getpid()}"),
        ),
    )
    listener = asyncio.create_task(listen(os.environ["REDIS_URL"], worker.wake, stop))
    await worker.run(stop)
    await listener
    await pool.close()


async def record(pool: asyncpg.Pool[Any], job: Job) -> None:
    await pool.execute(
        """
        INSERT INTO job_effects (job_id, tag, runs) VALUES ($1, $2, 1)
        ON CONFLICT (job_id) DO UPDATE SET runs = job_effects.runs + 1
        """,
        job.id,
        str(job.payload.get("tag", "")),
    )


if __name__ == "__main__":
    asyncio.run(main())

"""Push delivery: notifications per second from one `kith worker` to a local fake APNs,
and the worker's memory while a 100,000-job backlog drains.

* sends — a backlog of ``KITH_BENCH_PUSH_SENDS`` (default 20,000) people, each with one
  sent nudge and its queued ``push_send`` job, is released into the queue at once (one
  INSERT, then a Redis wake-up) while one idle ``kith worker`` process waits; the clock runs
  until the queue holds none of them. Every send is the real path: claim, read the nudge
  and the device's address, check the person's quiet hours, send over HTTP/2, judge the
  answer, record completion. Ceiling: the same number of notifications sent by the same
  ``APNsProvider`` with the same concurrency from this process, with no queue and no
  database — what the HTTP/2 client and the fake cost on their own.
* memory — ``KITH_BENCH_PUSH_BACKLOG`` (default 100,000) jobs queued at once; the worker's
  RSS is sampled every 0.25 s until they are gone. It should stay flat: a worker holds
  ``KITH_WORKER_CONCURRENCY`` jobs at a time, never the backlog.

The fake APNs (``tests/fakes/apns.py``) runs in its own process, answering at once, keeping
counters only; it checks every request as Apple would (provider token, headers, payload).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import redis.asyncio as aioredis

from bench.measure import Plan, Result, Samples, rounds
from bench.servers import Stack
from service.infra.wakeup import notify
from service.push.base import Address, Notification
from service.push.factory import build_providers
from service.store.db import create_pool
from tests.integration.push_support import (
    KEY_ID,
    TEAM_ID,
    TOPIC,
    make_keys,
    remove_backlog,
    seed_send_backlog,
)

__all__ = ["push_delivery"]

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = 128
TARGET_PER_S = 1000.0


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


@contextlib.contextmanager
def _fake_apns(tmp: Path, public_pem: bytes) -> Iterator[dict[str, Any]]:
    key_file = tmp / "apns-key.pub.pem"
    key_file.write_bytes(public_pem)
    args = [
        *(sys.executable, "-m", "tests.fakes.apns", "--cert-dir", str(tmp / "certs")),
        *("--key-file", str(key_file), "--team-id", TEAM_ID, "--key-id", KEY_ID),
        *("--topic", TOPIC, "--no-record", "--engine", "h2"),
    ]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("READY "):
            raise RuntimeError(f"fake APNs did not start: {line!r}")
        info: dict[str, Any] = json.loads(line.split(" ", 1)[1])
        info["pid"] = proc.pid
        yield info
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def _worker(env: dict[str, str], log: Path) -> Iterator[psutil.Process]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker"], env=env, stdout=out, stderr=out
        )
        try:
            time.sleep(1.5)  # migrations are done; let it connect and go idle
            if proc.poll() is not None:
                raise RuntimeError(f"kith worker exited; see {log}")
            yield psutil.Process(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _release(pool: asyncpg.Pool[Any], space_ids: list[str], nudge_ids: list[str]) -> None:
    await pool.execute(
        """
        INSERT INTO jobs (kind, space_id, payload, max_attempts)
        SELECT 'push_send', s, jsonb_build_object('nudge_id', n, 'device_id', 'phone'), 12
        FROM unnest($1::text[], $2::text[]) AS x(s, n)
        """,
        space_ids,
        nudge_ids,
    )


async def _drained(pool: asyncpg.Pool[Any], space_ids: list[str]) -> None:
    while await pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE space_id = ANY($1::text[]))", space_ids
    ):
        await asyncio.sleep(0.05)


async def _ceiling(provider: Any, count: int) -> float:
    """Seconds for ``count`` sends through the provider alone, CONCURRENCY at a time."""
    tokens = [secrets.token_hex(32) for _ in range(count)]
    now = dt.datetime.now(dt.UTC)
    queue = iter(range(count))

    async def lane() -> None:
        for i in queue:
            result = await provider.send(
                Address("phone", "apns", tokens[i], now),
                Notification(
                    f"ceiling-{i}",
                    "Time to see Sam?",
                    "It's been 6 weeks since you and Sam met in person — coffee this weekend?",
                    data={"nudge_id": f"ceiling-{i}", "insight_id": "x", "contact_id": "c"},
                ),
            )
            assert result.ok, result

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))
    return time.perf_counter() - started


async def push_delivery(stack: Stack, plan: Plan) -> AsyncIterator[Result]:
    sends = _env_int("KITH_BENCH_PUSH_SENDS", 20_000)
    backlog_size = _env_int("KITH_BENCH_PUSH_BACKLOG", 100_000)
    keys = make_keys()
    with tempfile.TemporaryDirectory(prefix="kith-bench-push-") as tmpdir:
        tmp = Path(tmpdir)
        with _fake_apns(tmp, keys.apns_public) as fake:
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("KITH_")},
                "DATABASE_URL": stack.database_url,
                "REDIS_URL": stack.redis_url,
                "KITH_ENV": "test",
                "KITH_DATA_DIR": str(tmp / "data"),
                "KITH_LOG_LEVEL": "WARNING",
                "KITH_WORKER_CONCURRENCY": str(CONCURRENCY),
                # Delivery only: a whole worker would also sweep the people other
                # workloads seeded into this database, and that is not what is measured.
                "KITH_WORKER_KINDS": "push_send",
                "KITH_PUSH_CA_FILE": fake["ca_file"],
                "KITH_APNS_TEAM_ID": TEAM_ID,
                "KITH_APNS_KEY_ID": KEY_ID,
                "KITH_APNS_PRIVATE_KEY": keys.apns_private,
                "KITH_APNS_TOPIC": TOPIC,
                "KITH_APNS_URL": fake["url"],
                "KITH_APNS_SANDBOX_URL": fake["url"],
            }
            pool = await create_pool(stack.database_url, min_size=1, max_size=4)
            redis = aioredis.Redis.from_url(stack.redis_url)
            try:
                result = await _measure(
                    stack, plan, pool, redis, env, tmp, sends, backlog_size, fake
                )
            finally:
                await redis.aclose()
                await pool.close()
    yield result


async def _measure(
    stack: Stack,
    plan: Plan,
    pool: asyncpg.Pool[Any],
    redis: aioredis.Redis,
    env: dict[str, str],
    tmp: Path,
    sends: int,
    backlog_size: int,
    fake: dict[str, Any],
) -> Result:
    from service.config import Settings

    settings = Settings.from_env(env)
    provider = build_providers(settings, pool)["apns"]
    kith, ceiling = Samples(), Samples()
    fake_proc = psutil.Process(fake["pid"])
    fake_cpu: list[float] = []
    try:
        with _worker(env, tmp / "worker.log") as worker:
            for r in rounds(plan):
                backlog = await seed_send_backlog(pool, sends, enqueue=False)
                cpu0 = fake_proc.cpu_times()
                started = time.perf_counter()
                await _release(pool, backlog.space_ids, backlog.nudge_ids)
                await notify(redis)
                await _drained(pool, backlog.space_ids)
                kith.add(r, time.perf_counter() - started)
                cpu1 = fake_proc.cpu_times()
                fake_cpu.append((cpu1.user + cpu1.system - cpu0.user - cpu0.system) / sends)
                await remove_backlog(pool, backlog)
                ceiling.add(r, await _ceiling(provider, sends))
            memory = await _memory(pool, redis, worker, backlog_size)
    finally:
        await provider.aclose()
    rate = kith.rate(sends)
    return Result(
        "push: notifications to fake APNs, 1 worker",
        rate,
        ceiling.rate(sends),
        "notif/s",
        0.5,
        (
            f"push: {sends:,} sends per round, one `kith worker` (concurrency {CONCURRENCY}), "
            f"fake APNs in its own process: {rate:,.0f}/s "
            f"({'meets' if rate >= TARGET_PER_S else 'MISSES'} the {TARGET_PER_S:,.0f}/s "
            f"target); kith {kith.spread()}; ceiling (APNsProvider alone, no queue) "
            f"{ceiling.spread()}; the fake's CPU {1000 * min(fake_cpu):.2f} ms per send",
            memory,
        ),
    )


async def _memory(
    pool: asyncpg.Pool[Any], redis: aioredis.Redis, worker: psutil.Process, size: int
) -> str:
    backlog = await seed_send_backlog(pool, size, enqueue=False)
    idle = worker.memory_info().rss
    samples: list[tuple[int, int]] = []  # (jobs left, rss)
    started = time.perf_counter()
    await _release(pool, backlog.space_ids, backlog.nudge_ids)
    await notify(redis)
    while True:
        left = int(
            await pool.fetchval(
                "SELECT count(*) FROM jobs WHERE space_id = ANY($1::text[])", backlog.space_ids
            )
        )
        samples.append((left, worker.memory_info().rss))
        if left == 0:
            break
        await asyncio.sleep(0.25)
    seconds = time.perf_counter() - started
    await remove_backlog(pool, backlog)
    rss = [m for _, m in samples]
    mib = 2**20
    quarter = [m for left, m in samples if left <= size * 0.75][:1] or [rss[0]]
    return (
        f"memory: {size:,} push jobs queued at once drained in {seconds:.0f} s "
        f"({size / seconds:,.0f}/s); worker RSS idle {idle / mib:.0f} MiB, "
        f"a quarter drained {quarter[0] / mib:.0f} MiB, peak {max(rss) / mib:.0f} MiB, "
        f"at the end {rss[-1] / mib:.0f} MiB ({len(samples)} samples)"
    )

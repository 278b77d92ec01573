"""The rules sweep on a generated population: the morning sweep of everyone, and one person.

The run's fresh database is filled with ``kith seed``'s population (default 10,000 people,
30 contacts, two years: about 2 million interactions; ``KITH_BENCH_SWEEP_PEOPLE`` or
``python -m bench.sweep_only --people N`` shrinks it). Then:

* incremental — ``InsightEvaluator.evaluate_spaces([one space])`` for ~200 random people,
  one after the other, as the worker does after a push: p50 / p95 latency. Measured twice:
  a person's first evaluation (insights created and written under the space lock), and a
  re-evaluation after the sweep (nothing changed: reads and rules only). Ceiling: the same
  person's history read alone (``load_histories``), no rules, no writes.
* sweep — every space through ``evaluate_spaces`` in chunks of 250, two worker processes
  (each with its own pool) taking chunks from one queue: total seconds and people/s. Run
  twice: the first sweep writes everyone's insights, the second finds nothing to change
  (the steady state of a daily sweep). Ceiling: the same chunks, same processes, only the
  history reads.

The table's rate for the incremental rows is 1 / p95, so a row is "met" when p95 is under
20 ms; for the sweep rows it is people/s, "met" when the whole sweep takes under 60 s.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import multiprocessing as mp
import os
import random
import statistics
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from bench.measure import Plan, Result
from bench.servers import Stack
from service.insights.service import InsightEvaluator
from service.store.db import create_pool
from service.store.insights import load_histories
from service.sync.seed import ProgressBar, SeedOptions, seed_database
from sync.hlc import Clock

__all__ = ["DEFAULT_PEOPLE", "people_from_env", "rules_sweep", "sweep"]

DEFAULT_PEOPLE = 10_000
CHUNK = 250
WORKERS = 2
SAMPLE = 200
SWEEP_TARGET_S = 60.0
INCREMENTAL_P95_TARGET_S = 0.020
NOW = dt.datetime(2026, 11, 1, 6, 0, tzinfo=dt.UTC)  # the seeded timelines end here


@dataclass(frozen=True, slots=True)
class SweepRun:
    seconds: float
    people: int
    changed: int
    created: int


# -- the sweep: worker processes ----------------------------------------------------------


def _worker(
    url: str,
    mode: str,
    index: int,
    chunks: Any,  # mp.Queue[list[str] | None]
    results: Any,  # mp.Queue[tuple[int, int, int]]
    ready: Any,  # mp.Queue[int]
    go: Any,  # mp.Event
) -> None:
    asyncio.run(_worker_main(url, mode, index, chunks, results, ready, go))


async def _worker_main(
    url: str, mode: str, index: int, chunks: Any, results: Any, ready: Any, go: Any
) -> None:
    pool = await create_pool(url, min_size=1, max_size=2)
    try:
        evaluator = InsightEvaluator(pool, Clock(f"bench-sweep-{index}"))
        ready.put(index)
        go.wait()
        people = changed = created = 0
        while (chunk := chunks.get()) is not None:
            if mode == "evaluate":
                r = await evaluator.evaluate_spaces(chunk, NOW)
                people, changed, created = (
                    people + r.people,
                    changed + r.changed_people,
                    created + r.created,
                )
            else:  # "read": the ceiling, the histories alone
                people += len(await load_histories(pool, chunk))
        results.put((people, changed, created))
    finally:
        await pool.close()


def sweep(url: str, space_ids: Sequence[str], mode: str = "evaluate") -> SweepRun:
    """Every space in chunks of ``CHUNK`` through ``WORKERS`` processes; timed from the
    moment all of them are connected and waiting until the last one is done."""
    ctx = mp.get_context("spawn")  # the parent runs an event loop: no fork
    chunks: Any = ctx.Queue()
    results: Any = ctx.Queue()
    ready: Any = ctx.Queue()
    go = ctx.Event()
    for i in range(0, len(space_ids), CHUNK):
        chunks.put(list(space_ids[i : i + CHUNK]))
    for _ in range(WORKERS):
        chunks.put(None)
    procs = [
        ctx.Process(target=_worker, args=(url, mode, i, chunks, results, ready, go))
        for i in range(WORKERS)
    ]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=60)
        start = time.perf_counter()
        go.set()
        totals = [results.get(timeout=1800) for _ in procs]
        seconds = time.perf_counter() - start
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.terminate()
    return SweepRun(
        seconds,
        sum(t[0] for t in totals),
        sum(t[1] for t in totals),
        sum(t[2] for t in totals),
    )


# -- one person at a time -----------------------------------------------------------------


def _quantiles(seconds: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(seconds, n=100, method="inclusive")
    return q[49], q[94]


async def _incremental(
    pool: asyncpg.Pool[Any], evaluator: InsightEvaluator, sample: Sequence[str]
) -> tuple[list[float], list[float]]:
    """Latencies of evaluating each person alone, and of reading their history alone."""
    evaluate, read = [], []
    for space_id in sample:
        t = time.perf_counter()
        await evaluator.evaluate_spaces([space_id], NOW)
        evaluate.append(time.perf_counter() - t)
        t = time.perf_counter()
        await load_histories(pool, [space_id])
        read.append(time.perf_counter() - t)
    return evaluate, read


def _incremental_result(name: str, kith: list[float], ceiling: list[float]) -> Result:
    p50, p95 = _quantiles(kith)
    c50, c95 = _quantiles(ceiling)
    return Result(
        name,
        1 / p95,
        1 / c95,
        "people/s at p95",
        (1 / INCREMENTAL_P95_TARGET_S) * c95,
        (
            f"{name} — evaluate_spaces([one]): p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, "
            f"max {max(kith) * 1000:.1f} ms, n={len(kith)} (target p95 < "
            f"{INCREMENTAL_P95_TARGET_S * 1000:.0f} ms)",
            f"{name} — ceiling, load_histories([one]) alone: p50 {c50 * 1000:.1f} ms, "
            f"p95 {c95 * 1000:.1f} ms",
        ),
    )


def _sweep_result(name: str, kith: SweepRun, ceiling: SweepRun) -> Result:
    n = kith.people
    return Result(
        name,
        n / kith.seconds,
        ceiling.people / ceiling.seconds,
        "people/s",
        (n / SWEEP_TARGET_S) / (ceiling.people / ceiling.seconds),
        (
            f"{name} — {n:,} people in {kith.seconds:.1f} s ({n / kith.seconds:,.0f} people/s; "
            f"target under {SWEEP_TARGET_S:.0f} s), {WORKERS} processes, chunks of {CHUNK}; "
            f"{kith.changed:,} people had changes, {kith.created:,} insights created "
            f"(the {SAMPLE} people of the incremental rows were evaluated before it)",
            f"{name} — ceiling, the same chunks' history reads alone: {ceiling.seconds:.1f} s",
        ),
    )


# -- the workload -------------------------------------------------------------------------


def people_from_env() -> int:
    return int(os.environ.get("KITH_BENCH_SWEEP_PEOPLE", DEFAULT_PEOPLE))


async def rules_sweep(stack: Stack, plan: Plan, people: int | None = None) -> AsyncIterator[Result]:
    people = people or people_from_env()
    url = stack.database_url
    bar = ProgressBar(people)
    seeded = await seed_database(
        url,
        SeedOptions(
            people=people, seed=plan.seed, now=NOW, argon2_time_cost=1, argon2_memory_kib=1024
        ),
        progress=bar.update,
    )
    bar.update(people, final=True)
    interactions = seeded.rows["interactions"]
    seed_note = (
        f"population: {people:,} people, {interactions:,} interactions, "
        f"{seeded.rows['contacts']:,} contacts (`kith seed --people {people} --seed {plan.seed}`,"
        f" {seeded.seconds:.0f} s to seed)"
    )
    pool = await create_pool(url, min_size=1, max_size=2)
    try:
        conn_ids = await pool.fetch("SELECT id FROM spaces ORDER BY id")
        space_ids = [r["id"] for r in conn_ids]
        sample = random.Random(plan.seed).sample(space_ids, min(SAMPLE, len(space_ids)))
        evaluator = InsightEvaluator(pool, Clock("bench-incremental"))
        await load_histories(pool, sample[:5])  # warm the statement cache
        first, first_read = await _incremental(pool, evaluator, sample)
        loop = asyncio.get_running_loop()
        read_run = await loop.run_in_executor(None, sweep, url, space_ids, "read")
        cold = await loop.run_in_executor(None, sweep, url, space_ids, "evaluate")
        # The sweep just filled ``insights`` (empty when last analyzed): refresh the planner's
        # statistics, as autovacuum soon would, so the reads after it are not measured on a
        # plan made for an empty table.
        await pool.execute("ANALYZE insights, nudge_requests")
        steady = await loop.run_in_executor(None, sweep, url, space_ids, "evaluate")
        again, again_read = await _incremental(pool, evaluator, sample)
    finally:
        await pool.close()
    row = _incremental_result(
        f"rules: one person's first evaluation ({people:,} seeded)", first, first_read
    )
    yield Result(row.name, row.kith, row.ceiling, row.unit, row.target, (*row.notes, seed_note))
    yield _incremental_result("rules: one person re-evaluated, nothing changed", again, again_read)
    yield _sweep_result(
        f"rules: first sweep of {people:,} people (writes insights)", cold, read_run
    )
    yield _sweep_result(f"rules: daily sweep of {people:,} people (no changes)", steady, read_run)

"""Kith on Citus next to Kith on one PostgreSQL: push, pull and the mixed load, same run.

A Citus 12.1 cluster — a coordinator and two workers, all on this machine — is started for
the workload (``../shared/citus/cluster.sh``, root only), migrated (which distributes the
schema: ``service/store/distribution.py``), and given an API process of its own. Then each
sync workload runs twice back to back, first on the run's single PostgreSQL, then on the
cluster, so both see the same machine state. Each row's "kith" is Kith on Citus, its
"ceiling" is Kith on the single PostgreSQL: the ratio is what distributing costs (or
gains) on one box. On one box it is a cost — the same cores now run three PostgreSQL
servers and a network hop per statement — so the row's target guards against
regressions; docs/benchmarks.md says what the numbers would mean on separate machines.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from bench.measure import Plan, Result
from bench.mixed_load import mixed_load
from bench.servers import Stack, stack
from bench.sync_throughput import push_pull
from service.infra.embedded import citus_cluster

__all__ = ["citus_scale_out"]

_Workload = Callable[[Stack, Plan], AsyncIterator[Result]]

#: Least Citus/single-node ratio accepted per row (ours: one box pays the hops without
#: gaining cores; measured 2026-12-06, see docs/benchmarks.md).
TARGETS = {"push": 0.25, "pull": 0.25, "mixed": 0.25}


#: What each workload's raw ceiling is when it runs on the cluster.
CEILING_ON_CITUS = {
    "push": "upserts into a scratch table, which stays local on the coordinator",
    "pull": "keyset reads of the distributed contacts, through the coordinator",
    "mixed": "20 fresh connections to a scratch table local on the coordinator; each pays "
    "the type introspection first",
}


def _kind(name: str) -> str:
    return name.split(" ", 1)[0].rstrip(":")


async def citus_scale_out(single: Stack, plan: Plan) -> AsyncIterator[Result]:
    for workload in (push_pull, mixed_load):
        here = [r async for r in workload(single, plan)]
        # The cluster and its API start in threads: stack() blocks, and runs its own loops.
        there = await asyncio.to_thread(_on_citus, single.redis_url, workload, plan)
        for one, cit in zip(here, there, strict=True):
            kind = _kind(one.name)
            yield Result(
                f"Citus 1+2 vs one PostgreSQL: {one.name}",
                cit.kith,
                one.kith,
                one.unit,
                TARGETS[kind],
                (
                    f"citus {kind} — Kith on Citus (coordinator + 2 workers, one box) "
                    f"{cit.kith:,.0f} {cit.unit} vs Kith on one PostgreSQL {one.kith:,.0f}; "
                    f"on Citus its own raw-asyncpg ceiling was {cit.ceiling:,.0f} "
                    f"({CEILING_ON_CITUS[kind]}); on one PostgreSQL, in this "
                    f"workload's run beside it, Kith/ceiling = {one.kith:,.0f}/"
                    f"{one.ceiling:,.0f} = {one.ratio:.3f}",
                    *(f"citus {note}" for note in cit.notes),
                ),
            )


def _on_citus(redis_url: str, workload: _Workload, plan: Plan) -> list[Result]:
    """Start a cluster and an API on it, run ``workload`` there, stop everything."""
    with (
        citus_cluster(2) as url,
        stack(url, redis_url, own_database=True) as cluster,
    ):

        async def collect() -> list[Result]:
            if workload is mixed_load:
                # A fresh API's pool pays asyncpg's type introspection once per connection,
                # ~0.5 s a query on a Citus coordinator (its catalogue is bigger): more than
                # the mixed window's 3 s warm-up absorbs. One pass first, thrown away, as
                # the single PostgreSQL's API is warm from the workloads before it.
                [_ async for _ in workload(cluster, plan)]
            return [r async for r in workload(cluster, plan)]

        return asyncio.run(collect())

"""Run only the rules-sweep workload (:mod:`bench.rules_sweep`) at a chosen size::

    python -m bench.sweep_only --people 1000

Same servers as ``python -m bench`` (DATABASE_URL / REDIS_URL, else embedded), same table.
A module of its own so that the sweep's worker processes (spawned, they re-import the main
module) do not import the workload twice.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from bench.measure import Plan, Result, report
from bench.rules_sweep import people_from_env, rules_sweep
from bench.servers import Stack, stack

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep_only", description=__doc__)
    parser.add_argument("--people", type=int, default=people_from_env(), help="population size")
    args = parser.parse_args(argv)

    async def run(s: Stack) -> list[Result]:
        return [r async for r in rules_sweep(s, Plan(), max(1, args.people))]

    with stack(os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")) as s:
        print(f"PostgreSQL {s.postgres_version} ({s.servers})", flush=True)
        results = asyncio.run(run(s))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

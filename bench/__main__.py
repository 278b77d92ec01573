"""``python -m bench`` (what `make bench` runs): start the servers, run every workload,
print the machine, the table and the notes.

DATABASE_URL / REDIS_URL name existing servers; without them the embedded ones start.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import sys
from pathlib import Path

import psutil

from bench import WORKLOADS
from bench.measure import Plan, Result, report
from bench.servers import Stack, stack

TOTAL_TIMEOUT_S = 1200.0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _machine(s: Stack, load: float) -> list[str]:
    return [
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- CPU: {os.cpu_count()} cores, {_cpu_model()}",
        f"- memory: {psutil.virtual_memory().total / 2**30:.1f} GiB",
        f"- Python {platform.python_version()}, PostgreSQL {s.postgres_version}",
        f"- servers: {s.servers}; API: Granian, 1 worker, on the same machine as the client",
        # Taken before the run (the run itself keeps both cores busy): other work skews it.
        f"- load average (1 min) before the run: {load:.2f}"
        + (" — other work was running; expect noise" if load > 0.8 else ""),
    ]


async def _run(s: Stack, plan: Plan, only: set[str]) -> list[Result]:
    results: list[Result] = []
    for workload in WORKLOADS:
        if only and workload.__name__ not in only:
            continue
        async for result in workload(s, plan):
            print(f"  {result.name}: {result.ratio:.3f} of the ceiling", flush=True)
            results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    default = Plan()
    parser.add_argument("--records", type=int, default=default.records, help="records per round")
    parser.add_argument("--repeat", type=int, default=default.repeat, help="measured rounds")
    parser.add_argument("--warmup", type=int, default=default.warmup, help="discarded rounds")
    names = ", ".join(w.__name__ for w in WORKLOADS)
    parser.add_argument(
        "--only", action="append", default=[], help=f"run only this workload ({names})"
    )
    args = parser.parse_args(argv)
    plan = Plan(
        records=max(1, args.records), repeat=max(1, args.repeat), warmup=max(0, args.warmup)
    )

    load = os.getloadavg()[0]  # before our own servers start
    with stack(os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")) as s:
        print(f"API at {s.base_url} (pid {s.api.pid}; profile with py-spy --subprocesses)")
        print(f"{plan.warmup} warm-up round(s), then the median of {plan.repeat}", flush=True)
        results = asyncio.run(asyncio.wait_for(_run(s, plan, set(args.only)), TOTAL_TIMEOUT_S))
        print()
        print("\n".join(_machine(s, load)))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

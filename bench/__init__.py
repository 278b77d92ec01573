"""Kith's benchmarks: every workload measured next to its ceiling, in the same run.

A workload is an async generator: given the running servers (:class:`bench.servers.Stack`)
and the :class:`bench.measure.Plan`, it yields :class:`bench.measure.Result` rows — name,
Kith's rate, the ceiling's rate, the unit, the target ratio. ``python -m bench`` runs every
entry of :data:`WORKLOADS` and prints one markdown table; to add a workload, write a module
next to ``sync_throughput.py`` and append its function here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from bench.account_export import account_export
from bench.citus_scale_out import citus_scale_out
from bench.measure import Plan, Result
from bench.mixed_load import mixed_load
from bench.nochange_pull import nochange_pull
from bench.push_delivery import push_delivery
from bench.rules_sweep import rules_sweep
from bench.servers import Stack
from bench.sse import sse_streams
from bench.sync_throughput import push_pull
from bench.watermelon_sync import watermelon_first_sync

__all__ = ["WORKLOADS", "Workload"]

Workload = Callable[[Stack, Plan], AsyncIterator[Result]]

WORKLOADS: list[Workload] = [
    push_pull,
    nochange_pull,
    mixed_load,
    sse_streams,
    push_delivery,
    rules_sweep,
    watermelon_first_sync,
    account_export,
    citus_scale_out,
]

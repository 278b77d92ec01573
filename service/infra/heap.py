"""Garbage-collector settings for Kith's long-running processes (decision 0009).

CPython frees almost everything by reference counting; its cyclic collector runs on top,
every 700 new container objects by default, and each run walks the young objects — and
every so often the whole heap, including the tens of thousands of objects the framework,
the schemas and the connection pools allocate once at start-up. A push of 500 changes
makes thousands of small dicts and lists, so the collector ran hundreds of times per
10,000 pushed records: measured in-process, about a third of the push path's CPU.

:func:`settle` is called once a process has started (the API after its lifespan start-up,
the worker before it takes jobs): it collects once, moves every surviving object into the
permanent generation (``gc.freeze``: never scanned again), and lets the youngest
generation grow to ``GEN0_THRESHOLD`` objects before a collection. Cycles are still
collected, just less often; the extra memory this holds is bounded by that threshold.
"""

from __future__ import annotations

import gc

__all__ = ["GEN0_THRESHOLD", "settle"]

GEN0_THRESHOLD = 10_000


def settle() -> None:
    """Freeze what start-up allocated and collect young objects less often."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)

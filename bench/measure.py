"""What every workload shares: the plan (how often, how long), rounds, samples, results.

A workload times its own critical section (setup such as registering an account stays
outside the clock) and reports seconds per round; the median of the measured rounds is
what the table shows. Kith and its ceiling run in the same rounds, one after the other,
so both see the same machine state (a checkpoint, autovacuum, a noisy neighbour).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["Plan", "Result", "Round", "Samples", "markdown_table", "report", "rounds"]


@dataclass(frozen=True, slots=True)
class Plan:
    """How much work each workload does and how many times it repeats it."""

    records: int = 10_000
    warmup: int = 1  # rounds run first and thrown away (caches, statement plans, JIT-free)
    repeat: int = 5  # measured rounds; the table shows their median
    budget_s: float = 120.0  # per workload phase: stop repeating (after >= 1 round) past it
    seed: int = 20_251_121


@dataclass(frozen=True, slots=True)
class Round:
    index: int
    warmup: bool


def rounds(plan: Plan) -> Iterator[Round]:
    """Warm-up rounds, then measured ones until ``plan.repeat`` or the time budget runs out."""
    start = time.monotonic()
    for i in range(plan.warmup + plan.repeat):
        if i > plan.warmup and time.monotonic() - start > plan.budget_s:
            return
        yield Round(i, i < plan.warmup)


@dataclass(slots=True)
class Samples:
    """Seconds per measured round (warm-up rounds are dropped on entry)."""

    seconds: list[float] = field(default_factory=list)

    def add(self, r: Round, seconds: float) -> None:
        if not r.warmup:
            self.seconds.append(seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def rate(self, items: int) -> float:
        """Items per second at the median round."""
        return items / self.median

    def spread(self) -> str:
        ms = sorted(s * 1000 for s in self.seconds)
        median = statistics.median(ms)
        return f"median {median:.0f} ms, min {ms[0]:.0f}, max {ms[-1]:.0f}, n={len(ms)}"


@dataclass(frozen=True, slots=True)
class Result:
    """One row of the table: Kith's rate next to the ceiling's, and the ratio we aim for."""

    name: str
    kith: float
    ceiling: float
    unit: str
    target: float  # the least kith/ceiling ratio we accept
    notes: tuple[str, ...] = ()

    @property
    def ratio(self) -> float:
        return self.kith / self.ceiling if self.ceiling else 0.0

    @property
    def met(self) -> bool:
        return self.ratio >= self.target


def markdown_table(results: list[Result]) -> str:
    lines = [
        "| workload | kith | ceiling | ratio | target |",
        "|---|---:|---:|---:|---|",
    ]
    for r in results:
        verdict = "met" if r.met else "MISSED"
        lines.append(
            f"| {r.name} | {r.kith:,.0f} {r.unit} | {r.ceiling:,.0f} {r.unit} "
            f"| {r.ratio:.3f} | ≥ {r.target:.2f} ({verdict}) |"
        )
    return "\n".join(lines)


def report(results: list[Result]) -> str:
    """The table, then every workload's notes as a bullet list."""
    notes = [f"- {note}" for r in results for note in r.notes]
    return "\n".join(["", markdown_table(results), "", *notes])

"""Rule 4, network narrowing: fewer people met in person lately than in the months before.

Counts *units* met in person in the last ``window_days``: each contact met one-to-one, and
each group meetup as one (contacts seen only together at a choir are one circle, so a
group that ends is one loss, not five). The baseline is the ``baseline_months`` windows
before; a window with more than ``max_away_days`` days away from everyone (``person.py``)
says nothing and is left out, and so is a recent window like that. People keep a fixed
contact budget (Saramaki 2014), so a broad drop says more about the person than any one
tie — but months vary: the rule fires only when the recent count is below the average by
``drop`` of it, by ``min_lost`` units, and by ``z`` standard deviations of the person's
own month-to-month variation (never taken below Poisson's, sqrt of the mean).

Archived contacts are left out, so archiving someone never looks like a loss; snoozed
contacts still count (snoozing silences nudges, not the relationship).
"""

from __future__ import annotations

import datetime as dt
import math
import statistics

from service.rules.context import Context
from service.rules.finding import Finding
from service.rules.rule import Rule
from service.rules.spec import RuleSpec
from service.rules.wording import duration, people

__all__ = ["RULE", "NarrowingSpec", "evaluate"]


class NarrowingSpec(RuleSpec, frozen=True):
    window_days: int
    baseline_months: int
    drop: float
    z: float
    min_lost: int
    min_baseline_average: float
    max_away_days: int


def _units(ctx: Context, blocks: int, window: int) -> list[int]:
    solo: list[set[str]] = [set() for _ in range(blocks)]
    grouped: list[list[frozenset[str]]] = [[] for _ in range(blocks)]
    group_days = {(day, cid) for day, members in ctx.groups for cid in members}
    for tie in ctx.ties.values():
        if tie.contact.archived:
            continue
        cid = tie.contact.id
        for day in reversed(tie.meetings):
            block = (ctx.today - day).days // window
            if block >= blocks:
                break
            if (day, cid) not in group_days:
                solo[block].add(cid)
    for day, members in ctx.groups:
        block = (ctx.today - day).days // window
        if 0 <= block < blocks:
            grouped[block].append(members)
    counts = []
    for b in range(blocks):
        # Group meetups that share members are one group: count connected components.
        comps: list[set[str]] = []
        for members in grouped[b]:
            live = set(members) - solo[b]
            if not live:
                continue
            joined = [c for c in comps if c & members]
            merged = set(members).union(*joined)
            comps = [c for c in comps if not (c & members)] + [merged]
        counts.append(len(solo[b]) + len(comps))
    return counts


def evaluate(ctx: Context, spec: NarrowingSpec) -> list[Finding]:
    window = spec.window_days
    blocks = spec.baseline_months + 1  # block 0 is the latest window, then the baseline
    counts = _units(ctx, blocks, window)

    def away(block: int) -> int:
        through = ctx.today - dt.timedelta(days=block * window)
        return ctx.person.away_days(through - dt.timedelta(days=window), through)

    if away(0) > spec.max_away_days:
        return []
    monthly = [counts[b] for b in range(1, blocks) if away(b) <= spec.max_away_days]
    if len([n for n in monthly if n]) < spec.min_data_points:
        return []
    average = sum(monthly) / len(monthly)
    if average < spec.min_baseline_average:
        return []
    recent = counts[0]
    spread = max(statistics.pstdev(monthly), math.sqrt(average))
    lost = average - recent
    if lost < max(spec.drop * average, spec.min_lost, spec.z * spread) - 1e-9:
        return []
    return [
        RULE.finding(
            spec,
            tie=None,
            body=spec.text["body"].format(
                recent=people(recent), window=duration(window), baseline=people(round(average))
            ),
            evidence={
                "window_days": window,
                "recent_units": recent,
                "baseline_monthly_units": monthly,
                "baseline_average": round(average, 2),
                "baseline_spread": round(spread, 2),
                "drop_fraction": round(lost / average, 3),
                "threshold": spec.drop,
            },
            data_points=len(monthly),
        )
    ]


RULE = Rule(
    id="narrowing",
    rank=50,
    spec=NarrowingSpec,
    templates=frozenset({"title", "body"}),
    placeholders=frozenset({"recent", "window", "baseline"}),
    evaluate=evaluate,
)

"""Rule 1, overdue: the silence since the last meeting in person, against the tie's rhythm.

With at least ``min_intervals`` gaps between past meetings the base is the tie's own
median gap m (gap > 2m slipping, > 4m at risk, > 8m dormant: Navarro 2017 found ties
silent for more than 8x their usual gap mostly lapse). With fewer, the base is the
contact's own ``cadence_days``, else its circle's default (Dunbar's layers).

Burstiness guard: a friend seen three days running and then not for six weeks has a
median gap of one day, so the median alone would call every normal silence "dormant"
(Miritello 2013). The base is therefore never below the tie's ``burst_quantile`` gap
divided by the first multiplier: a silence no longer than ones this tie has had before is
never flagged. For a regular tie that quantile is close to m and the rule is exactly the
median rule.
"""

from __future__ import annotations

import itertools
import math

from service.rules.catalog import OverdueSpec
from service.rules.context import Context, Tie
from service.rules.finding import Finding
from service.rules.wording import count_word, every, kinds_phrase

__all__ = ["RULE_ID", "evaluate", "quantile"]

RULE_ID = "overdue"


def quantile(values: list[int], q: float) -> int:
    """Nearest-rank quantile: a gap that actually happened, never an interpolation."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def _round(x: float) -> int:
    return max(1, int(x + 0.5))


def _since(ctx: Context, spec: OverdueSpec, tie: Tie) -> tuple[str, int]:
    touches = tie.remote_since_last_meeting()
    if not touches:
        return "", 0
    if len(touches) == 1:
        kind = ctx.catalog.kind_noun(touches[0].kind, many=False)
        return spec.text["since_one"].format(kind=kind), 1
    kinds = kinds_phrase(ctx.catalog, (t.kind for t in touches))
    return spec.text["since_many"].format(count=count_word(len(touches)), kinds=kinds), len(touches)


def _base(spec: OverdueSpec, tie: Tie) -> tuple[str, float, float | None, int]:
    """(basis, base days, median gap or None, usual longest gap) for this tie."""
    meetings = tie.meetings
    first = max(0, len(meetings) - 1 - spec.max_intervals)  # only the recent intervals
    gaps = sorted((b - a).days for a, b in itertools.pairwise(meetings[first:]))
    if len(gaps) >= spec.min_intervals:
        n = len(gaps)
        median = float(gaps[n // 2]) if n % 2 else (gaps[n // 2 - 1] + gaps[n // 2]) / 2
        longest = quantile(gaps, spec.burst_quantile) if spec.burst_quantile > 0 else 0
        return "rhythm", max(median, longest / spec.multipliers[0]), median, longest
    cadence = tie.contact.cadence_days
    if cadence is not None:
        return "cadence", float(cadence), None, 0
    return "circle", float(spec.circle_cadence_days[tie.contact.circle]), None, 0


def _finding(ctx: Context, spec: OverdueSpec, tie: Tie) -> Finding | None:
    meetings = tie.meetings
    if len(meetings) < spec.min_data_points or not meetings:
        return None
    gap = (ctx.today - meetings[-1]).days
    if gap <= spec.multipliers[0]:  # every base is at least a day: nothing can fire yet
        return None
    basis, base, median, longest = _base(spec, tie)
    thresholds = [m * base for m in spec.multipliers]
    level_index = sum(gap > t for t in thresholds) - 1
    if level_index < 0:
        return None
    contact = tie.contact
    level = spec.levels[level_index]
    since, remote_count = _since(ctx, spec, tie)
    evidence: dict[str, object] = {
        "basis": basis,
        "gap_days": gap,
        "last_in_person": meetings[-1].isoformat(),
        "in_person_days": len(meetings),
        "base_days": round(base, 2),
        "thresholds_days": [round(t, 2) for t in thresholds],
        "remote_since_last_meeting": remote_count,
    }
    words = {"name": contact.name, "gap_days": gap, "since": since}
    if median is not None:
        evidence |= {"median_gap_days": median, "usual_longest_gap_days": longest}
        key = "body_rhythm_bursty" if base > median else "body_rhythm"
        body = spec.text[key].format(usual=every(_round(median)), longest_days=longest, **words)
    else:
        evidence |= {"cadence_days": int(base), "circle": contact.circle}
        body = spec.text[f"body_{basis}"].format(
            cadence=every(int(base)), circle=contact.circle, **words
        )
    return Finding(
        rule=RULE_ID,
        contact_id=contact.id,
        level=level,
        title=spec.text[f"title_{level}"].format(name=contact.name),
        body=body,
        evidence=evidence,
        nudge=spec.nudges(level),
        data_points=len(meetings),
    )


def evaluate(ctx: Context) -> list[Finding]:
    spec = ctx.catalog.overdue
    found = (_finding(ctx, spec, tie) for tie in ctx.eligible)
    return [f for f in found if f is not None]

"""Rule 2, rate drop: gaps that keep stretching, or meeting at half the usual pace or less.

Catches the gradual fade the overdue rule sees late: gaps that stretch a little each time,
none of them alarming alone. Two readings, either suffices:

* stretching: the last ``stretch_gaps`` episode gaps (``slow_stretch_gaps`` for a tie
  whose usual gap is at least ``slow_gap_days``) each at least as long as the one before,
  the first longer than the tie's usual gap, together ``stretch_ratio`` x as long as the
  usual gap would make them, growing by at least ``stretch_growth`` a gap, and the current
  silence longer still. The usual gap is the rhythm's own fit (``rhythm.py``: the latest
  gaps held out), known once it rests on ``min_data_points`` gaps. A missed week or a
  holiday breaks such a run; two missed meetings in a row, or a tie that settles into a
  new, slower rhythm, make no trend; a drifting-apart does. A slow tie offers a third as
  many runs a year as a weekly one, so a shorter run carries about the same yearly risk of
  a run by chance (and three growing monthly gaps plus a longer silence take half a year);
* fewer meetings: k = meeting episodes (a visit of several days is one) in the last
  ``window_days``; the baseline is the episodes in the ``baseline_days`` before, both
  windows in effective days (days the person was away from everyone are left out). Under
  the baseline rate, k would be Poisson with mean lambda; the rule fires when
  P(X <= k) < ``alpha`` *and* the recent rate is below ``max_ratio`` of the baseline (a
  real halving, as the change-point rule R3 of the domain notes asks).

Either way only once the current silence is ``quiet_multiplier`` usual gaps long: never
right after they met.

A tie with a thin baseline (fewer than ``min_baseline_meetings`` episodes) never reaches
significance, and a tie whose rhythm is unknown, or that lives in a group that paused, is
not judged (see ``overdue.assess``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math

from service.rules import overdue
from service.rules.context import Context, count_between
from service.rules.finding import Finding
from service.rules.overdue import Assessment, assess, evidence
from service.rules.rhythm import Rhythm, episodes
from service.rules.rule import Rule, per_tie
from service.rules.spec import RuleSpec
from service.rules.wording import duration, every, join, times

__all__ = ["RULE", "RateDropSpec", "evaluate", "poisson_cdf", "stretching"]


class RateDropSpec(RuleSpec, frozen=True):
    stretch_gaps: int
    slow_stretch_gaps: int
    slow_gap_days: float
    stretch_ratio: float
    stretch_growth: float
    min_baseline_meetings: int
    window_days: int
    baseline_days: int
    alpha: float
    max_ratio: float
    quiet_multiplier: float

    def check(self, name: str) -> None:
        super().check(name)
        if not 2 <= self.slow_stretch_gaps <= self.stretch_gaps:
            raise ValueError(f"{name}: need 2 <= slow_stretch_gaps <= stretch_gaps")


def poisson_cdf(k: int, lam: float) -> float:
    """P(X <= k) for X ~ Poisson(lam), summed in log space so large lam never underflows."""
    if k < 0:
        return 0.0
    if lam <= 0:
        return 1.0
    log_lam = math.log(lam)
    total = math.fsum(math.exp(i * log_lam - lam - math.lgamma(i + 1)) for i in range(k + 1))
    return min(1.0, total)


def stretching(rhythm: Rhythm, silence: int, spec: RateDropSpec) -> tuple[int, ...]:
    """The run of ever longer gaps ending in today's silence, or () if there is none."""
    usual = rhythm.median
    k = spec.slow_stretch_gaps if usual >= spec.slow_gap_days else spec.stretch_gaps
    if len(rhythm.reference) < spec.min_data_points or len(rhythm.gaps) <= k:
        return ()
    recent = rhythm.gaps[-k:]
    rising = all(a <= b for a, b in itertools.pairwise((*recent, silence)))
    longer = recent[0] > usual and sum(recent) >= spec.stretch_ratio * k * usual
    # A trend, not a new level: the geometric mean growth from the run's first gap to its last.
    growing = (recent[-1] / recent[0]) ** (1 / (k - 1)) >= spec.stretch_growth
    return recent if rising and longer and growing else ()


def _finding(ctx: Context, spec: RateDropSpec, a: Assessment) -> Finding | None:
    tie = a.tie
    if a.basis != "rhythm" or a.silence < spec.quiet_multiplier * a.usual:
        return None
    stretch = stretching(a.rhythm, a.silence, spec)
    if stretch:
        usual = a.rhythm.median
        return RULE.finding(
            spec,
            tie=tie,
            body=spec.text["body_stretch"].format(
                **a.words() | {"usual": every(usual)}, gaps=join([duration(g) for g in stretch])
            ),
            evidence=evidence(a)
            | {"stretching_gaps_days": list(stretch), "earlier_median_gap_days": usual},
            data_points=len(a.rhythm.gaps),
        )
    window_start = ctx.today - dt.timedelta(days=spec.window_days)
    baseline_start = window_start - dt.timedelta(days=spec.baseline_days)
    # Episodes, not days: a three-day visit is one event, or bursts would fake a drop.
    starts = tuple(e[0] for e in episodes(a.days, ctx.catalog.spec_for(overdue.RULE).join_days))
    baseline = count_between(starts, baseline_start, window_start)
    if baseline < max(spec.min_baseline_meetings, spec.min_data_points):
        return None
    window_eff = max(1, ctx.person.effective(window_start, ctx.today))
    baseline_eff = max(1, ctx.person.effective(baseline_start, window_start))
    recent = count_between(starts, window_start, ctx.today)
    expected = baseline / baseline_eff * window_eff
    if recent >= spec.max_ratio * expected:
        return None
    p = poisson_cdf(recent, expected)
    if p >= spec.alpha:
        return None
    return RULE.finding(
        spec,
        tie=tie,
        body=spec.text["body"].format(
            window=duration(spec.window_days),
            recent=times(recent),
            expected=times(max(1, round(expected))),
            **a.words(),
        ),
        evidence=evidence(a)
        | {
            "window_days": spec.window_days,
            "recent_in_person": recent,
            "baseline_days": spec.baseline_days,
            "baseline_in_person": baseline,
            "expected_in_window": round(expected, 2),
            "p_value": round(p, 6),
            "alpha": spec.alpha,
        },
        data_points=baseline,
    )


evaluate = per_tie(assess, _finding)


RULE = Rule(
    id="rate_drop",
    rank=30,
    spec=RateDropSpec,
    templates=frozenset({"title", "body", "body_stretch"}),
    placeholders=frozenset(
        {"name", "expected", "window", "recent", "usual", "gap", "last_met", "gaps"}
    ),
    evaluate=evaluate,
)

"""Rule 2, rate drop: fewer meetings in person lately than this tie's own past year.

k = meeting days in the last ``window_days``; the baseline is the meeting days in the
``baseline_days`` before that window. Under the baseline rate, k would be Poisson with
mean lambda = baseline / baseline_days x window_days; the rule fires when
P(X <= k) < ``alpha``. A Poisson test asks "is this quieter than chance?", so a tie with
a thin baseline (fewer than ``min_data_points`` meetings) can never reach significance
and stays silent — that is what keeps bursty or rare ties from crying wolf.

The rule also stays quiet for ``quiet_days`` after any meeting: having just seen someone,
a nudge about seeing them less would be nagging, and the insight it raised was just
withdrawn because they met.
"""

from __future__ import annotations

import datetime as dt
import math

from service.rules.context import Context, Tie, count_between
from service.rules.finding import Finding
from service.rules.wording import times

__all__ = ["RULE_ID", "evaluate", "poisson_cdf"]

RULE_ID = "rate_drop"


def poisson_cdf(k: int, lam: float) -> float:
    """P(X <= k) for X ~ Poisson(lam), summed in log space so large lam never underflows."""
    if k < 0:
        return 0.0
    if lam <= 0:
        return 1.0
    log_lam = math.log(lam)
    total = math.fsum(math.exp(i * log_lam - lam - math.lgamma(i + 1)) for i in range(k + 1))
    return min(1.0, total)


def _finding(ctx: Context, tie: Tie) -> Finding | None:
    spec = ctx.catalog.rate_drop
    window_start = ctx.today - dt.timedelta(days=spec.window_days)
    baseline_start = window_start - dt.timedelta(days=spec.baseline_days)
    baseline = count_between(tie.meetings, baseline_start, window_start)
    if baseline < spec.min_data_points:
        return None
    if tie.meetings and (ctx.today - tie.meetings[-1]).days < spec.quiet_days:
        return None
    recent = count_between(tie.meetings, window_start, ctx.today)
    expected = baseline / spec.baseline_days * spec.window_days
    p = poisson_cdf(recent, expected)
    if p >= spec.alpha:
        return None
    level = spec.levels[0]
    name = tie.contact.name
    recent_words = times(recent) if recent == 0 else "only " + times(recent)
    return Finding(
        rule=RULE_ID,
        contact_id=tie.contact.id,
        level=level,
        title=spec.text["title"].format(name=name),
        body=spec.text["body"].format(
            name=name,
            expected=times(max(1, round(expected))),
            window_days=spec.window_days,
            recent=recent_words,
        ),
        evidence={
            "window_days": spec.window_days,
            "recent_in_person": recent,
            "baseline_days": spec.baseline_days,
            "baseline_in_person": baseline,
            "expected_in_window": round(expected, 2),
            "p_value": round(p, 6),
            "alpha": spec.alpha,
        },
        nudge=spec.nudges(level),
        data_points=baseline,
    )


def evaluate(ctx: Context) -> list[Finding]:
    found = (_finding(ctx, tie) for tie in ctx.eligible)
    return [f for f in found if f is not None]

"""Rule 4, network narrowing: fewer people in touch lately than in the last six months.

Counts distinct contacts with any interaction (in person or remote) in the last
``window_days`` against the average per ``window_days`` block over the
``baseline_months`` blocks before it. People keep a fixed contact budget (Saramäki 2014),
so a broad drop across ties says more about the person than about any one tie.

Archived contacts are left out of both counts, so archiving someone never looks like a
loss; snoozed contacts still count (snoozing silences nudges, not the relationship). The
rule needs every baseline month to hold logged contact: a person who only started
logging recently has no baseline to shrink from.
"""

from __future__ import annotations

from service.rules.context import Context
from service.rules.finding import Finding
from service.rules.wording import people

__all__ = ["RULE_ID", "evaluate"]

RULE_ID = "narrowing"


def evaluate(ctx: Context) -> list[Finding]:
    spec = ctx.catalog.narrowing
    blocks = spec.baseline_months + 1  # block 0 is the latest window, then the baseline
    in_touch = [0] * blocks
    for tie in ctx.ties.values():
        if tie.contact.archived:
            continue
        seen: set[int] = set()
        for day in reversed(tie.days):  # newest first: stop at the oldest block
            block = (ctx.today - day).days // spec.window_days
            if block >= blocks:
                break
            seen.add(block)
        for block in seen:
            in_touch[block] += 1
    recent, monthly = in_touch[0], in_touch[1:]
    months_with_data = sum(1 for n in monthly if n)
    if months_with_data < spec.min_data_points:
        return []
    average = sum(monthly) / len(monthly)
    if average < spec.min_baseline_average:
        return []
    drop = (average - recent) / average
    if drop < spec.drop - 1e-9:  # tolerance: 7 against 10 is a 30% drop, not 29.99...
        return []
    level = spec.levels[0]
    return [
        Finding(
            rule=RULE_ID,
            contact_id=None,
            level=level,
            title=spec.text["title"],
            body=spec.text["body"].format(
                recent=people(recent),
                window_days=spec.window_days,
                baseline=people(round(average)),
            ),
            evidence={
                "window_days": spec.window_days,
                "recent_contacts": recent,
                "baseline_monthly_contacts": monthly,
                "baseline_average": round(average, 2),
                "drop_fraction": round(drop, 3),
                "threshold": spec.drop,
            },
            nudge=spec.nudges(level),
            data_points=months_with_data,
        )
    ]

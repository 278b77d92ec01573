"""Rule 3, face-to-face drought: an inner or close tie kept up only remotely lately.

Calls and messages keep a tie alive but did not protect against depression the way
meeting in person did (Teo 2015): in-person contact every few months or less went with
11.5% depressive symptoms two years later against 7.3-8.1% for monthly or weekly. So
for the ties that matter most, remote contact in the last ``window_days`` with no meeting
in that time earns a suggestion to meet.
"""

from __future__ import annotations

import datetime as dt

from service.rules.context import Context, Tie, count_between
from service.rules.finding import Finding
from service.rules.wording import kinds_phrase, long_date, times

__all__ = ["RULE_ID", "evaluate"]

RULE_ID = "drought"


def _finding(ctx: Context, tie: Tie) -> Finding | None:
    spec = ctx.catalog.drought
    if tie.contact.circle not in spec.circles:
        return None
    window_start = ctx.today - dt.timedelta(days=spec.window_days)
    if count_between(tie.meetings, window_start, ctx.today):
        return None
    touches = [t for t in tie.remote if t.day > window_start]
    if len(touches) < spec.min_data_points:
        return None
    name = tie.contact.name
    last_met = tie.meetings[-1] if tie.meetings else None
    met = (
        spec.text["met_before"].format(last_met=long_date(last_met))
        if last_met is not None
        else spec.text["met_never"]
    )
    kinds: dict[str, int] = {}
    for touch in touches:
        kinds[touch.kind] = kinds.get(touch.kind, 0) + 1
    level = spec.levels[0]
    return Finding(
        rule=RULE_ID,
        contact_id=tie.contact.id,
        level=level,
        title=spec.text["title"].format(name=name),
        body=spec.text["body"].format(
            name=name,
            count=times(len(touches)),
            window_days=spec.window_days,
            kinds=(
                ctx.catalog.kind_noun(touches[0].kind, many=False)
                if len(touches) == 1
                else kinds_phrase(ctx.catalog, (t.kind for t in touches))
            ),
            met=met,
        ),
        evidence={
            "window_days": spec.window_days,
            "circle": tie.contact.circle,
            "remote_in_window": len(touches),
            "remote_kinds": dict(sorted(kinds.items())),
            "in_person_in_window": 0,
            "last_in_person": last_met.isoformat() if last_met else None,
        },
        nudge=spec.nudges(level),
        data_points=len(touches),
    )


def evaluate(ctx: Context) -> list[Finding]:
    found = (_finding(ctx, tie) for tie in ctx.eligible)
    return [f for f in found if f is not None]

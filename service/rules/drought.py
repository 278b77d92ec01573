"""Rule 3, face-to-face drought: a tie that used to meet in person now kept up only remotely.

Calls and messages keep a tie alive but did not protect against depression the way
meeting in person did (Teo 2015): in-person contact every few months or less went with
11.5% depressive symptoms two years later against 7.3-8.1% for monthly or weekly. So for
an inner or close tie with a regular rhythm in person (usual gap at most
``max_usual_gap_days``), whose silence in person is past the overdue rule's slipping line
while calls and messages went on at least ``remote_share`` of the old pace, the finding
suggests meeting — instead of an overdue finding about the same tie. A long-distance
parent seen three times a year and called every week has no such rhythm and is never
told to visit.

When calls have plainly *taken the meetings' place* it need not wait for the slipping line
(which allows for a friend's holiday): from ``replaced_multiplier`` x the usual gap of
silence in person, if calls and messages since the last meeting came at least
``replaced_share`` of the old meeting pace, at least ``replaced_min_touches`` of them, and
far faster than the tie's own remote pace before (a Poisson tail under that pace, over
``remote_baseline_days`` before the last meeting, below ``replaced_p``). A holiday pauses
meetings but not the tie's usual calls; a friendship moved to the phone fills the
meetings' slots with calls.
"""

from __future__ import annotations

import datetime as dt

from service.rules.context import Context
from service.rules.finding import Finding
from service.rules.overdue import Assessment, assess, evidence
from service.rules.rate_drop import poisson_cdf
from service.rules.rule import Rule, per_tie
from service.rules.spec import RuleSpec
from service.rules.wording import kinds_phrase, times

__all__ = ["RULE", "DroughtSpec", "evaluate"]


class DroughtSpec(RuleSpec, frozen=True):
    circles: tuple[str, ...]
    max_usual_gap_days: int
    remote_share: float
    replaced_multiplier: float
    replaced_share: float
    replaced_min_touches: int
    replaced_p: float
    remote_baseline_days: int


def replaced(spec: DroughtSpec, a: Assessment, touches: int) -> bool:
    """Calls came in the meetings' place: at their pace, far above the tie's own before."""
    if a.silence < spec.replaced_multiplier * a.usual or touches < spec.replaced_min_touches:
        return False
    if touches < spec.replaced_share * a.silence / a.usual:
        return False
    last = a.tie.last_meeting_at
    assert last is not None  # a tie with a rhythm has met
    since = last - dt.timedelta(days=spec.remote_baseline_days)
    first = a.tie.days[0]
    window = min(spec.remote_baseline_days, max(1, (a.last_met - first).days))
    before = sum(1 for t in a.tie.remote if since <= t.at < last)
    pace = (before + 1) / window  # one pseudo-touch: no calls before is not "never calls"
    return 1.0 - poisson_cdf(touches - 1, pace * max(1, a.gap)) < spec.replaced_p


def _finding(ctx: Context, spec: DroughtSpec, a: Assessment) -> Finding | None:
    tie = a.tie
    if tie.contact.circle not in spec.circles or a.basis != "rhythm":
        return None
    if a.usual > spec.max_usual_gap_days:
        return None
    touches = tie.remote_since_last_meeting()
    if a.level_index < 0 and not replaced(spec, a, len(touches)):
        return None
    if len(touches) < max(spec.min_data_points, spec.remote_share * a.silence / a.usual):
        return None
    kinds: dict[str, int] = {}
    for touch in touches:
        kinds[touch.kind] = kinds.get(touch.kind, 0) + 1
    return RULE.finding(
        spec,
        tie=tie,
        body=spec.text["body"].format(
            count=times(len(touches)).replace(" times", ""),
            kinds=kinds_phrase(ctx.catalog, (t.kind for t in touches)),
            **a.words(),
        ),
        evidence=evidence(a)
        | {
            "circle": tie.contact.circle,
            "remote_since_last_meeting": len(touches),
            "remote_kinds": dict(sorted(kinds.items())),
        },
        data_points=len(touches),
    )


evaluate = per_tie(assess, _finding)


RULE = Rule(
    id="drought",
    rank=10,
    spec=DroughtSpec,
    templates=frozenset({"title", "body"}),
    placeholders=frozenset({"name", "count", "kinds", "usual", "gap", "last_met"}),
    evaluate=evaluate,
)

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
"""

from __future__ import annotations

from service.rules.context import Context
from service.rules.finding import Finding
from service.rules.overdue import Assessment, assess, evidence
from service.rules.rule import Rule, per_tie
from service.rules.spec import RuleSpec
from service.rules.wording import kinds_phrase, times

__all__ = ["RULE", "DroughtSpec", "evaluate"]


class DroughtSpec(RuleSpec, frozen=True):
    circles: tuple[str, ...]
    max_usual_gap_days: int
    remote_share: float


def _finding(ctx: Context, spec: DroughtSpec, a: Assessment) -> Finding | None:
    tie = a.tie
    if tie.contact.circle not in spec.circles or a.basis != "rhythm":
        return None
    if a.usual > spec.max_usual_gap_days or a.level_index < 0:
        return None
    touches = tie.remote_since_last_meeting()
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

"""Rule 4, network narrowing: several of the people met regularly, lapsing at once.

People keep a fixed contact budget (Saramaki 2014), so a broad loss says more about the
person than any one tie. It is read on the ties whose rhythm in person is known
(``rhythm.py``, as every tie rule reads it; usual gap at most ``regular_max_usual_days``),
never on raw monthly counts: a month's count of people met swings by half on its own
(holidays, a busy month), and only a drop far outside that was ever noticed — 12 of 43
shrinking networks on the evaluation (decision 0010).

A regular tie has *lapsed* when its silence in person (away days taken out, as every tie
rule reads it) passed ``lapsed_multiplier`` x its usual gap, and at least
``lapsed_min_days`` (longer than a friend's own holiday), within the last
``lapsed_within_days``. A friend's own holiday is one tie at a time; a trip or weeks of not
logging are away days for every tie; a group that stops meeting is judged as a group
(``context.py``) and its members are left out here. So ``min_lapsed`` regular ties, and at
least ``lapsed_share`` of them, lapsing together is a circle thinning out. The insight names
them (the person's own contacts, in their own app; it is never pushed).

Archived contacts are left out, so archiving someone never looks like a loss; snoozed
contacts are left out too (the person asked for the pause).
"""

from __future__ import annotations

from service.rules.context import Context
from service.rules.finding import Finding
from service.rules.overdue import Assessment, assess
from service.rules.rule import Rule
from service.rules.spec import RuleSpec
from service.rules.wording import count_word, join

__all__ = ["RULE", "NarrowingSpec", "evaluate", "lapsed"]


class NarrowingSpec(RuleSpec, frozen=True):
    regular_max_usual_days: float
    lapsed_multiplier: float
    lapsed_min_days: int
    lapsed_within_days: int
    min_lapsed: int
    lapsed_share: float
    max_names: int


def lapsed(ctx: Context, spec: NarrowingSpec) -> tuple[list[Assessment], int]:
    """(the regular ties that lapsed lately, longest gap first; how many regular ties)."""
    regular = 0
    out: list[Assessment] = []
    for tie in ctx.eligible:
        if tie.group_days:
            continue  # a group that ends is one loss, judged as a group
        a = assess(ctx, tie)
        if a is None or a.basis != "rhythm" or a.usual > spec.regular_max_usual_days:
            continue
        regular += 1
        past = a.silence - max(spec.lapsed_multiplier * a.usual, spec.lapsed_min_days)
        if 0 < past <= spec.lapsed_within_days:
            out.append(a)
    out.sort(key=lambda a: (-a.gap, a.tie.contact.name))
    return out, regular


def evaluate(ctx: Context, spec: NarrowingSpec) -> list[Finding]:
    gone, regular = lapsed(ctx, spec)
    if regular < spec.min_data_points or len(gone) < max(
        spec.min_lapsed, spec.lapsed_share * regular
    ):
        return []
    names = [a.tie.contact.name for a in gone[: spec.max_names]]
    if len(gone) > spec.max_names:
        names.append(f"{count_word(len(gone) - spec.max_names)} more")
    return [
        RULE.finding(
            spec,
            tie=None,
            body=spec.text["body"].format(
                names=join(names),
                share=f"all {count_word(regular)}"
                if len(gone) == regular
                else f"{count_word(len(gone))} of the {count_word(regular)}",
            ),
            evidence={
                "regular_ties": regular,
                "lapsed": [
                    {
                        "contact_id": a.tie.contact.id,
                        "usual_gap_days": round(a.usual, 1),
                        "silence_days": a.silence,
                        "last_in_person": a.last_met.isoformat(),
                    }
                    for a in gone
                ],
                "lapsed_multiplier": spec.lapsed_multiplier,
            },
            data_points=regular,
        )
    ]


RULE = Rule(
    id="narrowing",
    rank=50,
    spec=NarrowingSpec,
    templates=frozenset({"title", "body"}),
    placeholders=frozenset({"names", "share"}),
    evaluate=evaluate,
)

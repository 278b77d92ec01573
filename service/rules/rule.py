"""A rule, declared once: its id, its place, its thresholds' type, its templates, its function.

Each rule module ends with one ``RULE = Rule(...)``; ``registry.py`` finds them, and the
catalog, the engine and reconciliation read everything else from there. Adding a rule is
one module, one TOML table and its test. ``per_tie`` builds the ``evaluate`` of a rule that
judges ties one at a time, so no tie rule repeats the loop over eligible ties.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from service.rules.finding import Finding
from service.rules.spec import RuleSpec

if TYPE_CHECKING:
    from service.rules.context import Context, Tie

__all__ = ["Rule", "per_tie"]

S = TypeVar("S", bound=RuleSpec)
J = TypeVar("J")


@dataclass(frozen=True, slots=True)
class Rule(Generic[S]):
    """One rule of the engine.

    ``rank``: findings are reported in ascending rank, and when several tie rules fire for
    one tie only the lowest rank is kept (the most specific reading: meet in person before
    overdue before fewer meetings). ``templates``: the text keys its catalog entry must
    define (``level_titles`` adds one ``title_<level>`` per level); ``placeholders``: the
    only names those templates may use; ``met_resolves``: whether meeting in person resolves
    its insight.
    """

    id: str
    rank: int
    spec: type[S]
    templates: frozenset[str]
    placeholders: frozenset[str]
    evaluate: Callable[[Context, S], list[Finding]]
    level_titles: bool = False
    #: A meeting in person answers the finding (a silence ended): its insight is resolved.
    #: False for a rule about how meetings go, which a meeting does not answer.
    met_resolves: bool = True

    def required_text(self, spec: RuleSpec) -> set[str]:
        required = set(self.templates)
        if self.level_titles:
            required |= {f"title_{level}" for level in spec.levels}
        return required

    def finding(
        self,
        spec: S,
        *,
        tie: Tie | None,
        body: str,
        evidence: Mapping[str, object],
        data_points: int,
        level: str | None = None,
    ) -> Finding:
        """This rule's finding about ``tie`` (None: about the person) at ``level`` (by default
        its mildest): titled from its catalog (``title_<level>`` with ``level_titles``) with the
        tie's name filled in, and asking for a nudge when its level does."""
        level = spec.levels[0] if level is None else level
        title = spec.text[f"title_{level}" if self.level_titles else "title"]
        if tie is not None:
            title = title.format(name=tie.contact.name)
        contact_id = tie.contact.id if tie is not None else None
        nudge = spec.nudges(level)
        return Finding(self.id, contact_id, level, title, body, evidence, nudge, data_points)


def per_tie(
    judge: Callable[[Context, Tie], J | None],
    finding: Callable[[Context, S, J], Finding | None],
) -> Callable[[Context, S], list[Finding]]:
    """An ``evaluate`` that judges every eligible tie (``judge`` is None when it cannot be
    judged today) and keeps the findings ``finding`` makes of the judgements."""

    def evaluate(ctx: Context, spec: S) -> list[Finding]:
        out = []
        for tie in ctx.eligible:
            judged = judge(ctx, tie)
            found = finding(ctx, spec, judged) if judged is not None else None
            if found is not None:
                out.append(found)
        return out

    return evaluate

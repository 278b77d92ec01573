"""A rule, declared once: its id, its thresholds' type, its templates' contract, its function.

Each rule module ends with one ``RULE = Rule(...)``; ``registry.py`` lists them, and the
catalog, the engine and reconciliation read everything else from there. Adding a rule is
one module plus one TOML table (and one line in the registry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from service.rules.finding import Finding
from service.rules.spec import RuleSpec

if TYPE_CHECKING:
    from service.rules.context import Context

__all__ = ["Rule"]

S = TypeVar("S", bound=RuleSpec)


@dataclass(frozen=True, slots=True)
class Rule(Generic[S]):
    """One rule of the engine.

    ``templates``: the text keys its catalog entry must define (``level_titles`` adds one
    ``title_<level>`` per level); ``placeholders``: the only names those templates may use.
    """

    id: str
    spec: type[S]
    templates: frozenset[str]
    placeholders: frozenset[str]
    evaluate: Callable[[Context, S], list[Finding]]
    level_titles: bool = False

    def required_text(self, spec: RuleSpec) -> set[str]:
        required = set(self.templates)
        if self.level_titles:
            required |= {f"title_{level}" for level in spec.levels}
        return required

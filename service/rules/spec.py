"""What every rule's catalog entry declares, and the person-level settings every rule reads.

A rule's own thresholds are a subclass of ``RuleSpec`` declared in the rule's module (one
file per rule: ``overdue.py`` owns ``OverdueSpec``); the catalog decodes each rule's TOML
table into it and calls ``check`` once at load, so a typo fails at start-up. A subclass
inherits ``frozen`` and ``forbid_unknown_fields``: it declares only its own fields.
"""

from __future__ import annotations

from msgspec import Struct

__all__ = ["PersonSpec", "RuleSpec"]


class RuleSpec(Struct, frozen=True, forbid_unknown_fields=True):
    """What every rule declares: its minimum data, its levels, its nudges and its words."""

    min_data_points: int
    levels: tuple[str, ...]
    nudge_levels: tuple[str, ...]
    text: dict[str, str]

    def severity(self, level: str) -> int:
        """Position of ``level`` among this rule's levels (-1 if unknown)."""
        return self.levels.index(level) if level in self.levels else -1

    def nudges(self, level: str) -> bool:
        return level in self.nudge_levels

    def check(self, name: str) -> None:
        """Raise ValueError naming the rule if the numbers cannot work together."""
        if self.min_data_points < 1:
            raise ValueError(f"{name}.min_data_points must be at least 1")
        if not self.levels:
            raise ValueError(f"{name}.levels must not be empty")
        unknown = set(self.nudge_levels) - set(self.levels)
        if unknown:
            raise ValueError(f"{name}.nudge_levels names unknown levels {sorted(unknown)}")


class PersonSpec(Struct, frozen=True, forbid_unknown_fields=True):
    """The person-level view every tie rule consults first (``person.py``, ``context.py``)."""

    lookback_days: int
    min_people: int
    away_factor: float
    min_away_days: int
    max_away_discount_days: int
    group_meets_without: int

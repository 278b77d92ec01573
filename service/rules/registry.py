"""Every rule the engine knows, in the order findings are reported.

The one list to touch when adding a rule (after writing its module and its TOML table).
"""

from __future__ import annotations

from typing import Any

from service.rules import drought, narrowing, overdue, rate_drop, self_report
from service.rules.rule import Rule

__all__ = ["RULES", "RULE_IDS", "TIE_PRIORITY"]

RULES: tuple[Rule[Any], ...] = (
    overdue.RULE,
    rate_drop.RULE,
    drought.RULE,
    narrowing.RULE,
    self_report.RULE,
)
RULE_IDS: tuple[str, ...] = tuple(rule.id for rule in RULES)

#: Rules about one tie, most specific first: only the first that fires is reported, so a
#: friend who moved to calls gets one suggestion to meet, not three insights.
TIE_PRIORITY = (drought.RULE_ID, overdue.RULE_ID, rate_drop.RULE_ID)

"""Evaluate every enabled rule over one person's history: ``evaluate(history, now, settings)``.

Pure and deterministic: the same history, ``now``, settings and catalog give the same
findings in the same order (catalog rule order, then contact id). Nothing here reads a
clock, the environment or a database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from service.rules import drought, narrowing, overdue, rate_drop, self_report
from service.rules.catalog import RULE_IDS, Catalog, default_catalog
from service.rules.context import Context, build_context
from service.rules.finding import Finding
from service.rules.history import History, PersonSettings

__all__ = ["RULES", "evaluate"]

#: Rule id -> rule function, in the order findings are reported.
RULES: dict[str, Callable[[Context], list[Finding]]] = {
    overdue.RULE_ID: overdue.evaluate,
    rate_drop.RULE_ID: rate_drop.evaluate,
    drought.RULE_ID: drought.evaluate,
    narrowing.RULE_ID: narrowing.evaluate,
    self_report.RULE_ID: self_report.evaluate,
}
assert tuple(RULES) == RULE_IDS, "the catalog and the engine must know the same rules"


def evaluate(
    history: History,
    now: dt.datetime,
    settings: PersonSettings,
    catalog: Catalog | None = None,
) -> list[Finding]:
    """Every finding for this person at ``now`` (aware), skipping rules they switched off.

    ``today`` and every interaction's day are taken in ``settings.time_zone``; snoozed
    (through today) and archived contacts never trigger.
    """
    ctx = build_context(history, now, settings, catalog or default_catalog())
    findings: list[Finding] = []
    for rule_id, rule in RULES.items():
        if rule_id not in settings.rules_disabled:
            findings.extend(rule(ctx))
    return findings

"""Evaluate every enabled rule over one person's history: ``evaluate(history, now, settings)``.

Pure and deterministic: the same history, ``now``, settings and catalog give the same
findings in the same order (the rules' rank, then contact id). Nothing here reads a
clock, the environment or a database.

Isolated: a rule that raises does not stop the person's evaluation. The other rules still
run, and the failed rule is run again tie by tie, so only the tie it cannot evaluate is
left out (logged with the rule and the exception's type, never the person's data).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

from service.rules.catalog import Catalog, default_catalog
from service.rules.context import Context, build_context
from service.rules.finding import Finding
from service.rules.history import History, PersonSettings
from service.rules.registry import rules
from service.rules.rule import Rule

__all__ = ["evaluate"]

log = logging.getLogger("kith.rules")


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
    ranked = rules()
    rank = {rule.id: rule.rank for rule in ranked}
    for rule in ranked:
        if rule.id not in settings.rules_disabled:
            findings.extend(_isolated(rule, ctx))
    # One insight per tie: the most specific reading wins (meet in person > overdue > fewer
    # meetings), so a friend who moved to calls gets one suggestion, not three.
    best: dict[str, int] = {}
    for f in findings:
        if f.contact_id is not None:
            best[f.contact_id] = min(best.get(f.contact_id, rank[f.rule]), rank[f.rule])
    return [f for f in findings if f.contact_id is None or rank[f.rule] == best[f.contact_id]]


def _isolated(rule: Rule[Any], ctx: Context) -> list[Finding]:
    """``rule`` over ``ctx``; if it raises, the rule once per eligible tie, keeping each
    tie's own findings from the runs that succeed (a finding about the whole network needs
    the run over every tie, so it is left out with the failure)."""
    spec = ctx.catalog.spec_for(rule)
    try:
        return rule.evaluate(ctx, spec)
    except Exception as exc:  # one rule's bug must not stop the others
        log.warning("rule %s failed (%s): evaluating it tie by tie", rule.id, type(exc).__name__)
    found: list[Finding] = []
    skipped = 0
    for tie in ctx.eligible:
        try:
            one = rule.evaluate(dataclasses.replace(ctx, eligible=(tie,)), spec)
        except Exception:
            skipped += 1
            continue
        found.extend(f for f in one if f.contact_id == tie.contact.id)
    if skipped:
        log.warning(
            "rule %s left out %d of %d ties it cannot evaluate", rule.id, skipped, len(ctx.eligible)
        )
    return found

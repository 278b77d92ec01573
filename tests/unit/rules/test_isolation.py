"""One tie, one stored value, never stops a person's evaluation (issue 18, item 2).

Poison values are rows stored before the edge refused them (an event time before year 1
or in year 10000 in UTC) and a value one rule does not anticipate: the rest of the
person's insights must still come out exactly as without them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import pytest

from service.rules import engine
from service.rules.context import Context
from service.rules.finding import Finding
from service.rules.registry import rules
from service.rules.rule import Rule
from tests.unit.rules.timeline import ana_stops

POISON_TIMES = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00")


def _key(findings: list[Finding]) -> list[tuple[str, str | None, str]]:
    return [(f.rule, f.contact_id, f.body) for f in findings]


def _rule(rule_id: str) -> Rule[Any]:
    return next(r for r in rules() if r.id == rule_id)


def _replace(
    monkeypatch: pytest.MonkeyPatch, rule_id: str, evaluate: Callable[[Context, Any], list[Finding]]
) -> None:
    """The engine with ``rule_id``'s function swapped for ``evaluate`` (a rule with a bug)."""
    replaced = tuple(
        dataclasses.replace(r, evaluate=evaluate) if r.id == rule_id else r for r in rules()
    )
    monkeypatch.setattr(engine, "rules", lambda: replaced)


def test_stored_event_times_no_reader_can_hold_are_left_out() -> None:
    clean = ana_stops().evaluate()
    life = ana_stops()
    for n, at in enumerate(POISON_TIMES):
        ana = "contact-ana"
        life.interactions[f"poison-{n}"] = {"contact_ids": [ana], "kind": "call", "occurred_at": at}
        life.reflections[f"poison-r{n}"] = {"occurred_at": at, "ucla3": [3, 3, 3]}
    assert _key(life.evaluate()) == _key(clean) != []


def test_a_rule_that_fails_on_one_tie_still_evaluates_the_others(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    life = ana_stops()
    bea = life.contact("Bea", circle="inner", cadence_days=10**9)  # the value the bug trips on
    life.every(bea, 9, first=400, last=31)
    clean = [f for f in life.evaluate() if f.contact_id != bea]
    assert ("overdue", "contact-ana") in [(f.rule, f.contact_id) for f in clean]

    real = _rule("overdue")

    def fragile(ctx: Context, spec: Any) -> list[Finding]:
        if any(t.contact.cadence_days == 10**9 for t in ctx.eligible):
            raise OverflowError("date value out of range")
        return real.evaluate(ctx, spec)

    _replace(monkeypatch, "overdue", fragile)
    with caplog.at_level(logging.WARNING, logger="kith.rules"):
        findings = life.evaluate()
    assert _key(findings) == _key(clean)  # Ana's insight, and every other rule's, intact
    assert "rule overdue left out 1 of 2 ties" in caplog.text
    assert "Bea" not in caplog.text
    assert "contact-bea" not in caplog.text


def test_a_rule_that_fails_for_the_whole_person_leaves_the_other_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    life = ana_stops()
    life.reflect(2, ucla3=[3, 3, 3])  # lonely: the self-report rule speaks
    before = life.evaluate()
    assert {f.rule for f in before} == {"overdue", "self_report"}

    def broken(_: Context, __: Any) -> list[Finding]:
        raise ZeroDivisionError

    _replace(monkeypatch, "overdue", broken)
    assert _key(life.evaluate()) == _key([f for f in before if f.rule != "overdue"])

"""Laws of the rules engine over generated lives (Hypothesis, derandomized: same run every time).

If one of these broke, a person could be nudged about a friend they saw an hour ago, get
different insights from two identical sweeps, be told something from a single data point,
or hear about a contact they archived or snoozed.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from service.rules import (
    Finding,
    History,
    PersonSettings,
    StoredInsight,
    default_catalog,
    evaluate,
    load_catalog,
    reconcile,
    rule_ids,
)
from service.rules.catalog import Catalog
from service.rules.overdue import OverdueSpec
from tests.unit.rules.timeline import default_catalog_text

# Found in no template, so any mention in a finding is a leak.
NAMES = ("Qxa", "Qxb", "Qxc", "Qxd", "Qxe", "Qxf", "Qxg", "Qxh")
ZONES = ("Europe/Lisbon", "Asia/Tokyo", "America/Los_Angeles", "UTC")
KINDS = ("in_person", "in_person", "call", "text", "video")
BASE = dt.datetime(2025, 6, 2, 9, 0, tzinfo=dt.UTC)


@dataclass
class Life:
    contacts: dict[str, dict[str, Any]]
    interactions: dict[str, dict[str, Any]]
    reflections: dict[str, dict[str, Any]]
    settings_fields: dict[str, Any]
    now: dt.datetime

    def history(self) -> History:
        return History.from_fields(self.contacts, self.interactions, self.reflections)

    def settings(self) -> PersonSettings:
        return PersonSettings.from_fields(self.settings_fields)

    def evaluate(self, catalog: Catalog | None = None) -> list[Finding]:
        return evaluate(self.history(), self.now, self.settings(), catalog)

    @property
    def today(self) -> dt.date:
        return self.now.astimezone(self.settings().zone).date()


# Strategies built once: building them inside the composite costs more than the rules.
TIES = st.tuples(
    st.sampled_from(["inner", "close", "social", "wider"]),  # circle
    st.one_of(st.none(), st.integers(1, 60)),  # cadence_days
    st.integers(0, 3),  # 0: archived
    st.one_of(st.none(), st.integers(-3, 3)),  # snoozed until today + n days
    st.sampled_from([1, 2, 3, 7, 9, 14, 20, 30, 45]),  # regular step, days
    st.integers(0, 800),  # the series ends this many days ago
    st.sampled_from(KINDS),
    st.integers(0, 40),  # how many in the series
)
STRAYS = st.lists(
    st.tuples(
        st.lists(st.integers(0, len(NAMES) - 1), min_size=1, max_size=3, unique=True),
        st.integers(-2000, 700 * 1440),  # minutes ago; negative: planned ahead
        st.sampled_from(KINDS),
    ),
    max_size=15,
)
ANSWERS = st.lists(
    st.tuples(
        st.integers(0, 120),
        st.one_of(st.none(), st.lists(st.integers(1, 3), min_size=3, max_size=3)),
        st.one_of(st.none(), st.lists(st.integers(0, 5), min_size=5, max_size=5)),
    ),
    max_size=3,
)


@st.composite
def lives(draw: st.DrawFn) -> Life:
    """A person with a few ties: regular series (to reach every rule) plus stray contacts."""
    rnd = random.Random(draw(st.integers(0, 2**32)))  # cheap time-of-day jitter, replayable
    zone = ZoneInfo(draw(st.sampled_from(ZONES)))
    now = BASE + dt.timedelta(minutes=draw(st.integers(0, 60 * 24 * 365)))
    today = now.astimezone(zone).date()
    contacts: dict[str, dict[str, Any]] = {}
    interactions: dict[str, dict[str, Any]] = {}

    def log(ids: list[str], minutes_ago: int, kind: str) -> None:
        at = (now - dt.timedelta(minutes=minutes_ago)).astimezone(zone)
        interactions[f"ix-{len(interactions):06d}"] = {
            "contact_ids": ids,
            "kind": kind,
            "occurred_at": at.isoformat(),
        }

    ties = draw(st.lists(TIES, min_size=1, max_size=len(NAMES)))
    for i, (circle, cadence, keep, snooze, step, end, kind, count) in enumerate(ties):
        cid = f"contact-{i:03d}"
        contacts[cid] = {
            "display_name": NAMES[i],
            "circle": circle,
            "cadence_days": cadence,
            "archived": keep == 0,
            "snoozed_until": (
                None if snooze is None else (today + dt.timedelta(days=snooze)).isoformat()
            ),
        }
        for n in range(count):
            log([cid], (end + n * step) * 1440 + rnd.randrange(1440), kind)
    for group, minutes_ago, kind in draw(STRAYS):
        ids = sorted({f"contact-{g:03d}" for g in group if g < len(ties)})
        if ids:
            log(ids, minutes_ago, kind)
    reflections: dict[str, dict[str, Any]] = {}
    for r, (days_ago, ucla3, who5) in enumerate(draw(ANSWERS)):
        at = now - dt.timedelta(days=days_ago)
        reflections[f"rf-{r:06d}"] = {"occurred_at": at.isoformat(), "ucla3": ucla3, "who5": who5}
    return Life(contacts, interactions, reflections, {"time_zone": zone.key}, now)


checks = settings(max_examples=200, derandomize=True, deadline=None)


def overdue_level(findings: list[Finding], cid: str) -> int:
    spec = default_catalog().spec("overdue")
    levels = [spec.severity(f.level) for f in findings if f.dedupe_key == ("overdue", cid)]
    return max(levels, default=-1)


@checks
@given(lives(), st.data())
def test_meeting_today_never_makes_overdue_worse_and_silences_that_tie(
    life: Life, data: st.DataObject
) -> None:
    cid = data.draw(st.sampled_from(sorted(life.contacts)))
    before = life.evaluate()
    life.interactions["ix-met-today"] = {
        "contact_ids": [cid],
        "kind": "in_person",
        "occurred_at": life.now.isoformat(),
    }
    after = life.evaluate()
    assert overdue_level(after, cid) <= overdue_level(before, cid)
    assert [f.rule for f in after if f.contact_id == cid] == []


@checks
@given(lives())
def test_evaluation_is_deterministic_and_ignores_input_order(life: Life) -> None:
    first = life.evaluate()
    assert life.evaluate() == first
    shuffled = Life(
        dict(reversed(life.contacts.items())),
        dict(reversed(life.interactions.items())),
        dict(reversed(life.reflections.items())),
        life.settings_fields,
        life.now,
    )
    assert shuffled.evaluate() == first


@checks
@given(lives())
def test_reading_the_stored_json_text_gives_the_same_history(life: Life) -> None:
    def text(rows: dict[str, dict[str, Any]]) -> dict[str, bytes]:
        return {k: msgspec.json.encode(v) for k, v in rows.items()}

    from_json = History.from_json(
        text(life.contacts), text(life.interactions), text(life.reflections)
    )
    assert from_json == life.history()


def in_person_days(life: Life, cid: str) -> list[dt.date]:
    zone = life.settings().zone
    return sorted(
        {
            dt.datetime.fromisoformat(f["occurred_at"]).astimezone(zone).date()
            for f in life.interactions.values()
            if cid in f["contact_ids"]
            and f["kind"] == "in_person"
            and dt.datetime.fromisoformat(f["occurred_at"]) <= life.now
        }
    )


@checks
@given(lives())
def test_no_rule_fires_from_fewer_data_points_than_it_declares(life: Life) -> None:
    catalog = default_catalog()
    overdue = catalog.spec("overdue")
    assert isinstance(overdue, OverdueSpec)
    for finding in life.evaluate():
        spec = catalog.spec(finding.rule)
        assert finding.data_points >= spec.min_data_points
        if finding.rule == "overdue":
            assert finding.contact_id is not None
            days = in_person_days(life, finding.contact_id)
            assert finding.data_points == len(days)
            if finding.evidence["basis"] == "rhythm":  # a known rhythm: enough gaps
                assert finding.evidence["episode_gaps"] >= overdue.min_gaps
                assert len(days) - 1 >= overdue.min_gaps
            else:  # an unknown one speaks only through the person's own cadence
                assert life.contacts[finding.contact_id]["cadence_days"] is not None
        if finding.rule == "rate_drop":
            assert finding.contact_id is not None
            days = in_person_days(life, finding.contact_id)
            assert len(days) - 1 >= finding.data_points >= spec.min_data_points


STARVED = load_catalog(
    default_catalog_text().replace("min_data_points = ", "min_data_points = 100")
)


@checks
@given(lives())
def test_raising_every_declared_minimum_silences_every_rule(life: Life) -> None:
    assert life.evaluate(STARVED) == []


@checks
@given(lives())
def test_findings_never_mention_archived_or_snoozed_contacts(life: Life) -> None:
    today = life.today
    hidden = {
        cid: fields["display_name"]
        for cid, fields in life.contacts.items()
        if fields["archived"]
        or (fields["snoozed_until"] is not None and fields["snoozed_until"] >= today.isoformat())
    }
    for finding in life.evaluate():
        assert finding.contact_id not in hidden
        for name in hidden.values():
            assert name not in finding.title
            assert name not in finding.body


@checks
@given(lives())
def test_writing_the_plan_back_leaves_nothing_to_do(life: Life) -> None:
    history, findings = life.history(), life.evaluate()
    plan = reconcile([], findings, history, life.now)
    assert {c.finding.dedupe_key for c in plan.create} == {f.dedupe_key for f in findings}
    stored = [StoredInsight.from_fields(c.insight_id, c.fields) for c in plan.create]
    assert reconcile([s for s in stored if s], findings, history, life.now).empty
    assert all(f.rule in rule_ids() for f in findings)

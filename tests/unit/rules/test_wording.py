"""Every template's output, read the way a person reads a notification in one second.

Each tie insight must give the usual rhythm, the current gap with its unit, the date of
the last meeting, and an invitation — never guilt. If one of these broke, someone would
read "it's been 35." or "Don't lose touch with Ana" on their lock screen.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest

from service.rules import Finding, default_catalog
from service.rules.registry import rules
from service.rules.wording import duration, every, long_date
from tests.unit.rules.timeline import NOW, Timeline, ana_stops

DAY = dt.timedelta(days=1)
GAP = re.compile(r"it's been \d+ (days|weeks|months|years)")
DATE = re.compile(r"on \d{1,2} (January|February|March|April|May|June|July|August|September"
                  r"|October|November|December) \d{4}")  # fmt: skip
RHYTHM = re.compile(r"every (day|\d+ days|week|\d+ weeks|month|\d+ months)")
GUILT = ("don't lose", "lose touch", "you should", "you must", "neglect", "failed", "forgot")


def stretching_friend() -> Timeline:
    """Weekly for a year, then each gap longer than the last."""
    life = Timeline()
    eve = life.contact("Eve", circle="social")
    life.every(eve, 7, first=400, last=120)
    for days_ago in (108, 92, 70, 40):
        life.log(eve, days_ago)
    return life


def moved_to_calls() -> Timeline:
    life = Timeline()
    cleo = life.contact("Cleo", circle="close")
    life.every(cleo, 7, first=539, last=70)
    life.every(cleo, 4, first=66, last=2, kind="call")
    return life


def cadence_only() -> Timeline:
    life = Timeline()
    life.log(life.contact("Fay", circle="close", cadence_days=14), 70)
    return life


def tie_findings() -> list[tuple[str, Finding]]:
    """One finding per tie template: (template key, finding)."""
    out: list[tuple[str, Finding]] = []
    for gap, level in ((58, "slipping"), (80, "at_risk"), (105, "dormant")):
        [f] = ana_stops().evaluate(NOW + (gap - 58) * DAY)
        assert f.level == level
        out.append((f"overdue.body_rhythm/{level}", f))
    [f] = cadence_only().evaluate()
    out.append(("overdue.body_cadence", f))
    [f] = stretching_friend().evaluate()
    out.append(("rate_drop.body_stretch", f))
    [f] = moved_to_calls().evaluate()
    out.append(("drought.body", f))
    return out


@pytest.mark.parametrize(
    ("key", "finding"), tie_findings(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_tie_insight_gives_rhythm_gap_with_unit_last_meeting_and_an_invitation(
    key: str, finding: Finding
) -> None:
    body = finding.body
    assert RHYTHM.search(body), body
    assert GAP.search(body) or re.search(r"\d+ (days|weeks|months) since you met", body), body
    assert DATE.search(body), body
    assert body.rstrip().endswith("?"), body  # it ends by inviting, not by telling off
    text = (finding.title + " " + body).lower()
    assert not [g for g in GUILT if g in text], text
    assert finding.rule == key.split(".", maxsplit=1)[0]
    last = dt.date.fromisoformat(finding.evidence["last_in_person"])
    assert f"on {long_date(last)}" in body  # the date shown is the last meeting's
    if key == "rate_drop.body_stretch":
        assert "lately the gaps have grown (" in body


def test_the_rate_drop_template_for_fewer_meetings_names_the_window_and_the_count() -> None:
    spec = default_catalog().spec("rate_drop")
    body = spec.text["body"].format(
        name="Eve", usual="week", window="12 weeks", recent="twice", expected="12 times",
        gap="4 weeks", last_met="3 May 2025",
    )  # fmt: skip
    assert body == (
        "You used to see Eve about every week; in the last 12 weeks it was twice, and it's been "
        "4 weeks since you met on 3 May 2025. Up for suggesting a time to meet?"
    )


def test_no_template_anywhere_in_the_catalog_scolds() -> None:
    catalog = default_catalog()
    for rule in rules():
        for key, template in catalog.spec(rule.id).text.items():
            lowered = template.lower()
            assert not [g for g in GUILT if g in lowered], f"{rule.id}.{key}: {template}"


@pytest.mark.parametrize(
    ("days", "words"),
    [(1, "day"), (3, "3 days"), (7, "week"), (9, "9 days"), (14, "2 weeks"), (30, "4 weeks"),
     (45, "6 weeks"), (60, "2 months"), (91, "3 months"), (365, "12 months")],
)  # fmt: skip
def test_the_usual_rhythm_reads_in_the_unit_people_think_in(days: int, words: str) -> None:
    assert every(days) == words


@pytest.mark.parametrize(
    ("days", "words"),
    [(1, "1 day"), (20, "20 days"), (21, "3 weeks"), (41, "5 weeks"), (60, "8 weeks"),
     (61, "2 months"), (120, "3 months"), (800, "2 years")],
)  # fmt: skip
def test_a_gap_always_carries_its_unit_and_never_overstates(days: int, words: str) -> None:
    assert duration(days) == words

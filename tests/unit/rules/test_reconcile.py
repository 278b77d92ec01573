"""From findings to stored insights: one per (rule, contact), withdrawn when people meet.

These are what a person notices over days: the insight about Ana appears once, its
numbers move as the silence grows, it disappears when they meet, and a dismissed one
does not come straight back.
"""

from __future__ import annotations

import datetime as dt

import pytest

from service.rules import (
    Plan,
    StoredInsight,
    default_catalog,
    insight_id,
    load_catalog,
    reconcile,
)
from tests.unit.rules.timeline import NOW, Timeline, ana_stops, default_catalog_text

DAY = dt.timedelta(days=1)


def step(life: Timeline, stored: list[StoredInsight], now: dt.datetime) -> Plan:
    return reconcile(stored, life.evaluate(now), life.history(), now)


def raised(life: Timeline, status: str = "open") -> StoredInsight:
    """The insight about Ana as stored after today's sweep, with the given status."""
    [create] = step(life, [], NOW).create
    row = StoredInsight.from_fields(create.insight_id, create.fields | {"status": status})
    assert row is not None
    return row


def test_a_new_finding_creates_one_insight_with_a_nudge_request_and_a_stable_id() -> None:
    life = ana_stops()
    plan = step(life, [], NOW)
    [create] = plan.create
    assert (plan.update, plan.resolve) == ((), ())
    assert create.nudge
    assert create.insight_id == insight_id(("overdue", "contact-ana"), NOW)
    assert create.insight_id == step(life, [], NOW).create[0].insight_id  # a retry: same row
    assert create.fields == {
        "rule": "overdue",
        "contact_id": "contact-ana",
        "level": "slipping",
        "title": "Time to see Ana?",
        "body": "You usually see Ana every 9 days; it's been 8 weeks since you met on 5 April "
        "2025 (since then, two calls). Up for suggesting a coffee or a walk?",
        "evidence": dict(create.finding.evidence),
        "status": "open",
        "raised_at": "2025-06-02T08:00:00+00:00",
    }


def test_re_evaluating_the_same_day_changes_nothing() -> None:
    life = ana_stops()
    assert step(life, [raised(life)], NOW).empty


def test_the_next_day_updates_the_same_insight_instead_of_adding_another() -> None:
    life = ana_stops()
    row = raised(life)
    [only_numbers] = step(life, [row], NOW + DAY).update  # 59 days: still "8 weeks"
    assert set(only_numbers.fields) == {"evidence"}
    assert only_numbers.fields["evidence"]["gap_days"] == 59
    plan = step(life, [row], NOW + 5 * DAY)
    assert plan.create == ()
    [update] = plan.update
    assert update.insight_id == row.id
    assert update.fields["body"].startswith("You usually see Ana every 9 days; it's been 2 months")
    assert set(update.fields) == {"body", "evidence"}
    assert not update.escalated


def test_a_contact_met_in_person_after_the_insight_was_raised_resolves_it() -> None:
    life = ana_stops()
    row = raised(life)
    life.log("contact-ana", 0, hour=18)  # that evening, after the 09:00 sweep
    plan = step(life, [row], NOW + DAY)
    assert plan.resolve[0].insight_id == row.id
    assert plan.resolve[0].reason == "met_in_person"
    assert plan.resolve[0].fields == {"status": "resolved"}
    assert (plan.create, plan.update) == ((), ())


def test_an_escalation_reopens_a_seen_insight_and_asks_for_a_nudge() -> None:
    life = ana_stops()
    row = raised(life, status="seen")
    [update] = step(life, [row], NOW + 18 * DAY).update  # 76 days: past the at-risk line
    assert update.escalated
    assert update.nudge
    assert update.fields["status"] == "open"
    assert update.fields["level"] == "at_risk"


def test_a_dismissed_insight_is_not_raised_again_until_it_escalates() -> None:
    life = ana_stops()
    row = raised(life, status="dismissed")
    assert step(life, [row], NOW + DAY).empty
    [create] = step(life, [row], NOW + 18 * DAY).create
    assert create.finding.level == "at_risk"


def test_a_dismissed_insight_comes_back_after_the_reraise_period() -> None:
    life = ana_stops()
    row = raised(life, status="dismissed")
    toml = default_catalog_text().replace("reraise_after_days = 30", "reraise_after_days = 3")
    now = NOW + 4 * DAY
    plan = reconcile([row], life.evaluate(now), life.history(), now, load_catalog(toml))
    assert [c.finding.level for c in plan.create] == ["slipping"]


def earlier(rule: str, level: str, status: str, days_before: int) -> StoredInsight:
    """An insight about Ana raised ``days_before`` today's sweep."""
    return StoredInsight(
        f"ins_earlier_{rule}", rule, "contact-ana", level, status, NOW - days_before * DAY
    )


@pytest.mark.parametrize("status", ["open", "resolved"])
def test_the_same_silence_read_by_another_rule_is_shown_but_not_pushed_again(status: str) -> None:
    # Five days ago Ana's silence was "meet in person?" (calls went on); today it reads as
    # overdue. Whether the old insight is still open or already withdrawn, the person has
    # been told about this silence: the new reading is in the app, not on the lock screen.
    life = ana_stops()
    plan = step(life, [earlier("drought", "suggest", status, 5)], NOW)
    [create] = plan.create
    assert (create.finding.rule, create.finding.nudge, create.nudge) == ("overdue", True, False)
    if status == "open":
        assert [r.reason for r in plan.resolve] == ["no_longer_applies"]


def test_a_silence_that_came_back_after_a_re_reading_is_not_pushed_twice() -> None:
    # Withdrawn three days ago when a day of meeting nobody became an away day; back today.
    life = ana_stops()
    [create] = step(life, [earlier("overdue", "slipping", "resolved", 3)], NOW).create
    assert not create.nudge


def test_a_new_silence_after_meeting_pushes_again() -> None:
    # The earlier insight was raised 60 days ago; Ana came round 50 days ago.
    life = ana_stops()
    [create] = step(life, [earlier("overdue", "slipping", "resolved", 60)], NOW).create
    assert create.nudge


def test_worse_news_about_a_known_silence_pushes() -> None:
    life = ana_stops()
    now = NOW + 18 * DAY  # 76 days: past the at-risk line
    stored = [earlier("overdue", "slipping", "resolved", 5)]
    [create] = reconcile(stored, life.evaluate(now), life.history(), now).create
    assert (create.finding.level, create.nudge) == ("at_risk", True)


def test_a_known_silence_pushes_again_after_the_reraise_period() -> None:
    life = ana_stops()
    [create] = step(life, [earlier("drought", "suggest", "resolved", 30)], NOW).create
    assert create.nudge


@pytest.mark.parametrize("change", ["archived", "snoozed", "rule_off"])
def test_an_insight_whose_finding_no_longer_holds_is_withdrawn(change: str) -> None:
    life = ana_stops()
    row = raised(life)
    if change == "archived":
        life.contacts["contact-ana"]["archived"] = True
    elif change == "snoozed":
        life.contacts["contact-ana"]["snoozed_until"] = "2025-07-01"
    else:
        life.settings_fields["rules_disabled"] = ["overdue"]
    [resolve] = step(life, [row], NOW + DAY).resolve
    assert (resolve.insight_id, resolve.reason) == (row.id, "no_longer_applies")


def test_duplicates_from_a_race_collapse_to_the_newest() -> None:
    life = ana_stops()
    row = raised(life)
    older = StoredInsight(
        "ins_older_duplicate", row.rule, row.contact_id, row.level, "open", row.raised_at - DAY
    )
    plan = step(life, [older, row], NOW)
    assert [(r.insight_id, r.reason) for r in plan.resolve] == [
        ("ins_older_duplicate", "duplicate")
    ]
    assert (plan.create, plan.update) == ((), ())


def test_insights_of_other_rules_and_resolved_ones_are_left_alone() -> None:
    life = ana_stops()
    foreign = StoredInsight("ins_checkin_0001", "missed_check_in", None, "alert", "open", NOW)
    done = StoredInsight("ins_done_000001", "overdue", "contact-ana", "slipping", "resolved", NOW)
    plan = step(life, [foreign, done], NOW)
    assert plan.resolve == ()
    assert len(plan.create) == 1


def test_stored_rows_that_are_not_insights_of_this_engine_are_skipped() -> None:
    assert StoredInsight.from_fields("ins_x0000001", {"rule": "overdue"}) is None
    assert StoredInsight.from_fields("ins_x0000001", {"rule": "x", "raised_at": "soon"}) is None
    assert default_catalog().reraise_after_days == 30


def test_the_settings_schema_names_exactly_the_catalog_rules() -> None:
    """A person can switch off every rule the engine has, and only those."""
    import typing

    from schemas.tables import RuleId
    from service.rules import rule_ids

    assert set(typing.get_args(RuleId)) == set(rule_ids())

"""Synthetic timelines with the exact insights a person would see on their phone.

Each test is a small life: a friend who stops coming round, one who meets in spells,
one who moves to calls only, a network that thins out. If one of these broke, someone
would get a nudge about a friend they saw yesterday, or no word about one they lost.
"""

from __future__ import annotations

import datetime as dt

import pytest

from service.rules import Finding, History, default_catalog, load_catalog
from service.rules.rate_drop import poisson_cdf
from tests.unit.rules.timeline import NOW, TODAY, Timeline, ana_stops, default_catalog_text

DAY = dt.timedelta(days=1)


def summary(findings: list[Finding]) -> list[tuple[str, str | None, str, str, str]]:
    return [(f.rule, f.contact_id, f.level, f.title, f.body) for f in findings]


def test_a_weekly_friend_who_stops_is_slipping_with_the_numbers_and_the_calls() -> None:
    [finding] = ana_stops().evaluate()
    assert summary([finding]) == [
        (
            "overdue",
            "contact-ana",
            "slipping",
            "Time to see Ana?",
            "You usually see Ana every 9 days; it's been 31 — and the last four were calls.",
        )
    ]
    assert finding.dedupe_key == ("overdue", "contact-ana")
    assert finding.nudge
    assert finding.evidence == {
        "basis": "rhythm",
        "gap_days": 31,
        "last_in_person": "2025-05-02",
        "in_person_days": 42,
        "base_days": 9.0,
        "thresholds_days": [18.0, 36.0, 72.0],
        "remote_since_last_meeting": 4,
        "median_gap_days": 9.0,
        "usual_longest_gap_days": 9,
    }


@pytest.mark.parametrize(
    ("gap", "level", "title"),
    [
        (18, None, None),
        (19, "slipping", "Time to see Ana?"),
        (36, "slipping", "Time to see Ana?"),
        (37, "at_risk", "It's been a while since you saw Ana"),
        (72, "at_risk", "It's been a while since you saw Ana"),
        (73, "dormant", "Don't lose touch with Ana"),
    ],
)
def test_the_level_climbs_at_two_four_and_eight_times_the_usual_gap(
    gap: int, level: str | None, title: str | None
) -> None:
    findings = [f for f in ana_stops().evaluate(NOW + (gap - 31) * DAY) if f.rule == "overdue"]
    assert [(f.level, f.title) for f in findings] == ([(level, title)] if level else [])


def ben_in_spells() -> Timeline:
    """Ben: three days running, then six weeks apart, for two years; last spell 35 days ago."""
    life = Timeline()
    ben = life.contact("Ben", circle="close")
    for spell in range(17):
        for day in (37, 36, 35):
            life.log(ben, day + 42 * spell)
    return life


def test_a_bursty_friends_normal_silence_raises_nothing() -> None:
    assert ben_in_spells().evaluate() == []


def test_without_the_burst_guard_the_median_alone_would_cry_wolf() -> None:
    toml = default_catalog_text().replace("burst_quantile = 0.9", "burst_quantile = 0.0").encode()
    [finding] = ben_in_spells().evaluate(catalog=load_catalog(toml))
    assert (finding.rule, finding.level) == ("overdue", "dormant")  # median gap: one day


def test_a_bursty_friend_is_flagged_once_the_silence_outlasts_every_usual_break() -> None:
    findings = ben_in_spells().evaluate(NOW + 15 * DAY)
    assert summary(findings) == [
        (
            "overdue",
            "contact-ben",
            "slipping",
            "Time to see Ben?",
            "You and Ben tend to meet in spells, with breaks of up to 40 days; it's been 50.",
        )
    ]


def test_a_friend_who_moves_to_calls_only_gets_overdue_rate_drop_and_drought() -> None:
    life = Timeline()
    cleo = life.contact("Cleo", circle="close")
    life.every(cleo, 7, first=539, last=70)
    life.every(cleo, 4, first=66, last=2, kind="call")
    findings = life.evaluate()
    assert summary(findings) == [
        (
            "overdue",
            "contact-cleo",
            "dormant",
            "Don't lose touch with Cleo",
            "You usually see Cleo every 7 days; it's been 70 — and the last 17 were calls.",
        ),
        (
            "rate_drop",
            "contact-cleo",
            "notice",
            "Seeing less of Cleo",
            "Over the past year you saw Cleo about 8 times every 60 days; "
            "in the last 60 days, not at all.",
        ),
        (
            "drought",
            "contact-cleo",
            "suggest",
            "Meet Cleo in person?",
            "You've been in touch with Cleo 15 times in the last 60 days (calls), but you "
            "haven't met in person since 24 March 2025. Time together in person does more for "
            "both of you than calls and messages.",
        ),
    ]
    rate = findings[1].evidence
    assert (rate["recent_in_person"], rate["baseline_in_person"]) == (0, 51)
    assert rate["p_value"] == pytest.approx(poisson_cdf(0, 51 / 365 * 60), abs=1e-6)


def shrinking_network(still_in_touch: int, archived: int = 0, months: int = 7) -> Timeline:
    """Ten friends texted every ten days for seven months; lately only a few."""
    life = Timeline()
    names = ["Ada", "Bo", "Cy", "Di", "Ed", "Flo", "Gil", "Hal", "Ivy", "Jo"]
    for i, name in enumerate(names):
        cid = life.contact(name, circle="social", archived=i >= len(names) - archived)
        life.every(cid, 10, first=months * 30 + 5 - i, last=30, kind="text")
        if i < still_in_touch:
            life.log(cid, 5, "text")
    return life


def test_a_network_that_shrinks_by_more_than_thirty_percent_is_noticed() -> None:
    [finding] = shrinking_network(still_in_touch=3).evaluate()
    assert summary([finding]) == [
        (
            "narrowing",
            None,
            "notice",
            "Your circle has been quieter lately",
            "You were in touch with 3 people in the last 30 days, down from about 10 people a "
            "month over the previous six months. Reaching out to one or two of them could help.",
        )
    ]
    assert finding.evidence["baseline_monthly_contacts"] == [10] * 6
    assert not finding.nudge


@pytest.mark.parametrize(("still", "fires"), [(7, True), (8, False)])
def test_narrowing_fires_at_exactly_thirty_percent(still: int, fires: bool) -> None:
    assert bool(shrinking_network(still).evaluate()) is fires


def test_a_new_user_without_six_months_of_history_has_no_baseline_to_shrink_from() -> None:
    assert shrinking_network(still_in_touch=0, months=5).evaluate() == []
    assert [f.rule for f in shrinking_network(still_in_touch=0, months=7).evaluate()] == [
        "narrowing"
    ]


def test_archiving_people_does_not_look_like_a_shrinking_network() -> None:
    assert shrinking_network(still_in_touch=3, archived=7).evaluate() == []


def test_a_snoozed_contact_never_triggers_until_the_snooze_is_over() -> None:
    life = ana_stops()
    life.contacts["contact-ana"]["snoozed_until"] = TODAY.isoformat()
    assert life.evaluate() == []
    life.contacts["contact-ana"]["snoozed_until"] = (TODAY - DAY).isoformat()
    assert [f.contact_id for f in life.evaluate()] == ["contact-ana"]


def test_the_snooze_ends_by_the_persons_own_calendar_not_utc() -> None:
    life = ana_stops()
    life.contacts["contact-ana"]["snoozed_until"] = "2025-06-01"
    just_after_midnight = dt.datetime(2025, 6, 2, 0, 30, tzinfo=NOW.tzinfo)  # 1 June in UTC
    assert [f.rule for f in life.evaluate(just_after_midnight)] == ["overdue"]
    life.settings_fields["time_zone"] = "UTC"
    assert life.evaluate(just_after_midnight) == []


def test_an_archived_contact_never_triggers() -> None:
    life = ana_stops()
    life.contacts["contact-ana"]["archived"] = True
    assert life.evaluate() == []


def test_a_person_can_switch_a_rule_off() -> None:
    life = ana_stops()
    life.settings_fields["rules_disabled"] = ["overdue"]
    assert life.evaluate() == []


def test_a_meetup_with_several_friends_counts_for_each_of_them() -> None:
    life = Timeline()
    ana, dan = life.contact("Ana", circle="inner"), life.contact("Dan", circle="inner")
    for days_ago in range(400, 30, -9):
        life.log([ana, dan], days_ago)
    assert [(f.contact_id, f.level) for f in life.evaluate()] == [
        ("contact-ana", "slipping"),
        ("contact-dan", "slipping"),
    ]


def test_a_planned_meetup_logged_ahead_does_not_reset_the_gap() -> None:
    life = ana_stops()
    life.log("contact-ana", -3)  # in three days' time
    assert [f.level for f in life.evaluate()] == ["slipping"]


def test_a_contact_never_met_in_person_has_no_gap_to_measure() -> None:
    life = Timeline()
    life.every(life.contact("Eve", circle="wider"), 30, first=700, last=1, kind="text")
    assert life.evaluate() == []


def test_with_few_meetings_the_chosen_cadence_then_the_circle_sets_the_rhythm() -> None:
    life = Timeline()
    fay = life.contact("Fay", circle="close", cadence_days=14)
    gus = life.contact("Gus", circle="social")
    life.log(fay, 40)
    life.log(gus, 400)
    assert [f.body for f in life.evaluate()] == [
        "You wanted to see Fay every 14 days; it's been 40 days.",
        "Gus is in your social circle, where people meet at least every 180 days; "
        "it's been 400 days.",
    ]


def test_rows_the_rules_cannot_use_are_skipped_not_fatal() -> None:
    good = (
        b'{"contact_ids": ["contact-ana"], "kind": "call", "occurred_at": "2025-06-01T10:00:00Z"}'
    )
    rows = {
        "ix-good-0001": good,
        "ix-naive-001": good.replace(b"Z", b""),  # no offset: not an event time
        "ix-kind-0001": good.replace(b"call", b"telepathy"),
        "ix-nobody-01": good.replace(b'"contact-ana"', b""),
        "ix-broken-01": b"{not json",
        "ix-list-0001": b"[]",
    }
    history = History.from_json({"contact-ana": b'{"display_name": "Ana"}'}, rows)
    assert [i.id for i in history.interactions] == ["ix-good-0001"]
    assert history.contacts["contact-ana"].circle == "social"  # the table's default


UCLA_OK, UCLA_LONELY = [2, 2, 1], [2, 2, 2]  # sums 5 and 6
LSNS_OK, LSNS_AT_RISK = [2, 2, 2, 2, 2, 2], [2, 2, 2, 2, 2, 1]  # 12 and 11
WHO_OK, WHO_LOW = [3, 3, 3, 2, 2], [3, 3, 2, 2, 2]  # 13 and 12


@pytest.mark.parametrize(
    ("answers", "fires"),
    [
        ({"ucla3": UCLA_OK}, False),
        ({"ucla3": UCLA_LONELY}, True),
        ({"lsns6": LSNS_OK}, False),
        ({"lsns6": LSNS_AT_RISK}, True),
        ({"who5": WHO_OK}, False),
        ({"who5": WHO_LOW}, True),
        ({"ucla3": UCLA_OK, "lsns6": LSNS_OK, "who5": WHO_OK}, False),
    ],
)
def test_self_report_thresholds_at_their_boundaries(
    answers: dict[str, list[int]], fires: bool
) -> None:
    life = Timeline()
    life.reflect(3, **answers)
    findings = life.evaluate()
    assert [f.rule for f in findings] == (["self_report"] if fires else [])
    for finding in findings:
        assert "Kith is not professional help" in finding.body
        assert not finding.nudge  # never on a lock screen


def test_self_report_names_every_concern_and_says_it_is_not_professional_help() -> None:
    life = Timeline()
    life.reflect(3, ucla3=[3, 2, 2], who5=[2, 2, 2, 2, 2], lsns6=[3, 3, 3, 3, 3, 3])
    assert summary(life.evaluate()) == [
        (
            "self_report",
            None,
            "support",
            "How are you doing?",
            "Your latest answers suggest you have been feeling lonely (UCLA-3 loneliness score "
            "7 of 9) and your well-being has been low (WHO-5 score 10 of 25). Reaching out to "
            "someone you trust, or planning time with a friend, can help. Kith is not "
            "professional help: if you are struggling, please talk to your doctor or a mental "
            "health professional.",
        )
    ]


def test_only_the_latest_recent_answer_counts() -> None:
    life = Timeline()
    life.reflect(20, ucla3=[3, 3, 3])
    life.reflect(5, ucla3=[1, 1, 1])
    assert life.evaluate() == []
    stale = Timeline()
    stale.reflect(91, ucla3=[3, 3, 3])
    assert stale.evaluate() == []


def test_poisson_cdf_matches_known_values() -> None:
    assert poisson_cdf(0, 1.0) == pytest.approx(0.36787944117)
    assert poisson_cdf(2, 3.0) == pytest.approx(0.42319008112)
    assert poisson_cdf(10, 2.5) == pytest.approx(1 - 6.163e-5, abs=1e-7)  # tail P(X>=11)
    assert poisson_cdf(3, 500.0) == pytest.approx(0.0, abs=1e-200)
    assert (poisson_cdf(-1, 2.0), poisson_cdf(0, 0.0)) == (0.0, 1.0)


def test_the_shipped_catalog_loads_and_a_broken_one_fails_loudly() -> None:
    catalog = default_catalog()
    assert catalog.overdue.circle_cadence_days == {
        "inner": 7,
        "close": 30,
        "social": 180,
        "wider": 365,
    }
    with pytest.raises(ValueError, match="unknown"):
        load_catalog(default_catalog_text().replace("{name}?", "{nmae}?"))
    with pytest.raises(ValueError, match="nudge_levels"):
        load_catalog(
            default_catalog_text().replace('nudge_levels = ["notice"]', 'nudge_levels = ["x"]')
        )


def test_a_catalog_missing_a_template_fails_at_load() -> None:
    with pytest.raises(ValueError, match="title_dormant"):
        load_catalog(default_catalog_text().replace("title_dormant =", "title_gone ="))

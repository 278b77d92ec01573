"""Synthetic timelines with the exact insights a person would see on their phone.

Each test is a small life: a friend who stops coming round, one who meets in spells,
one who moves to calls only, a network that thins out. If one of these broke, someone
would get a nudge about a friend they saw yesterday, or no word about one they lost.
"""

from __future__ import annotations

import datetime as dt

import pytest

from service.rules import Finding, History, default_catalog, load_catalog, overdue
from service.rules.rate_drop import poisson_cdf
from tests.unit.rules.timeline import NOW, TODAY, Timeline, ana_stops, default_catalog_text

DAY = dt.timedelta(days=1)


def summary(findings: list[Finding]) -> list[tuple[str, str | None, str, str, str]]:
    return [(f.rule, f.contact_id, f.level, f.title, f.body) for f in findings]


def test_a_friend_who_stops_coming_round_is_slipping_with_the_numbers_and_the_calls() -> None:
    [finding] = ana_stops().evaluate()
    assert summary([finding]) == [
        (
            "overdue",
            "contact-ana",
            "slipping",
            "Time to see Ana?",
            "You usually see Ana every 9 days; it's been 8 weeks since you met on 5 April "
            "2025 (since then, two calls). Up for suggesting a coffee or a walk?",
        )
    ]
    assert finding.dedupe_key == ("overdue", "contact-ana")
    assert finding.nudge
    assert finding.evidence == {
        "basis": "rhythm",
        "gap_days": 58,
        "silence_days": 58,
        "away_days_discounted": 0,
        "last_in_person": "2025-04-05",
        "in_person_days": 39,
        "usual_gap_days": 9.0,
        "episode_gaps": 30,
        "longest_gap_days": 9,
        "thresholds_days": [50.5, 75.8, 101.0],
        "remote_since_last_meeting": 2,
    }


@pytest.mark.parametrize(
    ("gap", "level", "title"),
    [
        (50, None, None),  # 2.5 x 9 days + four weeks off: still normal
        (51, "slipping", "Time to see Ana?"),
        (75, "slipping", "Time to see Ana?"),
        (76, "at_risk", "It's been a while since you saw Ana"),
        (101, "at_risk", "It's been a while since you saw Ana"),
        (102, "dormant", "Still thinking of Ana?"),  # past 8 x the usual gap, and 2 x slipping
    ],
)
def test_the_level_climbs_past_a_holiday_then_far_into_the_tail_then_eight_usual_gaps(
    gap: int, level: str | None, title: str | None
) -> None:
    findings = [f for f in ana_stops().evaluate(NOW + (gap - 58) * DAY) if f.rule == "overdue"]
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


def test_a_bursty_friend_is_judged_by_the_breaks_between_spells_not_the_days_inside() -> None:
    # Spells every six weeks: 125 days of silence is still within 2.5 breaks + a holiday.
    assert ben_in_spells().evaluate(NOW + 90 * DAY) == []
    findings = ben_in_spells().evaluate(NOW + 97 * DAY)
    assert summary(findings) == [
        (
            "overdue",
            "contact-ben",
            "slipping",
            "Time to see Ben?",
            "You usually see Ben every 6 weeks; it's been 4 months since you met on 28 April "
            "2025. Up for suggesting a coffee or a walk?",
        )
    ]
    assert findings[0].evidence["usual_gap_days"] == 40.0  # between spells, not inside


def test_a_friend_who_moves_to_calls_only_gets_one_suggestion_to_meet() -> None:
    life = Timeline()
    cleo = life.contact("Cleo", circle="close")
    life.every(cleo, 7, first=539, last=70)
    life.every(cleo, 4, first=66, last=2, kind="call")
    findings = life.evaluate()
    assert summary(findings) == [
        (
            "drought",
            "contact-cleo",
            "suggest",
            "Meet Cleo in person?",
            "You and Cleo usually meet every week; lately it's been 17 calls, and 2 months "
            "since you met on 24 March 2025. Up for suggesting a time to get together?",
        )
    ]
    assert findings[0].evidence["remote_kinds"] == {"call": 17}


def weekly_then_calls(*calls: int, texts_every: int | None = None) -> Timeline:
    """Eva, met every Sunday for a year until 22 days ago; then ``calls`` (days ago)."""
    life = Timeline()
    eva = life.contact("Eva", circle="inner")
    life.every(eva, 7, first=358, last=22)
    if texts_every is not None:
        life.every(eva, texts_every, first=350, last=1, kind="text")
    for days_ago in calls:
        life.log(eva, days_ago, "call")
    return life


def test_a_weekly_friend_now_only_on_the_phone_is_asked_about_within_three_weeks() -> None:
    # Seen every Sunday, never needing a call; now the Sundays are calls. Three weeks in,
    # not the six weeks overdue's line leaves for a friend's own holiday.
    findings = weekly_then_calls(15, 8, 1).evaluate()
    assert summary(findings) == [
        (
            "drought",
            "contact-eva",
            "suggest",
            "Meet Eva in person?",
            "You and Eva usually meet every week; lately it's been 3 calls, and 3 weeks "
            "since you met on 11 May 2025. Up for suggesting a time to get together?",
        )
    ]
    # Two weeks in, two calls are not yet a pattern.
    assert weekly_then_calls(15, 8).evaluate(NOW - 7 * DAY) == []


def test_a_weekly_friend_on_holiday_who_calls_as_always_raises_nothing() -> None:
    # Texted every 4 days all year, and through three weeks without meeting.
    assert weekly_then_calls(texts_every=4).evaluate() == []
    # Texted every fortnight; three calls now are within what that pace could bring.
    assert weekly_then_calls(15, 8, 1, texts_every=14).evaluate() == []


def monthly_friend(*then: int) -> Timeline:
    """Dora, met about monthly for most of a year, then meetings ``then`` days ago."""
    life = Timeline()
    dora = life.contact("Dora", circle="close")
    for days_ago in (*(200 + g for g in (120, 90, 61, 30, 0)), *then):
        life.log(dora, days_ago)
    return life


def test_a_monthly_friend_whose_gaps_keep_growing_is_noticed_before_the_overdue_line() -> None:
    # Gaps of a month, then 45 and 68 days: two growing gaps of a slow tie are a trend, read
    # once the silence is longer still; overdue's slipping line (129 days) is six weeks off.
    assert monthly_friend(155, 87).evaluate(NOW - 20 * DAY) == []
    assert [f.rule for f in monthly_friend(155, 87).evaluate(NOW - 19 * DAY)] == ["rate_drop"]
    findings = monthly_friend(155, 87).evaluate()
    assert summary(findings) == [
        (
            "rate_drop",
            "contact-dora",
            "notice",
            "Seeing less of Dora?",
            "You used to see Dora about every 4 weeks; lately the gaps have grown (6 weeks and "
            "2 months), and it's been 2 months since you met on 7 March 2025. Up for "
            "suggesting a time to meet?",
        )
    ]
    assert findings[0].evidence["stretching_gaps_days"] == [45, 68]


@pytest.mark.parametrize(
    ("then", "why"),
    [
        ((140, 79), "two missed meetings in a row: long gaps, but no trend"),
        ((145, 114, 87), "one long gap, then back to the usual rhythm"),
    ],
)
def test_a_monthly_friends_long_gaps_without_a_trend_raise_nothing(
    then: tuple[int, ...], why: str
) -> None:
    assert monthly_friend(*then).evaluate(NOW + 5 * DAY) == [], why


def test_a_parent_far_away_called_every_week_and_visited_a_few_times_a_year_is_fine() -> None:
    life = Timeline()
    mum = life.contact("Mum", circle="inner")
    for visit in (20, 130, 250, 370, 480):
        for day in range(4):
            life.log(mum, visit + day)
    life.every(mum, 7, first=500, last=1, kind="call")
    assert life.evaluate() == []


def test_a_holiday_only_cousin_is_never_due_in_january() -> None:
    life = Timeline(today=dt.date(2026, 1, 20))
    cousin = life.contact("Rui", circle="close")
    for days_ago in (27, 28, 30, 33):  # Christmas week, the first year they logged
        life.log(cousin, days_ago)
    life.every(cousin, 30, first=300, last=40, kind="call")
    now = dt.datetime(2026, 1, 20, 9, tzinfo=NOW.tzinfo)
    assert life.evaluate(now) == []
    assert life.evaluate(now + 120 * DAY) == []  # still unknown: no rhythm, no cadence


def shrinking_network(still_in_touch: int, archived: int = 0, months: int = 7) -> Timeline:
    """Ten friends met one by one every ten days for months; six weeks ago most stopped."""
    life = Timeline()
    names = ["Ada", "Bo", "Cy", "Di", "Ed", "Flo", "Gil", "Hal", "Ivy", "Jo"]
    for i, name in enumerate(names):
        cid = life.contact(name, circle="social", archived=i >= len(names) - archived)
        life.every(cid, 10, first=months * 30 + 5 - i, last=42)
        if i < still_in_touch:
            for days_ago in (34, 24, 14, 4):
                life.log(cid, days_ago - i // 4)
    return life


def test_a_circle_thinning_out_at_once_is_noticed_by_name() -> None:
    [finding] = shrinking_network(still_in_touch=3).evaluate()
    assert summary([finding]) == [
        (
            "narrowing",
            None,
            "notice",
            "Your circle has been quieter lately",
            "You haven't met Ed, Flo, Gil, Hal and three more for a while: seven of the ten "
            "people you used to see regularly. Is there someone you'd like to catch up with?",
        )
    ]
    assert finding.evidence["regular_ties"] == 10
    lapsed = finding.evidence["lapsed"]
    assert isinstance(lapsed, list)
    # The longest silences first: Ed's last meeting was 51 days ago, Di's 42.
    ids = [x["contact_id"] for x in lapsed]
    assert (ids[0], ids[-1], len(ids)) == ("contact-ed", "contact-di", 7)
    assert {x["usual_gap_days"] for x in lapsed} == {10.0}
    assert not finding.nudge  # a question for the app, never a push


@pytest.mark.parametrize(("still", "fires"), [(5, True), (6, False), (7, False)])
def test_narrowing_needs_half_the_regular_friends_gone_at_once(still: int, fires: bool) -> None:
    assert bool(shrinking_network(still).evaluate()) is fires


def test_one_friend_on_holiday_and_two_who_drifted_away_are_each_their_own_story() -> None:
    # Three of ten lapsing is under half: the tie rules speak for each, narrowing stays quiet.
    assert [f.rule for f in shrinking_network(still_in_touch=7).evaluate()] == []


def test_friends_without_a_known_rhythm_yet_are_not_counted_as_lost() -> None:
    assert shrinking_network(still_in_touch=2, months=2).evaluate() == []
    assert [f.rule for f in shrinking_network(still_in_touch=2, months=7).evaluate()] == [
        "narrowing"
    ]


def test_a_month_of_meeting_nobody_reads_as_being_away_not_as_a_shrinking_circle() -> None:
    assert shrinking_network(still_in_touch=0).evaluate() == []


def test_a_weekly_group_that_ends_is_one_loss_not_five_fading_friends() -> None:
    life = Timeline()
    choir = [life.contact(n, circle="close") for n in ("Kim", "Lou", "Max", "Ned", "Oli")]
    for days_ago in range(400, 90, -7):
        life.log(choir, days_ago)
    assert life.evaluate() == []  # the group stopped: nobody is singled out


def test_a_friend_who_stops_coming_to_a_group_that_goes_on_is_noticed() -> None:
    life = Timeline()
    choir = [life.contact(n, circle="close") for n in ("Kim", "Lou", "Max", "Ned", "Oli")]
    for days_ago in range(400, 0, -7):
        life.log(choir if days_ago > 90 else choir[1:], days_ago)
    assert [(f.rule, f.contact_id) for f in life.evaluate()] == [("overdue", "contact-kim")]


def test_archiving_people_does_not_look_like_a_shrinking_network() -> None:
    assert shrinking_network(still_in_touch=3, archived=7).evaluate() == []


def test_snoozing_the_friends_one_pauses_is_not_a_shrinking_network() -> None:
    life = shrinking_network(still_in_touch=3)
    for cid in ("contact-ed", "contact-di", "contact-flo", "contact-gil", "contact-hal"):
        life.contacts[cid]["snoozed_until"] = (TODAY + 30 * DAY).isoformat()
    assert life.evaluate() == []  # two of the five left to judge: under half


def test_a_trip_is_taken_out_of_every_silence() -> None:
    life = Timeline()
    friends = [life.contact(n, circle="inner") for n in ("Ana", "Ben", "Cy", "Di")]
    for i, cid in enumerate(friends):
        life.every(cid, 7, first=400 - i, last=60 + i)  # then a seven-week trip for all
    assert life.evaluate() == []
    no_view = default_catalog_text().replace(
        "max_away_discount_days = 60", "max_away_discount_days = 0"
    )
    without = life.evaluate(catalog=load_catalog(no_view))  # what it would say without
    assert [f.rule for f in without] == ["overdue"] * 4 + ["narrowing"]
    # Home again, and six more weeks without seeing any of them: now it is about them, and
    # about the circle as a whole.
    later = life.evaluate(NOW + 45 * DAY)
    assert [f.rule for f in later] == ["overdue"] * 4 + ["narrowing"]
    assert [f.evidence["away_days_discounted"] for f in later[:4]] == [60] * 4
    assert later[4].body.startswith(  # the longest silence first: Di was last seen 68 days ago
        "You haven't met Di, Ana, Ben and Cy for a while: all four people you used to see "
    )


def test_a_snoozed_contact_never_triggers_and_the_silence_restarts_when_it_ends() -> None:
    life = ana_stops()
    life.contacts["contact-ana"]["snoozed_until"] = TODAY.isoformat()
    assert life.evaluate() == []
    life.contacts["contact-ana"]["snoozed_until"] = (TODAY - DAY).isoformat()
    assert life.evaluate() == []  # a pause asked for: no nudge the morning after it ends
    life.contacts["contact-ana"]["snoozed_until"] = (TODAY - 52 * DAY).isoformat()
    assert [f.contact_id for f in life.evaluate()] == ["contact-ana"]


def test_the_snooze_ends_by_the_persons_own_calendar_not_utc() -> None:
    from service.rules import default_catalog
    from service.rules.context import build_context

    life = ana_stops()
    life.contacts["contact-ana"]["snoozed_until"] = "2025-06-01"
    just_after_midnight = dt.datetime(2025, 6, 2, 0, 30, tzinfo=NOW.tzinfo)  # 1 June in UTC

    def eligible() -> list[str]:
        ctx = build_context(life.history(), just_after_midnight, life.settings(), default_catalog())
        return [t.contact.id for t in ctx.eligible]

    assert eligible() == ["contact-ana"]
    life.settings_fields["time_zone"] = "UTC"
    assert eligible() == []


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
    for days_ago in range(400, 50, -9):
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


def test_with_too_few_meetings_only_the_persons_own_cadence_speaks_never_the_circle() -> None:
    life = Timeline()
    fay = life.contact("Fay", circle="close", cadence_days=14)
    gus = life.contact("Gus", circle="social")
    life.log(fay, 70)
    life.log(gus, 400)
    assert [f.body for f in life.evaluate()] == [
        "You wanted to see Fay every 2 weeks; it's been 2 months since you met on 24 March "
        "2025. Up for suggesting a coffee or a walk?",
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


def test_only_the_latest_recent_answers_count() -> None:
    life = Timeline()
    life.reflect(60, ucla3=[3, 3, 3])
    life.reflect(5, ucla3=[1, 1, 1])
    assert life.evaluate() == []
    stale = Timeline()
    stale.reflect(91, ucla3=[3, 3, 3])
    assert stale.evaluate() == []


def test_one_low_answer_between_good_ones_is_read_with_its_neighbour() -> None:
    life = Timeline()
    life.reflect(20, who5=[3, 3, 3, 3, 3])  # 15
    life.reflect(5, who5=[3, 3, 2, 2, 2])  # 12: the mean of the two, 13.5, is above the line
    assert life.evaluate() == []


def test_well_being_falling_far_below_the_persons_own_baseline_is_noticed() -> None:
    life = Timeline()
    for days_ago in (300, 250, 200, 150):
        life.reflect(days_ago, who5=[5, 5, 4, 4, 4])  # 22, their usual
    life.reflect(20, who5=[3, 3, 3, 3, 2])
    life.reflect(5, who5=[3, 3, 3, 2, 3])  # 14: above the cut-off of 13, far below 22
    [finding] = life.evaluate()
    assert finding.body.startswith(
        "Your latest answers suggest your well-being is lower than usual for you "
        "(WHO-5 from about 22 to 14 of 25)."
    )
    assert finding.evidence["who5"]["flagged"] == "change"
    assert not finding.nudge


def test_poisson_cdf_matches_known_values() -> None:
    assert poisson_cdf(0, 1.0) == pytest.approx(0.36787944117)
    assert poisson_cdf(2, 3.0) == pytest.approx(0.42319008112)
    assert poisson_cdf(10, 2.5) == pytest.approx(1 - 6.163e-5, abs=1e-7)  # tail P(X>=11)
    assert poisson_cdf(3, 500.0) == pytest.approx(0.0, abs=1e-200)
    assert (poisson_cdf(-1, 2.0), poisson_cdf(0, 0.0)) == (0.0, 1.0)


def test_the_shipped_catalog_loads_and_a_broken_one_fails_loudly() -> None:
    catalog = default_catalog()
    assert catalog.spec_for(overdue.RULE).circle_cadence_days == {
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

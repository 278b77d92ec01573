"""The oracle that says what the records allow for a weekly tie (decision 0010).

Decision 0010 trades issue 11's "a weekly tie's decline noticed within three weeks" for
precision, on the strength of this measurement: a silence line given everything a rule
could wish to know still cannot do both. If the oracle counted wrong, that trade would
rest on nothing; if the generator ever carried the evidence, the last test fails and
says the trade must be revisited.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from service.rules.evaluation import LabelledPerson, TieTruth, generate
from service.rules.evaluation.frontier import weekly_silence_frontier
from service.rules.history import Contact, Interaction

START = dt.date(2026, 1, 1)
ZONE = "Europe/Lisbon"


def _day(i: int) -> dt.date:
    return START + dt.timedelta(days=i)


def _person(
    meetings: dict[str, list[int]],
    ties: dict[str, TieTruth],
    away: list[tuple[dt.date, dt.date, str]] | None = None,
) -> LabelledPerson:
    """Meetings in person on the given days (counted from ``START``), 18:00 in Lisbon."""
    zone = zoneinfo.ZoneInfo(ZONE)
    interactions = sorted(
        (
            Interaction(f"i-{cid}-{i}", (cid,), "in_person", _evening(i, zone))
            for cid, days in meetings.items()
            for i in days
        ),
        key=lambda x: x.occurred_at,
    )
    contacts = {cid: Contact(cid, cid, "inner") for cid in ties}
    return LabelledPerson(
        0, ZONE, START, _day(200), contacts, interactions, [], ties, {}, away=away or []
    )


def _evening(i: int, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(_day(i), dt.time(18), tzinfo=zone).astimezone(dt.UTC)


def test_a_stop_is_caught_within_three_weeks_only_by_a_line_under_four_weeks_of_silence() -> None:
    # Met every Sunday until day 70; the first meeting that did not happen is day 77.
    stop = TieTruth("sam", "stop", 7, onset=_day(77))
    person = _person({"sam": list(range(0, 71, 7))}, {"sam": stop})
    at = {p.line: p for p in weekly_silence_frontier([person], lines=(28, 30))}
    assert (at[28].raised, at[28].true, at[28].caught_within) == (1, 1, 1)  # day 98 = onset + 21
    assert (at[30].raised, at[30].true, at[30].caught_within, at[30].caught) == (1, 1, 0, 1)
    assert at[28].declines == 1


def test_a_weekly_friends_holiday_is_a_false_alarm_for_every_line_it_outlasts() -> None:
    days = [*range(0, 71, 7), *range(105, 200, 7)]  # 35 days without meeting, then as before
    person = _person({"ana": days}, {"ana": TieTruth("ana", "weekly", 7)})
    at = {p.line: p for p in weekly_silence_frontier([person], lines=(28, 34, 36))}
    assert (at[28].raised, at[28].true) == (1, 0)
    assert (at[34].raised, at[36].raised) == (1, 0)
    assert at[28].precision == 0.0
    assert at[28].within_share is None  # no decline to catch


def test_the_persons_own_trip_is_taken_out_of_the_silence() -> None:
    days = [*range(0, 71, 7), *range(105, 200, 7)]
    trip = [(_day(75), _day(95), "trip")]
    person = _person({"ana": days}, {"ana": TieTruth("ana", "weekly", 7)}, away=trip)
    (point,) = weekly_silence_frontier([person], lines=(28,))
    assert point.raised == 0  # 34 days less 21 away: 13 days of silence


def test_a_tie_that_came_back_from_a_long_silence_is_held_to_it_when_learning() -> None:
    days = [*range(0, 71, 7), *range(105, 141, 7)]  # a 35-day holiday, then a stop
    stop = TieTruth("ana", "stop", 7, onset=_day(147))
    person = _person({"ana": days}, {"ana": stop})
    (naive,) = weekly_silence_frontier([person], lines=(28,))
    (learnt,) = weekly_silence_frontier([person], lines=(28,), learn=True)
    assert (naive.raised, naive.true, naive.caught_within) == (2, 1, 1)
    # The holiday is still raised (nothing said it was one); the stop only past 1.1 x the
    # holiday's 34 days of silence: on day 140 + 38 = onset + 31.
    assert (learnt.raised, learnt.true, learnt.caught_within, learnt.caught) == (2, 1, 0, 1)


def test_no_silence_line_can_catch_most_weekly_declines_in_three_weeks_and_be_right() -> None:
    # Tuning seed 11 (decision 0010): the best line that is right nine times in ten.
    people = generate(11, 40)
    for learn in (False, True):
        frontier = weekly_silence_frontier(people, learn=learn)
        assert frontier[0].declines >= 10
        best = max(
            (p.within_share or 0.0 for p in frontier if (p.precision or 0.0) >= 0.9), default=0.0
        )
        assert best < 0.8, learn
        # ... and a line that catches half of them in time is wrong about 2 raised in 5
        for p in frontier:
            if (p.within_share or 0.0) >= 0.5:
                assert (p.precision or 0.0) < 0.6, (p, learn)

"""The warmth rule: meetings that go on but became one-sided or feel worse, for that tie.

If these broke, a person who has always been the one to call a friend would be told the
friendship is cooling, or a friend they now always chase would go unnoticed.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from service.rules import History, StoredInsight, reconcile
from service.rules.warmth import binomial_tail
from tests.unit.rules.timeline import NOW, Timeline

DAY = dt.timedelta(days=1)


def weekly(initiators: list[str], qualities: list[int] | None = None) -> Timeline:
    """Ana, met weekly up to two days ago, the oldest meeting first."""
    life = Timeline()
    ana = life.contact("Ana", circle="close")
    n = len(initiators)
    for k, who in enumerate(initiators):
        extra: dict[str, Any] = {"initiated_by": who}
        if qualities:
            extra["quality"] = qualities[k]
        life.log(ana, 2 + 7 * (n - 1 - k), **extra)
    return life


EVEN = ["me", "them", "mutual", "them", "me", "them", "mutual", "me", "them", "mutual"] * 3
GOOD = [4, 5, 4, 4, 5, 4, 3, 4, 5, 4] * 2


def test_a_friend_the_person_now_always_asks_is_noticed_gently_and_never_pushed() -> None:
    [f] = weekly([*EVEN[:20], *["me"] * 10]).evaluate()
    assert f.rule == "warmth"
    assert not f.nudge
    assert f.title == "How are things with Ana?"
    assert "you suggested the last 10 meetings with Ana (before, about 30 % of them)" in f.body
    assert f.body.endswith("?")
    assert f.evidence["one_sided"]["recent_suggested_by_you"] == 10


def test_a_friend_the_person_has_always_called_first_is_their_pattern_not_a_change() -> None:
    assert weekly(["me"] * 30).evaluate() == []


def test_a_few_suggestions_in_a_row_among_even_ones_are_not_a_change() -> None:
    assert weekly([*EVEN[:24], "me", "me", "me", "me", "me", "them"]).evaluate() == []


def test_meetings_that_feel_clearly_worse_than_this_tie_used_to_are_noticed() -> None:
    [f] = weekly(EVEN, [*GOOD, 2, 3, 2, 3, 2, 2, 3, 2, 3, 2]).evaluate()
    assert f.rule == "warmth"
    assert f.evidence["one_sided"] is None
    assert "felt less good than before (about 2.4 of 5, against 4.2)" in f.body


def test_ratings_within_their_usual_spread_are_not_a_fall() -> None:
    varied = [3, 5, 4, 2, 5, 4, 3, 5, 4, 3] * 2
    assert weekly(EVEN, [*varied, 3, 4, 3, 3, 4, 3, 4, 3, 3, 4]).evaluate() == []


def test_notes_from_group_meetups_say_nothing_about_one_friendship() -> None:
    life = Timeline()
    ana, ben, cleo = (life.contact(n) for n in ("Ana", "Ben", "Cleo"))
    for k, who in enumerate([*EVEN[:20], *["me"] * 10]):
        life.log([ana, ben, cleo], 2 + 7 * (29 - k), initiated_by=who)
    assert [f for f in life.evaluate() if f.rule == "warmth"] == []


def test_notes_read_the_same_from_stored_json() -> None:
    life = weekly([*EVEN[:20], *["me"] * 10], [4] * 30)
    rows = {k: json.dumps(v) for k, v in life.interactions.items()}
    contacts = {k: json.dumps(v) for k, v in life.contacts.items()}
    assert History.from_json(contacts, rows) == life.history()


def test_the_binomial_tail_adds_up() -> None:
    assert abs(binomial_tail(0, 6, 0.3) - 1.0) < 1e-12
    assert abs(binomial_tail(6, 6, 0.5) - 1 / 64) < 1e-12


def test_meeting_again_does_not_answer_it_so_it_is_not_raised_anew_every_week() -> None:
    life = weekly([*EVEN[:20], *["me"] * 10])
    [create] = reconcile([], life.evaluate(), life.history(), NOW).create
    f = create.finding
    row = StoredInsight(
        create.insight_id, f.rule, f.contact_id, f.level, "open", NOW, f.title, f.body, {}
    )
    life.log("contact-ana", -5, initiated_by="me")  # they met again, the person asking
    plan = reconcile([row], life.evaluate(NOW + 6 * DAY), life.history(), NOW + 6 * DAY)
    assert (plan.create, plan.resolve) == ((), ())

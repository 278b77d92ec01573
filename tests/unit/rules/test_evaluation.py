"""The labelled evaluation itself: if its timelines or its scoring drifted, every figure in
decision 0010 would silently mean something else.

The full evaluation (320 people) runs as ``make eval``; these tests check on a small
seeded population that the generator is reproducible and covers every class, and that
the scorer counts exactly what a person would have seen, using engines whose right
answers are known.
"""

from __future__ import annotations

import datetime as dt
import itertools
from functools import cache

from service.rules import Finding, History, PersonSettings
from service.rules.catalog import Catalog
from service.rules.evaluation import LabelledPerson, generate, run_population, score_person
from service.rules.evaluation.timelines import NEGATIVE_CLASSES, POSITIVE_CLASSES

SEED = 7


@cache
def population() -> tuple[LabelledPerson, ...]:
    return tuple(generate(SEED, 40))


def test_the_same_seed_draws_the_same_people_whatever_else_is_drawn() -> None:
    again = generate(SEED, 3, start=10)
    for person, twin in zip(population()[10:13], again, strict=True):
        assert person.interactions == twin.interactions
        assert person.ties == twin.ties


def test_every_class_the_issue_lists_is_present_and_noisy() -> None:
    people = population()
    labels = {t.label for p in people for t in p.ties.values()}
    assert set(POSITIVE_CLASSES) | set(NEGATIVE_CLASSES) <= labels
    assert {p.network for p in people} == {"steady", "shrinking"}
    assert {p.self_report for p in people} >= {"stable_good", "worse_absolute", "worse_relative"}
    assert {why for p in people for *_, why in p.away} == {"trip", "not_logging"}
    # Normal weekly ties are not metronomes: some gaps are two weeks or longer.
    gaps = []
    for p in people:
        for cid, tie in p.ties.items():
            if tie.label == "weekly":
                days = sorted(
                    {i.occurred_at.date() for i in p.interactions
                     if cid in i.contact_ids and i.kind == "in_person"}
                )  # fmt: skip
                gaps += [(b - a).days for a, b in itertools.pairwise(days)]
    assert max(gaps) >= 21
    assert 0.05 < sum(g >= 12 for g in gaps) / len(gaps) < 0.4


def test_a_decline_begins_after_the_last_meeting_in_its_old_rhythm() -> None:
    for p in population():
        for cid, tie in p.ties.items():
            if tie.label == "stop" and tie.onset is not None:
                met = [i.occurred_at.date() for i in p.interactions
                       if cid in i.contact_ids and i.kind == "in_person"]  # fmt: skip
                assert all(day < tie.onset for day in met)


def oracle(person: LabelledPerson) -> object:
    """An engine that knows the truth: it flags each decline from its onset, nothing else."""

    def engine(
        history: History, now: dt.datetime, settings: PersonSettings, catalog: Catalog
    ) -> list[Finding]:
        today = now.astimezone(settings.zone).date()
        return [
            Finding("overdue", cid, "slipping", "t", "b", {}, True, 1)
            for cid, tie in person.ties.items()
            if tie.label in POSITIVE_CLASSES and tie.onset is not None and today >= tie.onset
        ]

    return engine


def test_an_engine_that_knows_the_truth_scores_perfectly() -> None:
    people = population()[:8]

    scores = [score_person(p, engine=oracle(p)) for p in people]  # type: ignore[arg-type]
    report = run_population(people, scores=scores)
    positives = sum(t.label in POSITIVE_CLASSES for p in people for t in p.ties.values())
    assert positives > 0
    assert report.precision() == 1.0
    assert report.false_alarms_per_person_year == 0.0
    assert report.decline_recall() == 1.0
    assert all(d == [0] * len(d) for c, d in report.delays.items() if c in POSITIVE_CLASSES)
    # Raised once each, and again only after a meeting in person resolved it (a fade).
    assert report.counts["overdue"]["raised_tp"] >= positives


def test_an_engine_that_flags_everyone_every_day_is_scored_as_the_nag_it_is() -> None:
    people = population()[:4]

    def nag(
        history: History, now: dt.datetime, settings: PersonSettings, catalog: Catalog
    ) -> list[Finding]:
        return [Finding("overdue", c, "slipping", "t", "b", {}, True, 1) for c in history.contacts]

    report = run_population(people, scores=[score_person(p, engine=nag) for p in people])
    precision = report.precision()
    assert precision is not None
    assert precision < 0.2
    assert report.false_alarms_per_person_year > 5
    assert "| **all** |" in "\n".join(report.table())

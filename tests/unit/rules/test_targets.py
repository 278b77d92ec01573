"""The engine against issue 11's targets, on a fast seeded slice of the labelled evaluation.

The first 40 people of the evaluation's own seed (2026; thresholds were tuned on other
seeds), run exactly as ``make eval`` runs all 320: every day at 09:00 local, reconciled.
Forty, not the twelve this once used: four of the narrowing rule's eleven false alarms
among all 320 fall on the first twelve people, whose slice then reads 0.87 while the
whole population reads 0.93; forty read 0.92 (decision 0010).
If these failed, people would again be nudged about friends they see as usual, or not
hear about the ones they are losing. The full table, and the targets the engine does not
meet (detection within three weeks of a weekly tie's fade), are in decision 0010.
"""

from __future__ import annotations

from functools import cache

from bench.rules_eval import targets
from service.rules.evaluation import Report, generate, run_population
from service.rules.evaluation.scoring import PUSHING_RULES


@cache
def report() -> Report:
    return run_population(generate(2026, 40))


def test_nine_in_ten_raised_insights_are_about_a_real_decline() -> None:
    precision = report().precision()
    assert precision is not None
    assert precision >= 0.9
    pushes = report().precision(kind="push")
    assert pushes is not None
    assert pushes >= 0.9


def test_a_normal_life_gets_at_most_one_false_alarm_every_two_years() -> None:
    assert report().false_alarms_per_person_year <= 0.5


def test_four_in_five_real_declines_are_caught_gradual_fades_included() -> None:
    recall = report().decline_recall()
    assert recall is not None
    assert recall >= 0.8
    assert report().recall["fade"][0] > 0


def test_nine_in_ten_insights_of_every_rule_that_can_push_are_about_a_real_decline() -> None:
    assert set(PUSHING_RULES) == {"overdue", "rate_drop", "drought"}  # warmth never pushes
    # Held to 0.9 each on the full evaluation (decision 0010); in a slice a rule may raise
    # only a few insights, so one wrong one could read 0.75: at most one may be wrong.
    for rule in PUSHING_RULES:
        counts = report().counts[rule]
        precision = report().precision(rule)
        assert precision is not None, rule
        assert precision >= 0.9 or counts["raised_fp"] <= 1, (rule, counts)


def test_the_benchmark_reads_the_same_targets() -> None:
    rows = {name: met for name, _, _, met in targets(report())}
    assert rows["precision per raised finding, all rules"]
    assert rows["false alarms per person-year"]

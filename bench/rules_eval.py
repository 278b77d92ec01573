"""``python -m bench.rules_eval`` (what `make eval` runs): the rules engine's labelled evaluation.

Draws a seeded population of labelled people (``service/rules/evaluation/timelines.py``),
runs the engine over each of them every day at 09:00 in their own time zone, reconciled as
the worker does, and prints precision per rule (per raised finding, per finding-day, per
push), recall and days to detection per class, false alarms per person-year, and whether
each target of issue 11 / decision 0010 is met; then what the records allow for weekly
ties (``frontier.py``: the best silence line an oracle could draw). Needs no servers;
``--jobs`` spreads people over processes (the machine is shared: one by default).
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from service.rules.catalog import default_catalog
from service.rules.evaluation import Report, generate, run_population, score_person
from service.rules.evaluation.frontier import weekly_silence_frontier
from service.rules.evaluation.scoring import PUSHING_RULES, PersonScore
from service.rules.evaluation.timelines import LabelledPerson

__all__ = ["main", "targets"]


def targets(report: Report) -> list[tuple[str, float | None, str, bool]]:
    """(target, measured, bound, met) for each target of decision 0010."""
    rows: list[tuple[str, float | None, str, bool]] = []

    def add(name: str, value: float | None, bound: str, met: bool) -> None:
        rows.append((name, value, bound, met))

    p = report.precision()
    add("precision per raised finding, all rules", p, ">= 0.90", p is not None and p >= 0.9)
    for rule in PUSHING_RULES:
        p = report.precision(rule)
        add(f"precision per raised finding, {rule}", p, ">= 0.90", p is None or p >= 0.9)
    r = report.decline_recall()
    add("recall on true declines (fade, stop, remote)", r, ">= 0.80", r is not None and r >= 0.8)
    fa = report.false_alarms_per_person_year
    add("false alarms per person-year", fa, "<= 0.50", fa <= 0.5)
    w = report.weekly_within(21)
    add("weekly ties' declines caught within 21 days", w, ">= 0.80", w is not None and w >= 0.8)
    return rows


def frontier_table(people: list[LabelledPerson]) -> list[str]:
    """The oracle's silence lines for weekly ties, as printed after the targets."""
    lines = [
        "",
        "What the records allow for weekly ties: an oracle that knows each tie's true rhythm",
        "and every day the person was away raises a weekly one-to-one tie when its silence in",
        "person reaches the line (learning: and 1.1 x the longest silence it came back from).",
        "",
        "| line (days) | raised | precision | learning: raised | precision "
        "| declines caught within 21 days | learning |",
        "|---|---|---|---|---|---|---|",
    ]
    plain = weekly_silence_frontier(people)
    learnt = weekly_silence_frontier(people, learn=True)

    def show(x: float | None) -> str:
        return "—" if x is None else f"{x:.2f}"

    for p, q in zip(plain, learnt, strict=True):
        lines.append(
            f"| {p.line} | {p.raised} | {show(p.precision)} | {q.raised} | "
            f"{show(q.precision)} | {show(p.within_share)} | {show(q.within_share)} |"
        )
    best = max(
        (p.within_share or 0.0 for p in (*plain, *learnt) if (p.precision or 0.0) >= 0.9),
        default=0.0,
    )
    lines.append(
        f"\nBest share of weekly declines caught within 21 days by a line right 9 times in 10: "
        f"{best:.2f} (of {plain[0].declines})."
    )
    return lines


def _score(person: LabelledPerson) -> PersonScore:
    return score_person(person)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rules_eval", description=__doc__)
    parser.add_argument("--people", type=int, default=320)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    people = generate(args.seed, max(1, args.people))
    default_catalog()  # the rules found and the catalog read once, before any worker forks
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            scores = list(pool.map(_score, people, chunksize=4))
        report = run_population(people, scores=scores)
    else:
        report = run_population(people)
    print(f"seed {args.seed}; {time.perf_counter() - started:.0f} s")
    print("\n".join(report.table()))
    print("\n| target | measured | bound | met |\n|---|---|---|---|")
    rows = targets(report)
    for name, value, bound, met in rows:
        shown = "—" if value is None else f"{value:.2f}"
        print(f"| {name} | {shown} | {bound} | {'yes' if met else 'NO'} |")
    print("\n".join(frontier_table(people)))
    return 0 if all(met for *_, met in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

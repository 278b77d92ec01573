"""Run the engine over labelled people as the worker does, and score what it raised.

Every day from the person's second day of logging to the last, at 09:00 in their time zone,
the engine sees exactly what was logged by then (contacts as they stood that morning,
snoozes included), and its findings are reconciled with the insights it raised before
(resolved ones included, as the worker keeps them) —
the same ``evaluate`` + ``reconcile`` the worker runs (``service/insights.py``). The person
never dismisses anything, so an insight stays open until it is resolved.

What is counted, per rule and overall:

* raised findings (each new insight once) and finding-days (each day an insight is shown),
  true when the tie (or, for person-level rules, the person) is in a real decline that day
  (a cooling tie, whose meetings go on, only for the warmth rule: its own overdue break is
  still a false alarm);
* pushes: raised or escalated insights that ask for a nudge;
* recall per class: a decline is caught when any rule raises an insight about it on or after
  its onset; days to detection count from the onset (the first meeting that did not happen);
* false alarms per person-year: raised findings about ties or people in a normal rhythm.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from service.rules.catalog import Catalog, default_catalog
from service.rules.engine import evaluate
from service.rules.evaluation.timelines import COOLING_CLASSES, POSITIVE_CLASSES, LabelledPerson
from service.rules.finding import Finding
from service.rules.history import History, PersonSettings
from service.rules.reconcile import StoredInsight, reconcile
from service.rules.registry import rule_ids

__all__ = ["PersonScore", "Report", "run_population", "score_person"]

Evaluate = Callable[[History, dt.datetime, PersonSettings, Catalog], list[Finding]]
#: The rules whose catalog entry may ask for a push (each is held to precision 0.9).
PUSHING_RULES = tuple(r for r in rule_ids() if default_catalog().spec(r).nudge_levels)
_MORNING = dt.time(9)


def _truth(person: LabelledPerson, rule: str, contact_id: str | None, day: dt.date) -> bool | None:
    """True if the finding is about a real decline that day, False if not, None if unscored."""
    if contact_id is None:
        if rule == "narrowing":
            onset = person.network_onset
            return onset is not None and day >= onset
        onset = person.self_report_onset
        return onset is not None and day >= onset
    tie = person.ties[contact_id]
    if tie.unscored is not None and tie.unscored[0] <= day <= tie.unscored[1]:
        return None
    declining = tie.label in POSITIVE_CLASSES or (tie.label in COOLING_CLASSES and rule == "warmth")
    return declining and tie.onset is not None and day >= tie.onset


@dataclass(slots=True)
class PersonScore:
    index: int
    days: int
    counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    first_caught: dict[str, dt.date] = field(default_factory=dict)  # tie/person key -> day
    negative_alarms: Counter[str] = field(default_factory=Counter)  # class -> false alarms


def score_person(
    person: LabelledPerson, catalog: Catalog | None = None, engine: Evaluate = evaluate
) -> PersonScore:
    catalog = catalog or default_catalog()
    settings = PersonSettings(time_zone=person.time_zone)
    zone = settings.zone
    at = [i.occurred_at for i in person.interactions]
    rat = [r.occurred_at for r in person.reflections]
    stored: dict[str, StoredInsight] = {}
    score = PersonScore(person.index, (person.end - person.start).days)
    contacts_key: tuple[dt.date | None, ...] = ()
    contacts = MappingProxyType(person.contacts_on(person.start))
    day = person.start
    while day < person.end:
        day += dt.timedelta(days=1)
        now = dt.datetime.combine(day, _MORNING, tzinfo=zone)
        key = tuple(s[1] if s[0] <= day else None for s in person.snoozes.values())
        if key != contacts_key:
            contacts_key, contacts = key, MappingProxyType(person.contacts_on(day))
        history = History(
            contacts,
            tuple(person.interactions[: bisect.bisect_right(at, now)]),
            tuple(person.reflections[: bisect.bisect_right(rat, now)]),
        )
        findings = engine(history, now, settings, catalog)
        plan = reconcile(list(stored.values()), findings, history, now, catalog)
        for f in findings:
            truth = _truth(person, f.rule, f.contact_id, day)
            if truth is not None:
                score.counts[f.rule]["day_tp" if truth else "day_fp"] += 1
        for c in plan.create:
            f = c.finding
            stored[c.insight_id] = StoredInsight(
                c.insight_id, f.rule, f.contact_id, f.level, "open", now, f.title, f.body,
                dict(f.evidence),
            )  # fmt: skip
            truth = _truth(person, f.rule, f.contact_id, day)
            if truth is None:
                continue
            score.counts[f.rule]["raised_tp" if truth else "raised_fp"] += 1
            if c.nudge:
                score.counts[f.rule]["push_tp" if truth else "push_fp"] += 1
            key_ = f.contact_id or f.rule
            if truth:
                score.first_caught.setdefault(key_, day)
            else:
                label = person.ties[f.contact_id].label if f.contact_id else f"person:{f.rule}"
                score.negative_alarms[label] += 1
        for u in plan.update:
            row = stored[u.insight_id]
            f = u.finding
            stored[u.insight_id] = StoredInsight(
                row.id, row.rule, row.contact_id, f.level, "open", row.raised_at, f.title, f.body,
                dict(f.evidence),
            )  # fmt: skip
            truth = _truth(person, f.rule, f.contact_id, day)
            if u.nudge and truth is not None:
                score.counts[f.rule]["push_tp" if truth else "push_fp"] += 1
        for r in plan.resolve:  # kept, as the worker keeps them: they decide later pushes
            if r.insight_id in stored:
                stored[r.insight_id] = dataclasses.replace(stored[r.insight_id], status="resolved")
    return score


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def _fmt(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


@dataclass(slots=True)
class Report:
    """Scores over a population; ``table()`` prints it, the properties feed the targets."""

    people: int
    person_years: float
    counts: dict[str, Counter[str]]
    recall: dict[str, tuple[int, int]]  # class -> (caught, positives)
    delays: dict[str, list[int]]  # class -> days from onset to the first true insight
    weekly_delays: list[tuple[str, int | None]]  # weekly declines: (class, days to detection)
    alarms: Counter[str]  # negative class -> false alarms raised

    def precision(self, rule: str | None = None, kind: str = "raised") -> float | None:
        rules = [rule] if rule else list(self.counts)
        tp = sum(self.counts[r][f"{kind}_tp"] for r in rules)
        fp = sum(self.counts[r][f"{kind}_fp"] for r in rules)
        return _ratio(tp, tp + fp)

    @property
    def false_alarms_per_person_year(self) -> float:
        fp = sum(c["raised_fp"] for c in self.counts.values())
        return fp / self.person_years

    def decline_recall(self) -> float | None:
        caught = sum(self.recall[c][0] for c in POSITIVE_CLASSES if c in self.recall)
        total = sum(self.recall[c][1] for c in POSITIVE_CLASSES if c in self.recall)
        return _ratio(caught, total)

    def weekly_within(self, days: int = 21) -> float | None:
        by_class = self.weekly_within_by_class(days).values()
        return _ratio(sum(a for a, _ in by_class), sum(n for _, n in by_class))

    def weekly_within_by_class(self, days: int = 21) -> dict[str, tuple[int, int]]:
        """Class -> (weekly declines of that class caught within ``days``, all of them)."""
        out: dict[str, tuple[int, int]] = {}
        for label in sorted({label for label, _ in self.weekly_delays}):
            delays = [d for c, d in self.weekly_delays if c == label]
            out[label] = (sum(1 for d in delays if d is not None and d <= days), len(delays))
        return out

    def table(self) -> list[str]:
        lines = [
            f"{self.people} people, {self.person_years:.0f} person-years, "
            "evaluated daily at 09:00 local",
            "",
            "| rule | raised | precision (raised) | precision (finding-days) | pushes "
            "| precision (pushes) | false alarms / person-year |",
            "|---|---|---|---|---|---|---|",
        ]
        for rule in [*sorted(self.counts), None]:
            c = Counter[str]()
            for r in [rule] if rule else self.counts:
                c.update(self.counts[r])
            raised = c["raised_tp"] + c["raised_fp"]
            pushes = c["push_tp"] + c["push_fp"]
            lines.append(
                f"| {rule or '**all**'} | {raised} | {_fmt(self.precision(rule))} | "
                f"{_fmt(self.precision(rule, 'day'))} | {pushes} | "
                f"{_fmt(self.precision(rule, 'push'))} | {c['raised_fp'] / self.person_years:.2f} |"
            )
        pushes = sum(c["push_tp"] + c["push_fp"] for c in self.counts.values())
        lines += [
            "",
            f"pushes per person-year: {pushes / self.person_years:.2f} (before the worker's "
            "budget of 1 a day and 3 a week)",
            "",
            "| class | caught / positives | recall | median days to detection | 90th pct |",
            "|---|---|---|---|---|",
        ]
        for cls, (caught, total) in sorted(self.recall.items()):
            d = sorted(self.delays.get(cls, []))
            p90 = d[min(len(d) - 1, int(0.9 * len(d)))] if d else None
            lines.append(
                f"| {cls} | {caught} / {total} | {_fmt(_ratio(caught, total))} | "
                f"{_fmt(statistics.median(d) if d else None, 0)} | {_fmt(p90, 0)} |"
            )
        lines += [
            "",
            f"declines overall: recall {_fmt(self.decline_recall())}; weekly ties' declines caught "
            f"within 21 days of onset: {_fmt(self.weekly_within())} (n={len(self.weekly_delays)}: "
            + ", ".join(f"{k} {a} / {b}" for k, (a, b) in self.weekly_within_by_class().items())
            + ")",
            "false alarms by class of the tie (or person) they were about: "
            + ", ".join(f"{k} {v}" for k, v in self.alarms.most_common()),
        ]
        return lines


def run_population(
    people: Sequence[LabelledPerson],
    catalog: Catalog | None = None,
    engine: Evaluate = evaluate,
    scores: Iterable[PersonScore] | None = None,
) -> Report:
    """Score every person (or combine ``scores`` already computed, e.g. in parallel)."""
    done = (
        list(scores) if scores is not None else [score_person(p, catalog, engine) for p in people]
    )
    by_index = {s.index: s for s in done}
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    recall: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    delays: dict[str, list[int]] = defaultdict(list)
    weekly: list[tuple[str, int | None]] = []
    alarms: Counter[str] = Counter()
    for person in people:
        s = by_index[person.index]
        for rule, c in s.counts.items():
            counts[rule].update(c)
        alarms.update(s.negative_alarms)
        cases: list[tuple[str, str, dt.date, int | None]] = [
            (t.label, cid, t.onset, t.base_days)
            for cid, t in person.ties.items()
            if t.label in POSITIVE_CLASSES + COOLING_CLASSES and t.onset is not None
        ]
        if person.network_onset is not None:
            cases.append(("narrowing", "narrowing", person.network_onset, None))
        if person.self_report_onset is not None:
            cases.append(
                (f"self_report:{person.self_report}", "self_report", person.self_report_onset, None)
            )
        for label, key, onset, base in cases:
            recall[label][1] += 1
            caught = s.first_caught.get(key)
            delay = (caught - onset).days if caught is not None else None
            if delay is not None:
                recall[label][0] += 1
                delays[label].append(delay)
            if base == 7 and label in POSITIVE_CLASSES:
                weekly.append((label, delay))
    years = sum(s.days for s in done) / 365.0
    return Report(
        len(done), years, dict(counts), {k: (v[0], v[1]) for k, v in recall.items()},
        dict(delays), weekly, alarms,
    )  # fmt: skip

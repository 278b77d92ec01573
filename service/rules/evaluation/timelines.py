"""Seeded, labelled timelines: every tie has a known class and, if it declines, an onset.

One person = 12-18 months of logging, 8-15 ties and, for some, questionnaire answers. Tie
classes (``TIE_CLASSES``):

* normal rhythms (negatives): ``weekly``, ``fortnightly``, ``monthly`` (each with drift,
  missed meetings and a tie's own 2-4-week breaks), ``bursty`` (spells of meetings days apart,
  long breaks between), ``holiday_only`` (Christmas, sometimes summer and Easter, calls in
  between), ``long_distance`` (visits of a few days a few times a year, weekly calls),
  ``sparse`` (every few months), ``new_contact`` (first met mid-way), ``reunion`` (a pause of
  months, then meeting again: the pause is not scored, what follows is), ``snoozed`` (a
  stable tie the person snoozed for weeks while not meeting), ``group`` / ``group_ended``
  (seen mostly at a weekly group meetup, which may end);
* declines (positives, from their ``onset``): ``fade`` (gaps stretch by 25-60 % each time),
  ``stop`` (meetings end, messages may go on), ``remote`` (meetings replaced by calls);
* ``cooling`` (a regular tie whose meetings go on at the same pace but, from its
  ``onset``, are almost always the person's suggestion, or feel worse, or both): a
  decline only the warmth rule is asked to see.

What the person notes after a meeting (who suggested it, how it felt) is drawn from a
second stream, ``random.Random(f"{seed}:{index}:notes")``, so adding it changed none of
the first stream's draws: some people note nothing; the others note who suggested a
meeting with their own probability; each tie has its own share of meetings the person
suggests (20-80 %), which may shift once by up to 20 points; ratings are the first
stream's (3-5; 2-3 after a fade's onset), dropped for people who note nothing.

Person-level events: trips (no meetings, messages go on), weeks of not logging anything,
a shrinking network (half the regular ties fade or stop within six weeks), and self-reports
(WHO-5 with UCLA-3/LSNS-6 sometimes) that stay good, stay low, worsen below the cut-off, or
worsen relative to the person's own baseline while staying above it (22 -> 14).

Everything is drawn from ``random.Random(f"{seed}:{index}")``, so person ``index`` is the
same whatever else is generated.
"""

from __future__ import annotations

import datetime as dt
import random
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from service.rules.history import Contact, Interaction, Reflection

__all__ = [
    "COOLING_CLASSES",
    "NEGATIVE_CLASSES",
    "POSITIVE_CLASSES",
    "SELF_REPORT_CLASSES",
    "TIE_CLASSES",
    "LabelledPerson",
    "TieTruth",
    "generate",
    "generate_person",
]

POSITIVE_CLASSES = ("fade", "stop", "remote")
NEGATIVE_CLASSES = (
    "weekly", "fortnightly", "monthly", "bursty", "holiday_only", "long_distance", "sparse",
    "new_contact", "reunion", "snoozed", "group", "group_ended",
)  # fmt: skip
#: Declines that do not stop or slow meetings: only the warmth rule is scored on them.
COOLING_CLASSES = ("cooling",)
TIE_CLASSES = NEGATIVE_CLASSES + POSITIVE_CLASSES + COOLING_CLASSES
SELF_REPORT_CLASSES = ("none", "stable_good", "stable_low", "worse_absolute", "worse_relative")
END = dt.date(2026, 11, 30)
_ZONES = (
    "Europe/Lisbon", "Europe/Berlin", "America/New_York", "America/Los_Angeles",
    "America/Sao_Paulo", "Asia/Tokyo", "Asia/Kolkata", "Australia/Sydney", "UTC",
)  # fmt: skip
_REMOTE = (("call", 40), ("text", 35), ("video", 15), ("voice", 5), ("social", 5))
_CADENCES = (7, 14, 30, 60, 90, 180, 365)
# Class -> weight among a person's own (non-group) ties.
_WEIGHTS = {
    "weekly": 10, "fortnightly": 10, "monthly": 12, "bursty": 8, "holiday_only": 6,
    "long_distance": 4, "sparse": 12, "new_contact": 4, "reunion": 2, "snoozed": 3,
    "fade": 4, "stop": 3, "remote": 2,
}  # fmt: skip
_BASE = {"weekly": 7, "fortnightly": 14, "monthly": 30}


@dataclass(frozen=True, slots=True)
class TieTruth:
    """What really happens to one tie: its class, and when a decline (if any) begins."""

    contact_id: str
    label: str
    base_days: int | None = None  # the usual gap of a regular tie before any decline
    onset: dt.date | None = None  # declines: the first meeting that did not happen
    unscored: tuple[dt.date, dt.date] | None = None  # reunion: the pause, not judged


@dataclass(slots=True)
class LabelledPerson:
    """One person's records (typed, as the engine reads them) and the truth about them."""

    index: int
    time_zone: str
    start: dt.date  # first day of logging
    end: dt.date  # last evaluated day
    contacts: dict[str, Contact]
    interactions: list[Interaction]
    reflections: list[Reflection]
    ties: dict[str, TieTruth]
    snoozes: dict[str, tuple[dt.date, dt.date]]  # contact -> (snoozed on, snoozed until)
    network: str = "steady"  # or "shrinking"
    network_onset: dt.date | None = None
    self_report: str = "none"
    self_report_onset: dt.date | None = None
    away: list[tuple[dt.date, dt.date, str]] = field(default_factory=list)  # trips, no logging

    def contacts_on(self, day: dt.date) -> dict[str, Contact]:
        """The contact rows as they stood that morning (a snooze exists once it was set)."""
        out = {}
        for cid, row in self.contacts.items():
            snooze = self.snoozes.get(cid)
            if snooze is not None and snooze[0] <= day:
                row = Contact(row.id, row.name, row.circle, row.cadence_days, snooze[1])  # noqa: PLW2901
            out[cid] = row
        return out


class _Builder:
    def __init__(self, rng: random.Random, start: dt.date, days: int) -> None:
        self.rng = rng
        self.start = start
        self.days = days
        self.events: list[tuple[int, str, tuple[str, ...], dict[str, Any]]] = []

    def day(self, i: int) -> dt.date:
        return self.start + dt.timedelta(days=i)

    def meet(self, i: int, cids: tuple[str, ...], quality: int | None = None) -> None:
        if 0 <= i < self.days:
            q = quality if quality is not None else self.rng.choice((None, 3, 4, 4, 5))
            self.events.append((i, "in_person", cids, {"quality": q}))

    def remote(self, i: int, cid: str) -> None:
        if 0 <= i < self.days:
            kind = self.rng.choices([k for k, _ in _REMOTE], [w for _, w in _REMOTE])[0]
            self.events.append((i, kind, (cid,), {}))

    def remote_stream(
        self, cid: str, mean_gap: float, first: int = 0, last: int | None = None
    ) -> None:
        t = first + self.rng.uniform(0, mean_gap)
        while t < (self.days if last is None else last):
            self.remote(int(t), cid)
            t += self.rng.gammavariate(2.0, mean_gap / 2.0)

    def regular(self, base: float, first: int, last: int, *, miss: float = 0.12) -> list[int]:
        """Meeting days every ``base`` days with drift, missed meetings and the tie's breaks."""
        rng = self.rng
        breaks = []
        for _ in range(rng.choice((0, 1, 1, 2))):  # a holiday or a busy month of their own
            b = rng.randrange(first, max(first + 1, last))
            breaks.append((b, b + rng.randint(12, 24)))
        out: list[int] = []
        t = first + rng.uniform(0, base)
        while t < last:
            i = int(t)
            if rng.random() >= miss and not any(a <= i < b for a, b in breaks):
                out.append(i)
            t += max(1.0, rng.gauss(base, base * 0.18))
        return out


def _name(j: int) -> str:
    names = ("Ana", "Ben", "Cleo", "Dev", "Eli", "Fatima", "Gus", "Hana", "Ivo", "Jun", "Kai",
             "Lena", "Marco", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tariq")  # fmt: skip
    return f"{names[j % len(names)]} {chr(65 + j // len(names))}."


def _circle(rng: random.Random, label: str, base: int | None) -> str:
    if base == 7:
        return rng.choices(("inner", "close"), (3, 1))[0]
    if base == 14:
        return rng.choices(("inner", "close"), (1, 2))[0]
    if base == 30:
        return rng.choices(("close", "social"), (3, 1))[0]
    return {
        "bursty": rng.choice(("close", "social")),
        "holiday_only": rng.choices(("close", "social", "wider"), (3, 5, 2))[0],
        "long_distance": rng.choice(("inner", "close")),
        "sparse": rng.choice(("social", "wider")),
        "group": rng.choices(("close", "social"), (1, 3))[0],
    }.get(label, "close")


def _holidays(b: _Builder, cid: str) -> list[int]:
    rng = b.rng
    out = []
    for year in (b.start.year, b.start.year + 1, b.start.year + 2):
        xmas = (dt.date(year, 12, 21) - b.start).days + rng.randint(0, 4)
        out += sorted(rng.sample(range(xmas, xmas + 10), rng.randint(2, 5)))
        if rng.random() < 0.5:
            summer = (dt.date(year, 7, 10) - b.start).days + rng.randint(0, 40)
            out += [summer + k for k in range(rng.randint(1, 4))]
        if rng.random() < 0.3:
            easter = (dt.date(year, 4, 1) - b.start).days + rng.randint(0, 20)
            out += [easter, easter + 1][: rng.randint(1, 2)]
    return out


def _tie(b: _Builder, cid: str, label: str, person_shrinks: int | None) -> TieTruth:  # noqa: PLR0915 -- one branch per class reads best side by side
    """Plan one tie's meetings and remote contact; return its truth."""
    rng, days = b.rng, b.days
    base = _BASE.get(label) or (
        _BASE[rng.choice(tuple(_BASE))] if label in POSITIVE_CLASSES else None
    )
    if label in ("fade", "stop", "remote"):
        assert base is not None
        earliest = max(120, 5 * base)
        # A gradual fade needs months to show; a stop or a move to calls, weeks.
        latest = days - (150 if label == "fade" else 90)
        onset_i = (
            person_shrinks + rng.randint(0, 42)
            if person_shrinks is not None
            else rng.randint(earliest, latest)
        )
        onset_i = min(max(onset_i, earliest), latest)
        before = [i for i in b.regular(base, 0, onset_i) if i < onset_i]
        onset_i = (before[-1] + base) if before else onset_i
        for i in before:
            b.meet(i, (cid,))
        b.remote_stream(cid, rng.uniform(10, 40))
        if label == "fade":
            growth, gap, t = rng.uniform(1.25, 1.6), float(base), float(onset_i - base)
            while True:
                gap *= growth
                t += gap * rng.uniform(0.9, 1.1)
                if t >= days or gap > 12 * base:
                    break
                b.meet(int(t), (cid,), rng.choice((None, 2, 3, 3)))
        elif label == "remote":
            for i in b.regular(base, onset_i, days, miss=0.05):
                b.remote(i, cid)
        return TieTruth(cid, label, base, b.day(onset_i))
    if label in _BASE:
        assert base is not None
        for i in b.regular(base, 0, days):
            b.meet(i, (cid,))
        b.remote_stream(cid, rng.uniform(7, 40))
    elif label == "bursty":
        t, mean = rng.uniform(0, 60), rng.uniform(30, 90)
        while t < days:
            for _ in range(rng.randint(2, 5)):
                b.meet(int(t), (cid,))
                t += rng.uniform(1, 3.5)
            t += rng.gammavariate(2.0, mean / 2.0)
        b.remote_stream(cid, rng.uniform(10, 50))
    elif label == "holiday_only":
        for i in _holidays(b, cid):
            b.meet(i, (cid,))
        if rng.random() < 0.6:
            b.remote_stream(cid, rng.uniform(14, 45))
    elif label == "long_distance":
        t = rng.uniform(0, 120)
        while t < days:
            for k in range(rng.randint(2, 5)):
                b.meet(int(t) + k, (cid,))
            t += rng.uniform(80, 160)
        b.remote_stream(cid, rng.uniform(5, 9))
    elif label == "sparse":
        t, mean = rng.uniform(0, 120), rng.uniform(60, 180)
        while t < days:
            b.meet(int(t), (cid,))
            t += rng.gammavariate(2.0, mean / 2.0)
        if rng.random() < 0.5:
            b.remote_stream(cid, rng.uniform(30, 90))
    elif label == "new_contact":
        base = rng.choice((7, 14, 30))
        first = rng.randint(60, days - 60)
        b.meet(first, (cid,))
        for i in b.regular(base, first + 3, days):
            b.meet(i, (cid,))
        b.remote_stream(cid, rng.uniform(7, 30), first=first)
        return TieTruth(cid, label, base)
    elif label == "reunion":
        pause_from = rng.randint(60, 150)
        pause_to = min(days - 90, pause_from + rng.randint(110, 200))
        for i in b.regular(14, 0, pause_from):
            b.meet(i, (cid,))
        b.meet(pause_to, (cid,))
        for i in b.regular(30, pause_to + 5, days):
            b.meet(i, (cid,))
        b.remote_stream(cid, 30.0)
        # The pause is a real lapse that later heals: not scored either way.
        return TieTruth(cid, label, 30, unscored=(b.day(pause_from - 20), b.day(pause_to)))
    return TieTruth(cid, label, base)


def _snooze(b: _Builder, cid: str, base: int) -> tuple[dt.date, dt.date]:
    """A stable tie the person snoozed for 3-8 weeks; they meet again soon after."""
    rng = b.rng
    on = rng.randint(90, b.days - 90)
    until = on + rng.randint(21, 56)
    b.events = [e for e in b.events if not (e[2] == (cid,) and on <= e[0] <= until)]
    b.meet(until + rng.randint(1, 10), (cid,))
    return b.day(on), b.day(until)


def _group(b: _Builder, cids: list[str], ends: bool) -> int | None:
    rng = b.rng
    first, end_i = rng.randint(0, 40), b.days
    ended = None
    if ends:
        ended = rng.randint(150, b.days - 60)
        end_i = ended
    for i in b.regular(7, first, end_i, miss=0.1):
        present = tuple(c for c in cids if rng.random() < 0.85)
        if len(present) >= 2:
            b.meet(i, present)
    for cid in cids:
        if rng.random() < 0.4:  # some are also seen one-to-one now and then
            for i in b.regular(rng.uniform(45, 90), first, b.days, miss=0.2):
                b.meet(i, (cid,))
        if rng.random() < 0.5:
            b.remote_stream(cid, rng.uniform(20, 60))
    return ended


def _self_reports(b: _Builder, label: str) -> tuple[list[tuple[int, dict[str, Any]]], int | None]:
    rng = b.rng
    if label == "none":
        return [], None
    onset = rng.randint(150, b.days - 75) if label.startswith("worse") else None
    level = {
        "stable_good": rng.uniform(15.5, 22.0), "stable_low": rng.uniform(8.0, 11.5),
        "worse_absolute": rng.uniform(15.0, 19.0), "worse_relative": rng.uniform(20.5, 23.0),
    }[label]  # fmt: skip
    drop = 0.0
    if label == "worse_absolute":
        drop = rng.uniform(level - 11.0, level - 8.0)  # ends between 8 and 11
    elif label == "worse_relative":
        drop = rng.uniform(6.0, min(9.0, level - 14.0))  # ends at 14 or above
    ucla = rng.random() < 0.5
    lsns = rng.random() < 0.3
    out = []
    t = rng.uniform(0, 20)
    while t < b.days:
        i = int(t)
        mean = level - (drop if onset is not None and i >= onset else 0.0)
        who = max(0, min(25, round(rng.gauss(mean, 1.4))))
        items = [who // 5 + (1 if k < who % 5 else 0) for k in range(5)]
        answers: dict[str, Any] = {"who5": items}
        if ucla:
            lonely = max(3, min(9, round(rng.gauss(3.5 + max(0.0, 18 - mean) * 0.4, 0.7))))
            answers["ucla3"] = [lonely // 3 + (1 if k < lonely % 3 else 0) for k in range(3)]
        if lsns:
            net = max(0, min(30, round(rng.gauss(17 - max(0.0, 18 - mean) * 0.8, 1.5))))
            answers["lsns6"] = [min(5, net // 6 + (1 if k < net % 6 else 0)) for k in range(6)]
        out.append((i, answers))
        t += rng.uniform(12, 35)
    return out, onset


class _Notes:
    """What the person notes after each meeting, from its own random stream."""

    def __init__(self, rng: random.Random, b: _Builder, ties: dict[str, TieTruth]) -> None:
        self.rng = rng
        self.rate = rng.choice((0.0, 0.0, 0.6, 0.85, 0.95))  # of meetings noted
        self.share: dict[str, tuple[float, float, int]] = {}  # cid -> (before, after, at)
        self.cooling: tuple[str, int, str] | None = None  # (cid, onset day, manner)
        regular = [t for t in ties.values() if t.label in _BASE and t.base_days]
        rng.shuffle(regular)
        if self.rate and regular and rng.random() < 0.4:
            t = regular[0]
            base = t.base_days or 7
            lo, hi = max(120, 12 * base), b.days - 8 * base
            if lo < hi:
                manner = rng.choice(("one_sided", "feeling_worse", "both"))
                self.cooling = (t.contact_id, rng.randint(lo, hi), manner)

    def relabel(self, b: _Builder, ties: dict[str, TieTruth]) -> None:
        """The cooling tie's truth: its onset is its first meeting from the drawn day."""
        if self.cooling is None:
            return
        cid, at, _ = self.cooling
        days = sorted(
            i for i, kind, who, _ in b.events if who == (cid,) and kind == "in_person" and i >= at
        )
        if days:
            self.cooling = (cid, days[0], self.cooling[2])
            ties[cid] = TieTruth(cid, "cooling", ties[cid].base_days, b.day(days[0]))
        else:
            self.cooling = None

    def note(
        self, i: int, who: tuple[str, ...], quality: int | None
    ) -> tuple[int | None, str | None]:
        """(quality, initiated_by) as noted for a meeting on day ``i`` with ``who``."""
        rng = self.rng
        if not self.rate:
            return None, None
        cid = who[0]
        if cid not in self.share:
            cooling = self.cooling is not None and self.cooling[0] == cid
            # A tie that turns one-sided was not one-sided before (at most half theirs).
            before = rng.uniform(0.2, 0.5 if cooling else 0.8)
            after = min(0.95, max(0.05, before + rng.uniform(-0.2, 0.2)))
            self.share[cid] = (before, after, rng.randrange(0, 548))
        before, after, shift = self.share[cid]
        mine = before if i < shift else after
        if self.cooling is not None and self.cooling[0] == cid and i >= self.cooling[1]:
            manner = self.cooling[2]
            if manner in ("one_sided", "both"):
                mine = 0.95
            if manner in ("feeling_worse", "both") and quality is not None:
                quality = rng.choice((2, 3, 3))
        initiated_by = None
        if rng.random() < self.rate:
            initiated_by = "me" if rng.random() < mine else rng.choice(("them", "mutual"))
        return quality, initiated_by


def generate_person(seed: int, index: int, end: dt.date = END) -> LabelledPerson:  # noqa: PLR0915
    rng = random.Random(f"{seed}:{index}")  # noqa: S311 -- reproducible fake data, not secrets
    zone_name = rng.choice(_ZONES)
    zone = zoneinfo.ZoneInfo(zone_name)
    days = rng.randint(365, 548)
    start = end - dt.timedelta(days=days - 1)
    b = _Builder(rng, start, days)
    shrinking = rng.random() < 0.15
    shrink_at = rng.randint(150, days - 200) if shrinking else None
    n = rng.randint(8, 15)
    labels = rng.choices(list(_WEIGHTS), list(_WEIGHTS.values()), k=n)
    if shrinking:  # most of the ties they see often go within six weeks: at least four
        regular = [k for k, lab in enumerate(labels) if lab in (*_BASE, "bursty", "sparse")]
        going = [k for k in regular if labels[k] in _BASE and rng.random() < 0.7]
        for k in regular:
            if len(going) >= 4:
                break
            if k not in going:
                going.append(k)
        for k in going:
            labels[k] = rng.choices(("stop", "fade"), (3, 1))[0]
    contacts: dict[str, Contact] = {}
    ties: dict[str, TieTruth] = {}
    snoozes: dict[str, tuple[dt.date, dt.date]] = {}
    for j, label in enumerate(labels):
        cid = f"p{index:05d}-c{j:02d}"
        real = "weekly" if label == "snoozed" else label
        truth = _tie(b, cid, real, shrink_at if shrinking and label in ("fade", "stop") else None)
        if label == "snoozed":
            snoozes[cid] = _snooze(b, cid, 7)
            truth = TieTruth(cid, "snoozed", 7)
        ties[cid] = truth
        circle = _circle(rng, label, truth.base_days)
        wish = (truth.base_days or 0) * rng.uniform(1.0, 1.5)
        cadence = (
            min(_CADENCES, key=lambda c: abs(c - wish)) if wish and rng.random() < 0.25 else None
        )
        contacts[cid] = Contact(cid, _name(j), circle, cadence)
    if rng.random() < 0.3:  # a weekly group meetup (a choir, a running club, a class)
        size = rng.randint(3, 5)
        cids = [f"p{index:05d}-g{k:02d}" for k in range(size)]
        ended = _group(b, cids, ends=rng.random() < 0.5)
        for k, cid in enumerate(cids):
            ties[cid] = TieTruth(cid, "group_ended" if ended is not None else "group", 7)
            contacts[cid] = Contact(cid, _name(n + k), _circle(rng, "group", None))
    notes = _Notes(random.Random(f"{seed}:{index}:notes"), b, ties)  # noqa: S311
    notes.relabel(b, ties)
    person = LabelledPerson(index, zone_name, start, end, contacts, [], [], ties, snoozes)
    if shrinking:
        person.network, person.network_onset = "shrinking", b.day(shrink_at or 0)
    # Trips (meetings pause, messages go on) and weeks of logging nothing at all.
    for _ in range(rng.choice((0, 1, 1, 2))):
        a = rng.randint(30, days - 30)
        person.away.append((b.day(a), b.day(a + rng.randint(8, 24)), "trip"))
    if rng.random() < 0.25:
        a = rng.randint(60, days - 60)
        person.away.append((b.day(a), b.day(a + rng.randint(21, 56)), "not_logging"))
    label = rng.choices(SELF_REPORT_CLASSES, (40, 30, 6, 12, 12))[0]
    answers, report_onset = _self_reports(b, label)
    person.self_report = label
    person.self_report_onset = b.day(report_onset) if report_onset is not None else None
    if label == "stable_low":
        person.self_report_onset = start

    def stamp(i: int) -> dt.datetime:
        local = dt.datetime.combine(b.day(i), dt.time(rng.randint(8, 21), rng.randrange(0, 60, 5)))
        return local.replace(tzinfo=zone).astimezone(dt.UTC)

    def hidden(day: dt.date, kind: str) -> bool:
        return any(a <= day <= z and (why == "not_logging" or kind == "in_person")
                   for a, z, why in person.away)  # fmt: skip

    events = sorted(b.events, key=lambda e: (e[0], e[2]))
    for n_, (i, kind, who, extra) in enumerate(events):
        quality, initiated_by = (
            notes.note(i, who, extra["quality"]) if kind == "in_person" else (None, None)
        )
        if not hidden(b.day(i), kind):
            person.interactions.append(
                Interaction(f"p{index:05d}-i{n_:05d}", who, kind, stamp(i), quality, initiated_by)
            )
    for n_, (i, ans) in enumerate(answers):
        if not hidden(b.day(i), "reflection"):
            person.reflections.append(
                Reflection(
                    f"p{index:05d}-r{n_:04d}",
                    stamp(i),
                    ucla3=tuple(ans["ucla3"]) if "ucla3" in ans else None,
                    lsns6=tuple(ans["lsns6"]) if "lsns6" in ans else None,
                    who5=tuple(ans["who5"]),
                )
            )
    person.interactions.sort(key=lambda x: (x.occurred_at, x.id))
    person.reflections.sort(key=lambda x: (x.occurred_at, x.id))
    return person


def generate(seed: int, people: int, start: int = 0) -> list[LabelledPerson]:
    """People ``start`` .. ``start + people - 1`` of the population drawn from ``seed``."""
    return [generate_person(seed, i) for i in range(start, start + people)]

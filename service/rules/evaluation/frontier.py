"""What the records allow: the best any silence line can do for a weekly tie.

Issue 11 asks for a weekly tie's decline to be noticed within 21 days of its onset, and for
nine in ten raised insights to be right. Whether both can hold is a property of the data,
not of the engine, so it is measured here with an *oracle* that knows more than any rule
can:

* which ties really are weekly (the generator's truth, not a fitted rhythm);
* exactly when the person was away (trips and weeks of not logging), taken out of every
  silence with no cap and no estimation;
* snoozes, as the engine knows them.

The oracle raises a weekly one-to-one tie the day its in-person silence (away days taken
out) reaches ``line`` days, once per silence. With ``learn=True`` it also does what a rule
could do with the tie's history: a tie that already came back from a silence that long is
raised only past 1.1 x the longest one. A stop and a tie's own holiday leave the same
records until the holiday ends (meetings pause, calls go on at the tie's own pace), so
for them the silence is all a rule can read; a gradual fade's first gaps (25-60 % longer
than the usual week) are inside a weekly tie's normal noise. So if no line gives both
precision >= 0.9 and most weekly declines within 21 days, no rule can.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from service.rules.evaluation.timelines import COOLING_CLASSES, POSITIVE_CLASSES, LabelledPerson

__all__ = ["LinePoint", "weekly_silence_frontier"]

#: One-to-one ties that meet weekly: the normal ones (their own breaks included), the
#: snoozed ones, the cooling ones (meetings go on) and the weekly declines.
_WEEKLY = ("weekly", "snoozed", *COOLING_CLASSES, *POSITIVE_CLASSES)


@dataclass(frozen=True, slots=True)
class LinePoint:
    """The oracle's score for one silence line."""

    line: int  # days of in-person silence, away days taken out, at which a tie is raised
    raised: int  # insights raised (one per silence that reached the line)
    true: int  # ... about a tie already in decline that day
    caught_within: int  # weekly declines raised within ``within`` days of their onset
    caught: int  # weekly declines raised at all
    declines: int  # weekly declines in the population

    @property
    def precision(self) -> float | None:
        return self.true / self.raised if self.raised else None

    @property
    def within_share(self) -> float | None:
        return self.caught_within / self.declines if self.declines else None


def _meeting_days(person: LabelledPerson) -> dict[str, list[dt.date]]:
    zone = zoneinfo.ZoneInfo(person.time_zone)
    days: dict[str, set[dt.date]] = defaultdict(set)
    for i in person.interactions:
        if i.in_person and len(i.contact_ids) == 1:
            days[i.contact_ids[0]].add(i.occurred_at.astimezone(zone).date())
    return {cid: sorted(d) for cid, d in days.items()}


def _crossings(
    person: LabelledPerson, meetings: Sequence[dt.date], cid: str, lines: Sequence[int], learn: bool
) -> dict[int, list[dt.date]]:
    """For each line, the days this tie's silence reached it (one per silence)."""
    away = {
        a + dt.timedelta(days=k)
        for a, z, _ in person.away
        for k in range((z - a).days + 1)
    }  # fmt: skip
    snooze = person.snoozes.get(cid)
    out: dict[int, list[dt.date]] = defaultdict(list)
    longest = 0  # the longest silence this tie came back from, in effective days
    ends = [*meetings[1:], person.end + dt.timedelta(days=1)]
    for last, following in zip(meetings, ends, strict=True):
        effective, day = 0, last
        reached: set[int] = set()
        while True:
            day += dt.timedelta(days=1)
            if day >= following or day > person.end:
                break
            if snooze is not None and snooze[0] <= day <= snooze[1]:
                effective = 0  # a snooze restarts the silence, as in the engine
                continue
            if day not in away:
                effective += 1
            for line in lines:
                bar = max(line, 1.1 * longest) if learn else line
                if line not in reached and effective >= bar:
                    reached.add(line)
                    out[line].append(day)
        if following <= person.end:
            longest = max(longest, effective)
    return out


def weekly_silence_frontier(
    people: Iterable[LabelledPerson],
    lines: Sequence[int] = tuple(range(14, 50, 2)),
    *,
    within: int = 21,
    learn: bool = False,
) -> list[LinePoint]:
    """Score the oracle's silence line, for each of ``lines``, over weekly one-to-one ties."""
    raised = dict.fromkeys(lines, 0)
    true = dict.fromkeys(lines, 0)
    caught_within = dict.fromkeys(lines, 0)
    caught = dict.fromkeys(lines, 0)
    declines = 0
    for person in people:
        meetings = _meeting_days(person)
        for cid, tie in person.ties.items():
            if tie.base_days != 7 or tie.label not in _WEEKLY or cid not in meetings:
                continue
            decline = tie.label in POSITIVE_CLASSES and tie.onset is not None
            declines += decline
            for line, days in _crossings(person, meetings[cid], cid, lines, learn).items():
                hits = [d for d in days if decline and tie.onset is not None and d >= tie.onset]
                raised[line] += len(days)
                true[line] += len(hits)
                if hits and tie.onset is not None:
                    caught[line] += 1
                    caught_within[line] += (hits[0] - tie.onset).days <= within
    return [
        LinePoint(line, raised[line], true[line], caught_within[line], caught[line], declines)
        for line in lines
    ]

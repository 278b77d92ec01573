"""The person as a whole, seen before any single tie is judged.

A silence with one friend means something only if the person was otherwise living as
usual. When they met nobody at all for far longer than they ever do (a trip, an illness,
weeks of not logging), every tie falls silent at once: those days are *away days* and are
taken out of every tie's silence (up to ``max_away_discount_days`` per silence, so a person
who really stops seeing everyone is still noticed). A run counts as away when it is longer
than ``away_factor`` x the 90th percentile of the person's own gaps between days with any
meeting, and at least ``min_away_days``; and only for someone who met at least
``min_people`` people lately.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PersonView", "person_view"]


@dataclass(frozen=True, slots=True)
class PersonView:
    away: tuple[tuple[dt.date, dt.date], ...]  # inclusive runs of days away, ascending
    starts: tuple[dt.date, ...]
    max_discount: int

    def away_days(self, after: dt.date, through: dt.date) -> int:
        """Away days in the half-open range (after, through]."""
        total = 0
        i = max(0, bisect.bisect_right(self.starts, after) - 1)
        for first, last in self.away[i:]:
            if first > through:
                break
            lo, hi = max(first, after + dt.timedelta(days=1)), min(last, through)
            if hi >= lo:
                total += (hi - lo).days + 1
        return total

    def effective(self, after: dt.date, through: dt.date) -> int:
        """Days from ``after`` to ``through`` less the away days (capped) between them."""
        raw = (through - after).days
        return raw - min(self.max_discount, self.away_days(after, through))


def person_view(
    meeting_days: Sequence[dt.date],
    today: dt.date,
    *,
    lookback_days: int,
    away_factor: float,
    min_away_days: int,
    max_discount: int,
    people_met: int,
    min_people: int,
) -> PersonView:
    """Away runs from the sorted days on which the person met anyone in person.

    With fewer than ``min_people`` people met lately, everyone falling silent cannot be told
    from one friendship ending, so nobody is ever "away".
    """
    since = today - dt.timedelta(days=lookback_days)
    days = [d for d in meeting_days if d >= since]
    if len(days) < 8 or people_met < min_people:  # too little to know what normal is
        return PersonView((), (), max_discount)
    gaps = sorted((b - a).days for a, b in itertools.pairwise(days))
    p90 = gaps[min(len(gaps) - 1, math.ceil(0.9 * len(gaps)) - 1)]
    longest_normal = max(min_away_days, math.ceil(away_factor * p90))
    runs: list[tuple[dt.date, dt.date]] = []
    for a, b in zip([*days], [*days[1:], today + dt.timedelta(days=1)], strict=True):
        empty = (b - a).days - 1
        if empty >= longest_normal:
            runs.append((a + dt.timedelta(days=1), b - dt.timedelta(days=1)))
    return PersonView(tuple(runs), tuple(r[0] for r in runs), max_discount)

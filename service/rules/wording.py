"""Small helpers that turn numbers and kinds into the plain English the templates need."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.rules.catalog import Catalog

__all__ = [
    "count_word", "duration", "every", "join", "kinds_phrase", "long_date", "times",
]  # fmt: skip

_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip


def count_word(n: int) -> str:
    """'four' for 4; digits from eleven on, where words slow a reader down."""
    return _WORDS[n] if 0 <= n < len(_WORDS) else str(n)


def times(n: int) -> str:
    return {0: "not at all", 1: "once", 2: "twice"}.get(n, f"{n} times")


def every(days: float) -> str:
    """The object of 'every ...' for a usual gap: 'day', '9 days', 'week', '3 weeks', 'month'.

    Rounded to the unit a person thinks in: days below ten, weeks below two months, then
    months.
    """
    d = max(1, round(days))
    if d == 1:
        return "day"
    if d < 10 and d != 7:
        return f"{d} days"
    if d < 60:
        weeks = max(1, round(d / 7))
        return "week" if weeks == 1 else f"{weeks} weeks"
    months = round(d / 30.4)
    return "month" if months == 1 else f"{months} months"


def duration(days: int) -> str:
    """How long a silence has lasted, always with its unit: '12 days', '5 weeks', '3 months'.

    Whole units, rounded down (36 days is '5 weeks', never '6'), so it never overstates.
    """
    if days < 21:
        return "1 day" if days == 1 else f"{days} days"
    if days < 61:
        return f"{days // 7} weeks"
    months = int(days // 30.4)
    return f"{months} months" if months < 24 else f"{days // 365} years"


def join(parts: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def kinds_phrase(catalog: Catalog, kinds: Iterable[str]) -> str:
    """'calls' or 'calls and texts': the kinds used, most frequent first (ties by name)."""
    counts = Counter(kinds)
    ordered = sorted(counts, key=lambda k: (-counts[k], k))
    return join([catalog.kind_noun(k, many=True) for k in ordered])


def long_date(day: dt.date) -> str:
    """'3 March 2025': unambiguous in every English locale."""
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"

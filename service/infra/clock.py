"""The wall clock, once: what services read "now" from, and what tests replace.

Services take ``clock: WallClock = utcnow`` so a test can move time (the care ladder's
rungs, a push credential's expiry) without sleeping. Not the sync's hybrid logical clock
(``sync/hlc.py``), which orders writes rather than telling the time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TypeAlias

__all__ = ["WallClock", "utcnow"]

WallClock: TypeAlias = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    """Now, aware, in UTC."""
    return dt.datetime.now(dt.UTC)

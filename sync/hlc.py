"""Hybrid logical clocks as sortable strings.

A stamp is ``"{ms:013d}-{counter:04x}-{node}"``: wall-clock milliseconds, a counter for
events within the same millisecond, and the node (device) id. Plain string comparison is
causal order, so stamps can be compared in SQL, in Python and on a phone alike.

The clock follows Kulkarni et al.'s HLC rules: ``now()`` for a local event, ``receive()``
to fold in a stamp seen from elsewhere, so an event after seeing a stamp orders after it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["HLC", "HLC_PATTERN", "MAX_COUNTER", "Clock", "InvalidHLC", "format_hlc", "parse"]

MAX_COUNTER = 0xFFFF
HLC_PATTERN = r"^[0-9]{13}-[0-9a-f]{4}-[A-Za-z0-9_-]{1,64}\Z"
_HLC_RE = re.compile(HLC_PATTERN)


class InvalidHLC(ValueError):
    """A string that is not a well-formed HLC stamp."""


@dataclass(frozen=True, slots=True, order=True)
class HLC:
    """A parsed stamp; ordering matches the string order."""

    ms: int
    counter: int
    node: str

    def __str__(self) -> str:
        return format_hlc(self.ms, self.counter, self.node)


def format_hlc(ms: int, counter: int, node: str) -> str:
    return f"{ms:013d}-{counter:04x}-{node}"


def parse(stamp: str) -> HLC:
    """Parse a stamp, raising :class:`InvalidHLC` if it is malformed."""
    if not _HLC_RE.match(stamp):
        raise InvalidHLC(f"not an HLC stamp: {stamp[:80]!r}")
    ms, counter, node = stamp.split("-", 2)
    return HLC(int(ms), int(counter, 16), node)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Clock:
    """A node's hybrid logical clock. Not thread-safe; one per device or process."""

    def __init__(self, node: str, wall: Callable[[], int] = _wall_ms) -> None:
        self.node = node
        self._wall = wall
        self._ms = 0
        self._counter = 0

    @property
    def last(self) -> HLC:
        return HLC(self._ms, self._counter, self.node)

    def wall_ms(self) -> int:
        return self._wall()

    def now(self) -> str:
        """Stamp a local event."""
        wall = self._wall()
        if wall > self._ms:
            self._ms, self._counter = wall, 0
        else:
            self._bump()
        return format_hlc(self._ms, self._counter, self.node)

    def receive(self, stamp: str) -> None:
        """Fold a remote stamp in, so later local stamps order after it."""
        remote = parse(stamp)
        wall = self._wall()
        top = max(wall, self._ms, remote.ms)
        if top == self._ms == remote.ms:
            self._counter = max(self._counter, remote.counter)
            self._bump()
        elif top == self._ms:
            self._bump()
        elif top == remote.ms:
            self._ms, self._counter = remote.ms, remote.counter
            self._bump()
        else:
            self._ms, self._counter = top, 0

    def restore(self, stamp: str) -> None:
        """Resume from a persisted stamp of this node (e.g. after an app restart)."""
        saved = parse(stamp)
        self._ms, self._counter = max((self._ms, self._counter), (saved.ms, saved.counter))

    def _bump(self) -> None:
        if self._counter >= MAX_COUNTER:
            # Counter exhausted inside one millisecond: borrow the next millisecond
            # rather than wrap, which would break ordering.
            self._ms += 1
            self._counter = 0
        else:
            self._counter += 1

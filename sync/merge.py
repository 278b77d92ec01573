"""The merge law: field-level last-writer-wins by HLC, with final deletes.

A record's state is its field values, the HLC that wrote each field, and a tombstone flag
with its own clock. Merging two states:

* each field takes the value with the greater clock (ties broken by the canonical JSON of
  the value, so the result never depends on argument order);
* ``deleted`` is sticky: if either side is deleted the result is deleted, its clock is the
  greatest deleting clock, and the field values are dropped — a tombstone keeps no content,
  and no later edit can resurrect it ("deletes win").

This makes :func:`merge` a join semilattice — commutative, associative and idempotent — so
replicas that have seen the same writes hold the same state whatever order they saw them
in. ``tests/unit/test_merge_laws.py`` proves it with Hypothesis.

:func:`apply` is the server's view of one incoming change: the merged state plus what the
change lost (``superseded``) and what it overwrote from another device (``displaced``);
both go to the conflict history so no write is ever silently lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from sync.hlc import parse

__all__ = ["EMPTY_CLOCK", "Loss", "Outcome", "RecordState", "apply", "merge", "tombstone"]

# Fields never written by a client (server-filled defaults) carry this clock: any real
# stamp beats it.
EMPTY_CLOCK = ""

_canonical = msgspec.json.Encoder(order="sorted")


# The types below are msgspec Structs rather than frozen dataclasses: the push path builds
# one or more per change, and a Struct costs a tenth as much to build.


class RecordState(msgspec.Struct, frozen=True):
    """One replica's view of a record."""

    fields: Mapping[str, Any] = msgspec.field(default_factory=dict)
    clocks: Mapping[str, str] = msgspec.field(default_factory=dict)
    deleted: bool = False
    deleted_hlc: str = EMPTY_CLOCK

    @property
    def hlc(self) -> str:
        """The newest stamp that shaped this state."""
        return max([self.deleted_hlc, *self.clocks.values()], default=EMPTY_CLOCK)


class Loss(msgspec.Struct, frozen=True):
    """A field value that did not survive a merge, kept so its owner can recover it."""

    field: str
    value: Any
    hlc: str
    winner_hlc: str
    reason: str  # "older" (a newer write won), "deleted" (the record is deleted), "overwritten"


class Outcome(msgspec.Struct, frozen=True):
    state: RecordState
    superseded: list[Loss]
    displaced: list[Loss]
    changed: bool


def tombstone(hlc: str) -> RecordState:
    return RecordState(deleted=True, deleted_hlc=hlc)


def _key(clock: str, value: Any) -> tuple[str, bytes]:
    return (clock, _canonical.encode(value))


def merge(a: RecordState, b: RecordState) -> RecordState:
    """Join two states of the same record."""
    if a.deleted or b.deleted:
        stamps = [s.deleted_hlc for s in (a, b) if s.deleted]
        return tombstone(max(stamps))
    fields: dict[str, Any] = {}
    clocks: dict[str, str] = {}
    for name in a.fields.keys() | b.fields.keys():
        if name not in b.fields:
            winner = a
        elif name not in a.fields:
            winner = b
        else:
            ka = _key(a.clocks.get(name, EMPTY_CLOCK), a.fields[name])
            kb = _key(b.clocks.get(name, EMPTY_CLOCK), b.fields[name])
            winner = a if ka >= kb else b
        fields[name] = winner.fields[name]
        clock = winner.clocks.get(name, EMPTY_CLOCK)
        if clock != EMPTY_CLOCK:
            clocks[name] = clock
    return RecordState(fields, clocks)


def _node(stamp: str) -> str | None:
    return parse(stamp).node if stamp else None


def apply(
    current: RecordState | None, fields: Mapping[str, Any], hlc: str, *, deleted: bool = False
) -> Outcome:
    """Apply one change (``fields`` written at ``hlc``, maybe a delete) to ``current``."""
    incoming = tombstone(hlc) if deleted else RecordState(dict(fields), dict.fromkeys(fields, hlc))
    if current is None:
        return Outcome(incoming, [], [], changed=True)
    merged = merge(current, incoming)
    superseded: list[Loss] = []
    displaced: list[Loss] = []
    if not deleted:
        for name, value in fields.items():
            if merged.deleted:
                superseded.append(Loss(name, value, hlc, merged.deleted_hlc, "deleted"))
            elif merged.clocks.get(name) != hlc or not _same(merged.fields[name], value):
                superseded.append(Loss(name, value, hlc, merged.clocks[name], "older"))
        writer = _node(hlc)
        for name, old in current.fields.items():
            old_clock = current.clocks.get(name, EMPTY_CLOCK)
            if (
                not merged.deleted
                and old_clock != EMPTY_CLOCK
                and merged.clocks.get(name) == hlc
                and not _same(old, merged.fields[name])
                and _node(old_clock) != writer
            ):
                displaced.append(Loss(name, old, old_clock, hlc, "overwritten"))
    return Outcome(merged, superseded, displaced, changed=merged != current)


def _same(a: Any, b: Any) -> bool:
    return bool(_canonical.encode(a) == _canonical.encode(b))

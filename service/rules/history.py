"""One person's history, typed and immutable: what the rules read.

Built from the plain ``fields`` dicts the sync store keeps (dates as ``YYYY-MM-DD``,
datetimes as RFC 3339), so the database layer hands over rows as they are and the rules
never see JSON — or, for the sweep, from each row's stored JSON text (``from_json``):
decoding straight into typed records halves the parse cost.

Parsing is lenient on purpose: a record the rules cannot use (a missing event time, an
unknown kind) is skipped rather than failing a whole sweep — the sync edge already
rejects bad input, so this only guards against rows from older clients.

Deleted records must simply not be passed in.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

__all__ = [
    "CIRCLES",
    "REMOTE_KINDS",
    "Contact",
    "History",
    "Interaction",
    "PersonSettings",
    "Reflection",
]

CIRCLES = ("inner", "close", "social", "wider")
KINDS = ("in_person", "video", "call", "voice", "text", "social", "letter", "other")
#: Every kind of contact that is not a meeting in person.
REMOTE_KINDS = frozenset(KINDS) - {"in_person"}
INITIATORS = ("me", "them", "mutual")

Fields = Mapping[str, Any]
Json = bytes | str
#: A stored row: its fields, or their JSON text.
Row = Fields | Json


class _InteractionJson(Struct, frozen=True, gc=False):
    """The fields the rules read, decoded in C; anything else in the row is skipped."""

    contact_ids: list[str]
    kind: Literal["in_person", "video", "call", "voice", "text", "social", "letter", "other"]
    occurred_at: Annotated[dt.datetime, Meta(tz=True)]
    quality: Annotated[int, Meta(ge=1, le=5)] | None = None
    initiated_by: Literal["me", "them", "mutual"] | None = None


_interaction_json = msgspec.json.Decoder(_InteractionJson)
_any_json = msgspec.json.Decoder()


def _fields(text: Json) -> Fields:
    try:
        value = _any_json.decode(text)
    except msgspec.DecodeError:
        return {}
    return value if isinstance(value, dict) else {}


#: Event times the rules can use: the edge refuses anything before 1900, and a row stored
#: before it did (``0001-01-01T00:00:00+14:00`` is before year 1 in UTC) must be skipped,
#: not overflow while the whole person's evaluation converts it.
_EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)
#: Files in the zone database that are not zones (the edge refuses them too).
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


def _utc(value: dt.datetime) -> dt.datetime | None:
    # Compared as aware instants first: converting year-1 +14:00 to UTC would overflow.
    if value.tzinfo is None or not _EARLIEST <= value < _LATEST:
        return None
    return value.astimezone(dt.UTC)


def _datetime(value: Any) -> dt.datetime | None:
    """An aware UTC datetime from RFC 3339 text, or None if it is not one or lies outside
    the range every reader can hold.

    Normalised to UTC so that sorting and comparing never consult a time zone.
    """
    if not isinstance(value, str):
        return None
    try:
        return _utc(dt.datetime.fromisoformat(value))
    except ValueError:
        return None


def _date(value: Any) -> dt.date | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def _scores(value: Any, length: int, low: int, high: int) -> tuple[int, ...] | None:
    """An instrument's item answers, only if every item is answered within range."""
    if not isinstance(value, list) or len(value) != length:
        return None
    if not all(type(v) is int and low <= v <= high for v in value):
        return None
    return tuple(value)


class Contact(Struct, frozen=True, gc=False):
    id: str
    name: str
    circle: str
    cadence_days: int | None = None
    snoozed_until: dt.date | None = None
    archived: bool = False

    @classmethod
    def from_fields(cls, record_id: str, fields: Fields) -> Contact:
        circle = fields.get("circle")
        cadence = fields.get("cadence_days")
        name = fields.get("display_name")
        return cls(
            id=record_id,
            name=name if isinstance(name, str) and name else "someone",
            circle=circle if circle in CIRCLES else "social",  # the table's default
            cadence_days=cadence if type(cadence) is int and cadence >= 1 else None,
            snoozed_until=_date(fields.get("snoozed_until")),
            archived=fields.get("archived") is True,
        )

    def snoozed(self, today: dt.date) -> bool:
        """Snoozed through ``snoozed_until`` inclusive, in the person's own calendar."""
        return self.snoozed_until is not None and self.snoozed_until >= today


class Interaction(Struct, frozen=True, gc=False):
    id: str
    contact_ids: tuple[str, ...]
    kind: str
    occurred_at: dt.datetime  # event time, UTC
    quality: int | None = None  # how it felt, 1-5, if the person rated it
    initiated_by: str | None = None  # "me", "them" or "mutual", if the person said

    @property
    def in_person(self) -> bool:
        return self.kind == "in_person"

    @classmethod
    def from_fields(cls, record_id: str, fields: Fields) -> Interaction | None:
        at = _datetime(fields.get("occurred_at"))
        kind = fields.get("kind")
        raw_ids = fields.get("contact_ids")
        if at is None or kind not in KINDS or not isinstance(raw_ids, list):
            return None
        ids = tuple(dict.fromkeys(c for c in raw_ids if isinstance(c, str)))
        quality = fields.get("quality")
        initiated_by = fields.get("initiated_by")
        return (
            cls(
                record_id,
                ids,
                kind,
                at,
                quality=quality if type(quality) is int and 1 <= quality <= 5 else None,
                initiated_by=initiated_by if initiated_by in INITIATORS else None,
            )
            if ids
            else None
        )

    @classmethod
    def from_json(cls, record_id: str, text: Json) -> Interaction | None:
        """From the stored fields JSON; a row the fast path rejects gets the lenient one."""
        try:
            row = _interaction_json.decode(text)
        except msgspec.DecodeError:
            return cls.from_fields(record_id, _fields(text))
        ids = tuple(dict.fromkeys(row.contact_ids))
        at = _utc(row.occurred_at)  # None for a stored instant out of range
        if not ids or at is None:
            return None
        return cls(record_id, ids, row.kind, at, row.quality, row.initiated_by)


class Reflection(Struct, frozen=True, gc=False):
    """A reflection, reduced to what the rules read: when, and any instrument answers."""

    id: str
    occurred_at: dt.datetime
    ucla3: tuple[int, ...] | None = None
    lsns6: tuple[int, ...] | None = None
    who5: tuple[int, ...] | None = None

    @classmethod
    def from_fields(cls, record_id: str, fields: Fields) -> Reflection | None:
        at = _datetime(fields.get("occurred_at"))
        if at is None:
            return None
        return cls(
            record_id,
            at,
            ucla3=_scores(fields.get("ucla3"), 3, 1, 3),
            lsns6=_scores(fields.get("lsns6"), 6, 0, 5),
            who5=_scores(fields.get("who5"), 5, 0, 5),
        )


@dataclass(frozen=True, slots=True)
class PersonSettings:
    """The parts of the person's ``settings`` row the rules use."""

    time_zone: str = "UTC"
    rules_disabled: frozenset[str] = frozenset()

    @classmethod
    def from_fields(cls, fields: Fields | None) -> PersonSettings:
        """From the settings row's fields; ``rules_disabled`` is read if present."""
        fields = fields or {}
        zone = fields.get("time_zone")
        try:
            zone_ok = (
                isinstance(zone, str)
                and zone not in _NOT_ZONES
                and zoneinfo.ZoneInfo(zone) is not None
            )
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            zone_ok = False
        disabled = fields.get("rules_disabled")
        return cls(
            time_zone=zone if zone_ok and isinstance(zone, str) else "UTC",
            rules_disabled=frozenset(
                r for r in (disabled if isinstance(disabled, list) else []) if isinstance(r, str)
            ),
        )

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)  # ZoneInfo caches instances per key


@dataclass(frozen=True, slots=True)
class History:
    """Everything the rules may read about one person. Interactions are in event order."""

    contacts: Mapping[str, Contact]
    interactions: tuple[Interaction, ...]
    reflections: tuple[Reflection, ...]

    @classmethod
    def build(
        cls,
        contacts: Iterable[Contact] = (),
        interactions: Iterable[Interaction] = (),
        reflections: Iterable[Reflection] = (),
    ) -> History:
        """From typed records; sorts by event time (then id) so evaluation is deterministic."""
        return cls(
            contacts=MappingProxyType({c.id: c for c in sorted(contacts, key=lambda c: c.id)}),
            interactions=tuple(sorted(interactions, key=lambda i: (i.occurred_at, i.id))),
            reflections=tuple(sorted(reflections, key=lambda r: (r.occurred_at, r.id))),
        )

    @classmethod
    def from_fields(
        cls,
        contacts: Mapping[str, Row],
        interactions: Mapping[str, Row],
        reflections: Mapping[str, Row] | None = None,
    ) -> History:
        """From ``{record id: row}`` maps of live (not deleted) rows, as sync stores them: each
        row its ``fields`` dict or its stored fields JSON (``fields::text``, which the sweep
        hands over: interactions decode straight into typed records, half the parse cost).

        Reflections without instruments may be left out: the rules read only instruments.
        """
        parsed_interactions = (_interaction(i, row) for i, row in interactions.items())
        parsed_reflections = (
            Reflection.from_fields(i, _row(row)) for i, row in (reflections or {}).items()
        )
        return cls.build(
            (Contact.from_fields(i, _row(row)) for i, row in contacts.items()),
            (i for i in parsed_interactions if i is not None),
            (r for r in parsed_reflections if r is not None),
        )

    #: The same, named for the sweep's stored JSON rows.
    from_json = from_fields


def _row(row: Row) -> Fields:
    return _fields(row) if isinstance(row, bytes | str) else row


def _interaction(record_id: str, row: Row) -> Interaction | None:
    if isinstance(row, bytes | str):
        return Interaction.from_json(record_id, row)
    return Interaction.from_fields(record_id, row)

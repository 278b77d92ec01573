"""Field types of the synced tables (schema v1) and what clients may write to each.

Every field defaults to ``UNSET``: a change carries only the fields it writes, and an
absent field is different from an explicit ``null``. Validation beyond single-field
limits (a real calendar date, a known time zone) runs in ``__post_init__`` so it reports
the same field path.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args

from msgspec import UNSET, Meta, Struct, UnsetType

from schemas.common import Circle, InteractionKind, RecordId, Relationship, TimeOfDay, described

__all__ = [
    "EVENT_TIME_MIN",
    "EVENT_TIME_RANGE",
    "SETTINGS_ID",
    "TABLES",
    "AlertAcknowledgement",
    "AlertFields",
    "CareSummaryFields",
    "Cascade",
    "CheckInFields",
    "ContactFields",
    "InsightFields",
    "InsightStatusFields",
    "InteractionFields",
    "ReflectionFields",
    "SettingsFields",
    "TableName",
    "TableSpec",
    "check_time_zone",
    "zone_names",
]

SETTINGS_ID = "settings"

TableName = Literal[
    "contacts",
    "interactions",
    "reflections",
    "check_ins",
    "settings",
    "insights",
    "care_summaries",
    "alerts",
]

#: The rules engine's rules (service/rules/catalog.py checks the catalog matches).
RuleId = Literal["overdue", "rate_drop", "drought", "narrowing", "self_report", "warmth"]
Text10k = Annotated[str, Meta(max_length=10_000)]
Score1to5 = Annotated[int, Meta(ge=1, le=5)]
#: The earliest event time a phone may send. The latest is the server's time plus the
#: clock-skew allowance (``KITH_MAX_CLOCK_SKEW_MS``, 5 minutes by default), checked on push
#: (``service/sync_validation.py``) because it moves with the server's clock. Nothing a person
#: logs happened before 1900, and every instant in the range stays representable in any time
#: zone (``0001-01-01T00:00:00+14:00`` is before year 1 in UTC and broke every read of it).
EVENT_TIME_MIN = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
EVENT_TIME_RANGE = (
    "from 1900-01-01T00:00:00Z to the server's time plus the clock-skew allowance "
    "(5 minutes by default)"
)
EventTime = Annotated[
    dt.datetime,
    Meta(tz=True, description=f"RFC 3339 with offset: when it happened, {EVENT_TIME_RANGE}"),
]
Tag = Annotated[str, Meta(min_length=1, max_length=50)]
Ucla3 = Annotated[list[Annotated[int, Meta(ge=1, le=3)]], Meta(min_length=3, max_length=3)]
Lsns6 = Annotated[list[Annotated[int, Meta(ge=0, le=5)]], Meta(min_length=6, max_length=6)]
Who5 = Annotated[list[Annotated[int, Meta(ge=0, le=5)]], Meta(min_length=5, max_length=5)]
Birthday = Annotated[
    str,
    Meta(
        pattern=described(
            r"^([0-9]{4}|-)-[0-9]{2}-[0-9]{2}$(?!\n)", "YYYY-MM-DD, or --MM-DD without a year"
        ),
        description="YYYY-MM-DD, or --MM-DD without a year",
    ),
]


def _check_birthday(value: str | UnsetType | None) -> None:
    if not isinstance(value, str):
        return
    year = 2000 if value.startswith("--") else int(value[:4])  # 2000 is a leap year
    try:
        dt.date(year, int(value[-5:-3]), int(value[-2:]))
    except ValueError:
        raise ValueError(f"birthday: {value!r} is not a calendar date") from None


class ContactFields(Struct, forbid_unknown_fields=True, omit_defaults=True):
    display_name: Annotated[str, Meta(min_length=1, max_length=200)] | UnsetType = UNSET
    relationship: Relationship | UnsetType = UNSET
    circle: Circle | UnsetType = UNSET
    cadence_days: Annotated[int, Meta(ge=1, le=730)] | UnsetType | None = UNSET
    preferred_kind: InteractionKind | UnsetType | None = UNSET
    notes: Text10k | UnsetType = UNSET
    birthday: Birthday | UnsetType | None = UNSET
    snoozed_until: dt.date | UnsetType | None = UNSET
    archived: bool | UnsetType = UNSET
    tags: Annotated[list[Tag], Meta(max_length=20)] | UnsetType = UNSET

    def __post_init__(self) -> None:
        _check_birthday(self.birthday)


def _check_event_time(value: dt.datetime | UnsetType) -> None:
    # Aware datetimes compare by their UTC instant without converting (no overflow).
    if isinstance(value, dt.datetime) and value < EVENT_TIME_MIN:
        raise ValueError(f"occurred_at: must be {EVENT_TIME_RANGE}")


class InteractionFields(Struct, forbid_unknown_fields=True, omit_defaults=True):
    contact_ids: Annotated[list[RecordId], Meta(min_length=1, max_length=20)] | UnsetType = UNSET
    kind: InteractionKind | UnsetType = UNSET
    occurred_at: EventTime | UnsetType = UNSET
    duration_min: Annotated[int, Meta(ge=0, le=1440)] | UnsetType | None = UNSET
    initiated_by: Literal["me", "them", "mutual"] | UnsetType | None = UNSET
    quality: Score1to5 | UnsetType | None = UNSET
    felt_closer: bool | UnsetType | None = UNSET
    note: Text10k | UnsetType = UNSET

    def __post_init__(self) -> None:
        _check_event_time(self.occurred_at)


class ReflectionFields(Struct, forbid_unknown_fields=True, omit_defaults=True):
    occurred_at: EventTime | UnsetType = UNSET
    mood: Score1to5 | UnsetType | None = UNSET
    body: Annotated[str, Meta(max_length=20_000)] | UnsetType = UNSET
    gratitude: Annotated[str, Meta(max_length=5_000)] | UnsetType = UNSET
    interaction_id: RecordId | UnsetType | None = UNSET
    ucla3: Ucla3 | UnsetType | None = UNSET
    lsns6: Lsns6 | UnsetType | None = UNSET
    who5: Who5 | UnsetType | None = UNSET

    def __post_init__(self) -> None:
        _check_event_time(self.occurred_at)


class CheckInFields(Struct, forbid_unknown_fields=True, omit_defaults=True):
    occurred_at: EventTime | UnsetType = UNSET
    status: Literal["ok", "not_great", "need_help"] | UnsetType = UNSET
    mood: Score1to5 | UnsetType | None = UNSET
    note: Annotated[str, Meta(max_length=2_000)] | UnsetType = UNSET

    def __post_init__(self) -> None:
        _check_event_time(self.occurred_at)


class SettingsFields(Struct, forbid_unknown_fields=True, omit_defaults=True):
    time_zone: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=64,
                examples=["Europe/Lisbon"],
                description="An IANA time zone name (not localtime, posixrules or Factory)",
            ),
        ]
        | UnsetType
    ) = UNSET
    quiet_hours_start: TimeOfDay | UnsetType = UNSET
    quiet_hours_end: TimeOfDay | UnsetType = UNSET
    preferred_nudge_time: TimeOfDay | UnsetType = UNSET
    nudges_enabled: bool | UnsetType = UNSET
    max_nudges_per_week: Annotated[int, Meta(ge=0, le=14)] | UnsetType = UNSET
    nudge_digest: bool | UnsetType = UNSET  # over budget: one combined nudge, not a queue
    check_in_deadline: TimeOfDay | UnsetType | None = UNSET
    check_in_grace_min: Annotated[int, Meta(ge=5, le=720)] | UnsetType = UNSET
    rules_disabled: Annotated[list[RuleId], Meta(max_length=10)] | UnsetType = UNSET

    def __post_init__(self) -> None:
        if isinstance(self.time_zone, str):
            try:
                check_time_zone(self.time_zone)
            except ValueError as exc:
                raise ValueError(f"time_zone: {exc}") from None


#: Files in the zone database that are not zones: ``localtime`` (a link to whatever this
#: machine is set to), ``posixrules`` (a template for POSIX TZ strings) and ``Factory`` (the
#: "-00" placeholder of an unconfigured system). None names a place's rules.
NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@functools.cache
def zone_names() -> frozenset[str]:
    """The IANA time zone names this machine's zone database holds (read once)."""
    return frozenset(zoneinfo.available_timezones()) - NOT_ZONES


def check_time_zone(name: str) -> None:
    """Raise ValueError unless ``name`` is an IANA time zone name this machine knows."""
    if name not in zone_names():
        raise ValueError(f"unknown IANA time zone {name!r} (e.g. Europe/Lisbon)")


class InsightStatusFields(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The only part of an insight a client may write."""

    status: Literal["seen", "dismissed", "acted"] | UnsetType = UNSET


class InsightFields(Struct, omit_defaults=True):
    """Server-written insight (rules engine). Documented for clients; read-only but ``status``."""

    rule: str | UnsetType = UNSET
    contact_id: RecordId | UnsetType | None = UNSET
    level: str | UnsetType = UNSET
    title: str | UnsetType = UNSET
    body: str | UnsetType = UNSET
    evidence: dict[str, Any] | UnsetType = UNSET
    status: Literal["open", "seen", "dismissed", "acted", "resolved"] | UnsetType = UNSET
    raised_at: dt.datetime | UnsetType = UNSET


class CareSummaryFields(Struct, omit_defaults=True):
    """Server-written caregiver summary (read-only for clients); filled by the caregiver
    feature. It names the person only by the caregiver's own label (``display_name``); the
    link id is in the record id (``care-{link_id}-{generation}``)."""

    display_name: str | UnsetType = UNSET
    scopes: list[str] | UnsetType = UNSET
    summary: dict[str, Any] | UnsetType = UNSET
    computed_at: dt.datetime | UnsetType = UNSET


class AlertAcknowledgement(Struct):
    """One caregiver said "I'm on it": their name as the person knows them, and when."""

    by: str
    at: dt.datetime


class AlertFields(Struct, omit_defaults=True):
    """Server-written, in the older adult's own space: one of their alerts and who answered
    it (read-only for clients; resolve one with ``POST /v1/care/alerts/{alert_id}/resolve``).
    Of a caregiver it holds only the name and the time — decision 0060."""

    alert_id: str | UnsetType = UNSET  # the id the care API takes ("help:<check-in id>")
    kind: Literal["need_help", "missed_check_in"] | UnsetType = UNSET
    raised_at: dt.datetime | UnsetType = UNSET
    #: open → acknowledged (someone is on it) or no_response (the ladder ended unanswered;
    #: an acknowledgement after that still turns it acknowledged) → resolved.
    status: Literal["open", "acknowledged", "no_response", "resolved"] | UnsetType = UNSET
    acknowledged_by: str | UnsetType | None = UNSET  # the first caregiver's name
    acknowledged_at: dt.datetime | UnsetType | None = UNSET
    acknowledgements: list[AlertAcknowledgement] | UnsetType = UNSET  # every one, in order
    no_response_at: dt.datetime | UnsetType | None = UNSET
    resolved_at: dt.datetime | UnsetType | None = UNSET
    #: "you", "check_in" (a later ok check-in closed it) or the caregiver's name.
    resolved_by: str | UnsetType | None = UNSET
    #: What to show, in the person's time zone ("Carol saw your request at 05:03").
    message: str | UnsetType = UNSET


@dataclass(frozen=True, slots=True)
class Cascade:
    """Deleting the last live ``parent`` a record names (in its list field ``field``)
    tombstones the record too — server writes, so every device converges."""

    parent: str
    field: str


@dataclass(frozen=True, slots=True)
class TableSpec:
    """One synced table, declared once: the wire type, what clients may do, and what a
    change to it sets off. Everything else is derived from this — the SQL table list
    (``service/store/sync.py``), the cascade and the follow-up jobs
    (``service/sync/service.py``), the OpenAPI and JSON Schema (``kith openapi``).
    Adding a table: declare it here and create it in a migration (docs/architecture.md)."""

    name: str
    #: What clients may write (None: the server alone writes this table).
    client_type: type[Struct] | None
    required_on_create: frozenset[str] = frozenset()
    defaults: dict[str, Any] = field(default_factory=dict)
    #: False: clients may only update rows the server created.
    create_allowed: bool = True
    #: False: a record of this table is never deleted (``hint`` says what to do instead).
    deletable: bool = True
    delete_hint: str = ""
    #: The one record id this table allows (the settings record), or None for any.
    only_id: str | None = None
    #: The record types the server writes, documented for clients (defaults to client_type).
    read_type: type[Struct] | None = None
    cascade: Cascade | None = None
    #: A change re-evaluates the person's rules (debounced).
    feeds_rules: bool = False
    #: A change is acted on at once (a "need help" check-in alerts caregivers now).
    urgent: bool = False
    #: Free-text fields a person writes for themselves: stored encrypted under their own
    #: key, never read by the rules or the care summaries (decision 0021).
    private: frozenset[str] = frozenset()


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "contacts",
            ContactFields,
            frozenset({"display_name"}),
            {
                "relationship": "other",
                "circle": "social",
                "cadence_days": None,
                "preferred_kind": None,
                "notes": "",
                "birthday": None,
                "snoozed_until": None,
                "archived": False,
                "tags": [],
            },
            feeds_rules=True,
            private=frozenset({"notes"}),
        ),
        TableSpec(
            "interactions",
            InteractionFields,
            frozenset({"contact_ids", "kind", "occurred_at"}),
            {
                "duration_min": None,
                "initiated_by": None,
                "quality": None,
                "felt_closer": None,
                "note": "",
            },
            cascade=Cascade(parent="contacts", field="contact_ids"),
            feeds_rules=True,
            private=frozenset({"note"}),
        ),
        TableSpec(
            "reflections",
            ReflectionFields,
            frozenset({"occurred_at"}),
            {
                "mood": None,
                "body": "",
                "gratitude": "",
                "interaction_id": None,
                "ucla3": None,
                "lsns6": None,
                "who5": None,
            },
            feeds_rules=True,
            private=frozenset({"body", "gratitude"}),
        ),
        TableSpec(
            "check_ins",
            CheckInFields,
            frozenset({"occurred_at", "status"}),
            {"mood": None, "note": ""},
            urgent=True,
            private=frozenset({"note"}),
        ),
        TableSpec(
            "settings",
            SettingsFields,
            frozenset(),
            {
                "time_zone": "UTC",
                "quiet_hours_start": "21:00",
                "quiet_hours_end": "08:00",
                "preferred_nudge_time": "18:00",
                "nudges_enabled": True,
                "max_nudges_per_week": 3,
                "nudge_digest": False,
                "check_in_deadline": None,
                "check_in_grace_min": 30,
                "rules_disabled": [],
            },
            deletable=False,
            delete_hint="edit it",
            only_id=SETTINGS_ID,
            feeds_rules=True,
        ),
        TableSpec(
            "insights",
            InsightStatusFields,
            create_allowed=False,
            deletable=False,
            delete_hint="dismiss it (status: dismissed)",
            read_type=InsightFields,
        ),
        TableSpec("care_summaries", None, create_allowed=False, read_type=CareSummaryFields),
        TableSpec("alerts", None, create_allowed=False, read_type=AlertFields),
    )
}

assert tuple(TABLES) == get_args(TableName), "TableName lists the declared tables, in order"

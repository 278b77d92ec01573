"""Wire types of the WatermelonDB sync adapter (``/v1/watermelon/pull|push``, docs/watermelondb.md).

WatermelonDB stores every column as a string, a number or a boolean. Each Kith field is
given one of those column types, derived here from the synced tables' own msgspec types
(``schemas/tables.py``) so a field is declared once:

* text (``str``, enums, ``date``, times of day) → ``string``;
* ``int`` → ``number``; ``bool`` → ``boolean``;
* instants (``datetime``) → ``number``, milliseconds since the epoch (``@date`` columns);
* lists and objects (``contact_ids``, ``tags``, ``evidence``) → ``string`` holding JSON
  (``@json`` columns).

The app declares every column ``isOptional: true``: a column the phone never set is then
``null`` (not WatermelonDB's ``''``/``0``/``false``, which Kith's limits may refuse), and a
record created with it gets the server's default. ``Column.optional`` says whether the
Kith field itself may be null. Every row also carries ``updated_at`` (ms): what Kith
stamps a device's edits with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from schemas.common import RecordId
from schemas.tables import TABLES

__all__ = [
    "COLUMNS",
    "STAMP_COLUMNS",
    "Column",
    "ColumnKind",
    "WatermelonChanges",
    "WatermelonMigration",
    "WatermelonPullResponse",
    "WatermelonPushBody",
    "WatermelonPushResponse",
    "WatermelonSuperseded",
]

ColumnKind = Literal["text", "number", "boolean", "time_ms", "json"]

#: Columns a WatermelonDB model keeps for itself; ``updated_at`` (else ``created_at``) is the
#: stamp of a pushed row's values. Neither is a Kith field.
STAMP_COLUMNS = frozenset({"updated_at", "created_at"})


@dataclass(frozen=True, slots=True)
class Column:
    """How one Kith field is stored in a WatermelonDB column."""

    name: str
    kind: ColumnKind
    optional: bool  # may be null (isOptional: true)

    @property
    def watermelon_type(self) -> Literal["string", "number", "boolean"]:
        if self.kind in ("text", "json"):
            return "string"
        return "number" if self.kind in ("number", "time_ms") else "boolean"


def _kind(info: msgspec.inspect.Type) -> ColumnKind:
    while isinstance(info, msgspec.inspect.Metadata):
        info = info.type
    if isinstance(info, msgspec.inspect.UnionType):
        (info,) = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        return _kind(info)
    if isinstance(info, msgspec.inspect.DateTimeType):
        return "time_ms"
    if isinstance(info, msgspec.inspect.BoolType):
        return "boolean"
    if isinstance(info, msgspec.inspect.IntType):
        return "number"
    if isinstance(info, msgspec.inspect.StrType | msgspec.inspect.DateType):
        return "text"
    if isinstance(info, msgspec.inspect.LiteralType):
        return "text" if all(isinstance(v, str) for v in info.values) else "number"
    return "json"  # lists, objects, Any


def _optional(info: msgspec.inspect.Type) -> bool:
    return isinstance(info, msgspec.inspect.UnionType) and any(
        isinstance(t, msgspec.inspect.NoneType) for t in info.types
    )


def _columns(fields: type[Struct]) -> dict[str, Column]:
    info = msgspec.inspect.type_info(fields)
    assert isinstance(info, msgspec.inspect.StructType)
    return {f.name: Column(f.name, _kind(f.type), _optional(f.type)) for f in info.fields}


#: Every synced table's columns as WatermelonDB sees them (server-written tables included:
#: the app reads insights and care summaries; it may write only ``insights.status``).
COLUMNS: dict[str, dict[str, Column]] = {
    name: _columns(fields)
    for name, spec in TABLES.items()
    if (fields := spec.read_type or spec.client_type) is not None
}

_VALUE_TYPES: dict[ColumnKind, Any] = {
    "text": str,
    "number": int,
    "boolean": bool,
    "time_ms": Annotated[int, Meta(description="milliseconds since the epoch")],
    "json": Annotated[str, Meta(description="JSON text (a @json column)")],
}


def _row_type(table: str) -> type[Struct]:
    """A raw record of ``table`` as pulled (documentation of the pull's rows)."""
    fields: list[tuple[str, Any, Any]] = [("id", RecordId, msgspec.NODEFAULT)]
    for column in COLUMNS[table].values():
        value = _VALUE_TYPES[column.kind]
        fields.append((column.name, (value | None) if column.optional else value, UNSET))
    fields.append(("updated_at", Annotated[int, Meta(description="ms: the newest edit")], 0))
    name = "".join(part.title() for part in table.split("_"))
    return msgspec.defstruct(f"Watermelon{name}Row", fields, omit_defaults=True)


def _table_changes(table: str) -> type[Struct]:
    row = _row_type(table)
    name = "".join(part.title() for part in table.split("_"))
    return msgspec.defstruct(
        f"Watermelon{name}Changes",
        [
            ("created", list[row], msgspec.field(default_factory=list)),  # type: ignore[valid-type]
            ("updated", list[row], msgspec.field(default_factory=list)),  # type: ignore[valid-type]
            ("deleted", list[RecordId], msgspec.field(default_factory=list)),
        ],
    )


#: ``{table: {created, updated, deleted}}`` with each table's raw records typed.
WatermelonChanges: type[Struct] = msgspec.defstruct(
    "WatermelonChanges",
    [(table, _table_changes(table) | UnsetType, UNSET) for table in COLUMNS],
    omit_defaults=True,
)


class WatermelonPullResponse(Struct, omit_defaults=True):
    """What ``pullChanges`` returns to ``synchronize()``. ``timestamp`` is the space's
    sequence + 1 (always > 0); ``experimentalStrategy: "replacement"`` marks a reset."""

    changes: WatermelonChanges  # type: ignore[valid-type]
    timestamp: int
    experimentalStrategy: Literal["replacement"] | UnsetType = UNSET


class WatermelonPushBody(Struct, omit_defaults=True):
    """The push body: ``{changes, lastPulledAt}`` as ``pushChanges`` receives it (the bare
    changes object is accepted too). Rows carry WatermelonDB's ``_status``/``_changed``."""

    changes: WatermelonChanges  # type: ignore[valid-type]
    lastPulledAt: int | None = None


class WatermelonMigration(Struct, forbid_unknown_fields=False):
    """``synchronize()``'s ``migration`` argument (JSON in the pull's ``migration`` query)."""

    from_: int = msgspec.field(name="from", default=0)
    tables: list[str] = msgspec.field(default_factory=list)
    columns: list[WatermelonMigrationColumns] = msgspec.field(default_factory=list)


class WatermelonMigrationColumns(Struct, forbid_unknown_fields=False):
    table: str
    columns: list[str]


class WatermelonSuperseded(Struct):
    """A value this push wrote that lost the merge; the winner comes on the next pull."""

    table: str
    id: str
    column: str
    reason: Literal["older", "deleted"]


class WatermelonPushResponse(Struct):
    """``batch_ids`` are the Kith batches the push was applied as (one per 1,000 changes),
    derived from what the device sent: a retried push is applied once."""

    ok: bool
    accepted: int
    batch_ids: list[str]
    superseded: list[WatermelonSuperseded]
    ignored: list[str]  # "table" or "table.column" this server does not sync (local-only)

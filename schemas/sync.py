"""Wire types of sync protocol v1 (see docs/protocol.md)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from schemas.common import ID_PATTERN, HlcStamp, RecordId
from schemas.tables import TableName

__all__ = [
    "MAX_CHANGES_PER_PUSH",
    "MAX_PULL_LIMIT",
    "ChangeIn",
    "ChangeOut",
    "ConflictEntry",
    "ConflictsResponse",
    "PullRequest",
    "PullResponse",
    "PushRequest",
    "PushResponse",
    "SupersededField",
]

MAX_CHANGES_PER_PUSH = 1000
MAX_PULL_LIMIT = 1000


class ChangeIn(Struct, forbid_unknown_fields=True):
    """One record's change: the fields it writes, all stamped with ``hlc``."""

    table: TableName
    id: RecordId
    hlc: HlcStamp
    fields: dict[str, Any] = msgspec.field(default_factory=dict)
    deleted: bool = False


class PushRequest(Struct, forbid_unknown_fields=True):
    device_id: RecordId
    batch_id: Annotated[str, Meta(pattern=ID_PATTERN, description="Retry with the same id")]
    schema_version: int
    changes: Annotated[list[ChangeIn], Meta(max_length=MAX_CHANGES_PER_PUSH)]


class SupersededField(Struct):
    """A field this push wrote that lost (kept in the conflict history for 30 days)."""

    table: str
    id: str
    field: str
    reason: Literal["older", "deleted"]


class PushResponse(Struct):
    batch_id: str
    accepted: int
    superseded: list[SupersededField]
    seq: int
    server_hlc: str
    clock_skew_ms: int


class PullRequest(Struct, forbid_unknown_fields=True):
    schema_version: int
    cursor: str | None = None
    limit: Annotated[int, Meta(ge=1, le=MAX_PULL_LIMIT)] = 500


class ChangeOut(Struct):
    """A record's whole current state; ``fields`` is empty for tombstones."""

    table: str
    id: str
    fields: msgspec.Raw
    deleted: bool
    hlc: str


class PullResponse(Struct):
    changes: list[ChangeOut]
    cursor: str
    has_more: bool
    server_hlc: str
    reset: bool


class ConflictEntry(Struct):
    table: str
    id: str
    field: str
    value: msgspec.Raw
    hlc: str
    winner_hlc: str
    reason: Literal["older", "deleted", "overwritten"]
    recorded_at: dt.datetime


class ConflictsResponse(Struct):
    conflicts: list[ConflictEntry]
    next: str | None

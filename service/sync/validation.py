"""Validation of a push batch, done in full before any write (all of it or none of it).

Each change's ``fields`` is converted to its table's msgspec type, so limits, enums and
unknown fields fail with the field's path (``changes[3].fields.mood``). HLC stamps too far
ahead of the server's clock are clamped here (design brief §4, clock defence).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import msgspec.structs

from schemas.common import SCHEMA_VERSION_MAX, SCHEMA_VERSION_MIN
from schemas.problem import FieldError
from schemas.sync import ChangeIn
from schemas.tables import EVENT_TIME_RANGE, TABLES
from service.errors import (
    Code,
    Forbidden,
    InvalidInput,
    UnsupportedVersion,
    field_errors_from_msgspec,
)
from sync.hlc import Clock, format_hlc, parse

__all__ = ["ValidChange", "check_schema_version", "validate_changes"]


class ValidChange(msgspec.Struct, frozen=True):  # a Struct: one is built per change
    index: int
    table: str
    id: str
    hlc: str
    fields: dict[str, Any]
    deleted: bool


def check_schema_version(version: int) -> None:
    if not SCHEMA_VERSION_MIN <= version <= SCHEMA_VERSION_MAX:
        raise UnsupportedVersion(
            f"schema_version {version} is not supported; this server speaks "
            f"{SCHEMA_VERSION_MIN}..{SCHEMA_VERSION_MAX}. Update the app; local data is kept.",
            errors=[FieldError("schema_version", "unsupported schema version")],
        )


def _invalid(index: int, field: str, message: str) -> InvalidInput:
    path = f"changes[{index}].{field}"
    return InvalidInput(f"{path}: {message}", errors=[FieldError(path, message)])


def _check_target(index: int, change: ChangeIn) -> None:
    spec = TABLES[change.table]
    if spec.client_type is None:
        path = f"changes[{index}].table"
        raise Forbidden(
            f"{change.table} is written by the server only",
            code=Code.READ_ONLY_TABLE,
            errors=[FieldError(path, f"{change.table} is read-only for clients")],
        )
    if spec.only_id is not None and change.id != spec.only_id:
        raise _invalid(index, "id", f"the {change.table} record's id is {spec.only_id!r}")
    if change.deleted and not spec.deletable:
        hint = spec.delete_hint
        raise _invalid(index, "deleted", f"{change.table} records cannot be deleted; {hint}")


def validate_changes(
    changes: list[ChangeIn], clock: Clock, max_skew_ms: int, *, look_for_nul: bool = True
) -> tuple[list[ValidChange], int]:
    """Return the normalised changes and the device's clock skew (ms ahead, or 0).

    ``look_for_nul=False`` skips the per-value NUL scan when the caller already knows the
    encoded batch holds no ``\\u0000`` (the common case, found with one bytes search)."""
    wall = clock.wall_ms()
    # The latest event time a phone may send: the server's time plus the same allowance
    # its clock stamps get (an event "in a minute" on a phone a little ahead has happened).
    latest = dt.datetime.fromtimestamp((wall + max_skew_ms) / 1000, dt.UTC)
    valid: list[ValidChange] = []
    for i, change in enumerate(changes):
        _check_target(i, change)
        spec = TABLES[change.table]
        assert spec.client_type is not None
        fields: dict[str, Any] = {}
        if not change.deleted:
            try:
                typed = msgspec.convert(change.fields, spec.client_type)
            except msgspec.ValidationError as exc:
                errors = field_errors_from_msgspec(exc, prefix=f"changes[{i}].fields")
                raise InvalidInput(
                    f"{errors[0].field}: {errors[0].message}", errors=errors
                ) from None
            at = getattr(typed, "occurred_at", None)
            if isinstance(at, dt.datetime) and at > latest:
                raise _invalid(i, "fields.occurred_at", f"must be {EVENT_TIME_RANGE}")
            _check_offsets(i, typed)
            fields = msgspec.to_builtins(typed)
            for name, value in fields.items() if look_for_nul else ():
                where = _nul_at(value)  # PostgreSQL's jsonb cannot store U+0000
                if where is not None:
                    raise _invalid(i, f"fields.{name}{where}", "text must not contain NUL (U+0000)")
            if not fields:
                raise _invalid(i, "fields", "a change must write at least one field or delete")
        valid.append(ValidChange(i, change.table, change.id, change.hlc, fields, change.deleted))
    return _clamp(valid, clock, max_skew_ms, wall)


#: The UTC offsets places use (UTC-12:00 to UTC+14:00). RFC 3339 and Python allow up to
#: ±23:59, PostgreSQL's timestamptz only ±15:59: an event time stored with +20:00 made
#: every later read of it that casts to timestamptz fail (the caregiver summary's), so
#: an offset no place uses is refused at the edge.
MIN_OFFSET, MAX_OFFSET = dt.timedelta(hours=-12), dt.timedelta(hours=14)


def _check_offsets(index: int, typed: msgspec.Struct) -> None:
    for name in typed.__struct_fields__:
        value = getattr(typed, name)
        if isinstance(value, dt.datetime):
            offset = value.utcoffset()
            if offset is not None and not MIN_OFFSET <= offset <= MAX_OFFSET:
                message = "the UTC offset must be between -12:00 and +14:00"
                raise _invalid(index, f"fields.{name}", message)


def _clamp(
    changes: list[ValidChange], clock: Clock, max_skew_ms: int, wall: int
) -> tuple[list[ValidChange], int]:
    """Clamp stamps more than ``max_skew_ms`` ahead to the server's clock, keeping the
    device as the author: a device whose clock runs months ahead must not win every future
    conflict. Clamped stamps are handed out in the order of the original stamps, so the
    device's own later edit still beats its earlier one, whatever order the batch lists them."""
    skew = 0
    ahead: list[ValidChange] = []
    newest = ""
    for change in changes:
        ms = int(change.hlc[:13])  # the wire type already checked the stamp's shape
        if ms - wall > max_skew_ms:
            skew = max(skew, ms - wall)
            ahead.append(change)
        elif change.hlc > newest:
            newest = change.hlc
    if newest:
        clock.receive(newest)  # folding in the newest stamp covers all the older ones
    if not ahead:
        return changes, 0
    clamped: dict[int, str] = {}
    for change in sorted(ahead, key=lambda c: c.hlc):
        tick = parse(clock.now())
        clamped[change.index] = format_hlc(tick.ms, tick.counter, parse(change.hlc).node)
    return [
        msgspec.structs.replace(c, hlc=clamped[c.index]) if c.index in clamped else c
        for c in changes
    ], skew


def _nul_at(value: Any) -> str | None:
    """The path suffix of the first string holding U+0000 inside ``value``, if any."""
    if isinstance(value, str):
        return "" if "\x00" in value else None
    if isinstance(value, list):
        for n, item in enumerate(value):
            if (where := _nul_at(item)) is not None:
                return f"[{n}]{where}"
    if isinstance(value, dict):
        for key, item in value.items():
            if (where := _nul_at(key)) is not None or (where := _nul_at(item)) is not None:
                return f".{key}{where}"
    return None

"""WatermelonDB's sync protocol over Kith's sync engine (docs/watermelondb.md, decision 0011).

``synchronize()`` in a React Native app calls ``pullChanges({lastPulledAt, …})`` and then
``pushChanges({changes, lastPulledAt})``. This adapter answers both for the caller's space:

* **pull** — every change after ``lastPulledAt`` folded into one ``{changes, timestamp}``,
  streamed table by table from one database snapshot, a page at a time (memory stays
  bounded however large the first sync). ``timestamp`` is the space's sequence + 1, so it
  is > 0 even for an empty space. Live records go out as ``updated`` (the app passes
  ``sendCreatedAsUpdated: true``), tombstones as ``deleted``; a cursor Kith can no longer
  continue (past the tombstone horizon, or from another database) is answered with the
  whole state and ``experimentalStrategy: "replacement"``.
* **push** — created rows become whole records, updated rows only their ``_changed``
  columns, deletions tombstones; each row is stamped with its ``updated_at`` (else
  ``created_at``) and the token's device, then the whole push is validated before the
  first write and applied as Kith batches of at most 1,000 changes whose ids derive from
  what the device sent, so a retried push is applied once.

Values are mapped both ways by each column's kind (``schemas/watermelon.py``): instants ↔
milliseconds, lists and objects ↔ JSON text, the rest as they are.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from schemas.common import ID_PATTERN, SCHEMA_VERSION_MAX
from schemas.problem import FieldError
from schemas.sync import MAX_CHANGES_PER_PUSH, ChangeIn, PushRequest
from schemas.tables import TABLES
from schemas.watermelon import (
    COLUMNS,
    STAMP_COLUMNS,
    Column,
    WatermelonMigration,
    WatermelonPushResponse,
    WatermelonSuperseded,
)
from service.accounts.sessions import Caller
from service.errors import Code, Forbidden, InvalidInput, KithError, Malformed
from service.store import watermelon as store
from service.sync.private_text import SpaceCipher, has_sealed
from service.sync.service import SyncService
from service.sync.validation import validate_changes
from sync.hlc import Clock, format_hlc, parse

__all__ = ["PullPlan", "WatermelonAdapter", "plan_pull", "pulled_row", "to_kith"]

#: Records read and written per page of a pull: the most a pull holds in memory at once.
PULL_PAGE = 1000

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)
_MAX_MS = 10**13 - 1  # an HLC stamp has 13 digits of milliseconds
_ID = re.compile(ID_PATTERN)
_PATH = re.compile(r"^changes\[(\d+)\](?:\.fields)?\.?(.*)$")
_SECTIONS = ("created", "updated", "deleted")

_decode = msgspec.json.decode
_encode_rows = msgspec.json.Encoder()
_canonical = msgspec.json.Encoder(order="sorted")


@dataclass(frozen=True, slots=True)
class PullPlan:
    """What one pull sends: ``after`` is the seq the device has seen (0: nothing),
    ``tables`` the app's synced tables in order, ``columns`` the columns it declares per
    table (None: all), ``full`` tables a local migration added or widened (sent whole)."""

    after: int
    tables: tuple[str, ...]
    columns: Mapping[str, frozenset[str]] | None
    full: frozenset[str]


def plan_pull(
    last_pulled_at: str | None,
    migration: str | None,
    tables: str | None,
    columns: str | None,
) -> PullPlan:
    """The pull's query parameters, checked before the answer starts streaming: a bad one
    is a 400 naming it. ``tables`` and ``columns`` (comma-separated ``table.column``) are
    what the app's schema declares; others are left out of the answer."""
    after = 0
    if last_pulled_at not in (None, "", "null", "undefined", "0"):
        assert last_pulled_at is not None
        if not last_pulled_at.isdigit() or len(last_pulled_at) > 18:
            raise _bad("last_pulled_at", "must be a timestamp this server returned, or null")
        after = int(last_pulled_at) - 1
    full: set[str] = set()
    if migration not in (None, "", "null"):
        assert migration is not None
        try:
            plan = msgspec.json.decode(migration, type=WatermelonMigration)
        except msgspec.DecodeError as exc:
            raise _bad("migration", f"not synchronize()'s migration object: {exc}") from None
        full.update(plan.tables)
        full.update(c.table for c in plan.columns)
    wanted = tuple(COLUMNS)
    if tables:
        named = set(tables.split(","))
        wanted = tuple(t for t in COLUMNS if t in named)
    declared: dict[str, frozenset[str]] | None = None
    if columns:
        pairs = [c.partition(".") for c in columns.split(",")]
        if any(not sep for _, sep, _ in pairs):
            raise _bad("columns", "a comma-separated list of table.column")
        grouped: dict[str, set[str]] = {}
        for table, _, column in pairs:
            grouped.setdefault(table, set()).add(column)
        declared = {t: frozenset(grouped.get(t, ())) for t in wanted}
    return PullPlan(after, wanted, declared, frozenset(full) & set(wanted))


def _bad(name: str, message: str) -> Malformed:
    return Malformed(f"{name}: {message}", errors=[FieldError(name, message)])


class WatermelonAdapter:
    """The two endpoints' logic; the routes are in ``service/http/routes/watermelon.py``."""

    def __init__(
        self, pool: asyncpg.Pool[Any], sync: SyncService, clock: Clock, *, max_skew_ms: int
    ) -> None:
        self._pool = pool
        self._sync = sync
        self._clock = clock
        self._max_skew_ms = max_skew_ms

    # -- pull -----------------------------------------------------------------------------

    async def pull(self, caller: Caller, plan: PullPlan) -> AsyncIterator[bytes]:
        """``{"changes": …, "timestamp": …}`` as chunks of JSON, one page at a time, all
        read from one REPEATABLE READ snapshot (see ``service/store/watermelon.py``)."""
        space = caller.space_id
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            position = await store.space_position(conn, space)
            upto, after = position.seq, plan.after
            reset = after > 0 and (after < position.purged_seq or after > upto)
            if reset:
                after = 0  # start over: the whole state, replacing what the device holds
            yield b'{"changes":{'
            cipher: SpaceCipher | None = None  # fetched once, at the first sealed text
            for n, table in enumerate(plan.tables):
                yield (b"," if n else b"") + b'"' + table.encode() + b'":{"created":[],"updated":['
                wanted = plan.columns[table] if plan.columns is not None else None
                sep = b""
                cursor = 0 if table in plan.full else after
                while True:
                    rows = await store.live_page(conn, space, table, cursor, upto, PULL_PAGE)
                    if cipher is None and any(has_sealed(r["fields"]) for r in rows):
                        cipher = await self._opener(space)
                    if rows:
                        raws = [
                            pulled_row(table, r["id"], r["fields"], r["hlc"], wanted, cipher)
                            for r in rows
                        ]
                        page = _encode_rows.encode(raws)
                        yield sep + page[1:-1]
                        sep, cursor = b",", rows[-1]["seq"]
                    if len(rows) < PULL_PAGE:
                        break
                yield b'],"deleted":['
                # A device that has nothing (first sync, reset) needs no tombstones.
                sep, cursor = b"", after
                while after > 0:
                    rows = await store.tombstone_page(conn, space, table, cursor, upto, PULL_PAGE)
                    if rows:
                        yield sep + _encode_rows.encode([r["id"] for r in rows])[1:-1]
                        sep, cursor = b",", rows[-1]["seq"]
                    if len(rows) < PULL_PAGE:
                        break
                yield b"]}"
            strategy = b',"experimentalStrategy":"replacement"' if reset else b""
            yield b'},"timestamp":' + str(upto + 1).encode() + strategy + b"}"

    async def _opener(self, space_id: str) -> SpaceCipher:
        if self._sync.private is None:
            raise RuntimeError("sealed text to open, but the sync service has no keys")
        return await self._sync.private.opener(space_id)

    # -- push -----------------------------------------------------------------------------

    async def push(self, caller: Caller, body: bytes) -> WatermelonPushResponse:
        """Apply ``pushChanges``' body (``{changes, lastPulledAt}`` or the bare changes):
        all of it validated first — a bad row is a 4xx naming its table, id and column,
        and nothing is written."""
        try:
            document = _decode(body)
        except msgspec.DecodeError as exc:
            raise Malformed(
                f"the request body is not JSON: {exc}", code=Code.MALFORMED_JSON
            ) from None
        if not isinstance(document, dict):
            raise _bad("changes", "expected an object of tables")
        changes = document.get("changes", document)
        if not isinstance(changes, dict):
            raise _bad("changes", "expected an object of tables")
        rows = _Rows(caller.device_id, self._clock)
        known = await self._existing(caller.space_id, changes)
        for table, sections in changes.items():
            if table == "lastPulledAt" and changes is document:
                continue
            if table not in COLUMNS:
                rows.ignored.add(str(table))
                continue
            if not isinstance(sections, dict):
                raise _bad(table, "expected {created, updated, deleted}")
            for section in _SECTIONS:
                items = sections.get(section, [])
                if not isinstance(items, list):
                    raise _bad(f"{table}.{section}", "expected a list")
                # In id order: WatermelonDB lists a table's rows in no stable order, and the
                # batch ids derive from the rows in order.
                for item in sorted(items, key=_row_key):
                    rows.add(table, section, item, known.get(table, {}))
        if not rows.changes:
            return WatermelonPushResponse(True, 0, [], [], sorted(rows.ignored))
        try:  # everything, before the first batch is written
            validate_changes(rows.changes, self._clock, self._max_skew_ms)
        except KithError as exc:
            raise rows.located(exc, 0) from None
        accepted, batch_ids, superseded = 0, [], []
        for start in range(0, len(rows.changes), MAX_CHANGES_PER_PUSH):
            chunk = rows.changes[start : start + MAX_CHANGES_PER_PUSH]
            digest = hashlib.sha256(
                b"".join(rows.fingerprints[start : start + MAX_CHANGES_PER_PUSH])
            ).digest()
            batch_id = "wm-" + hashlib.sha256(caller.device_id.encode() + digest).hexdigest()[:40]
            request = PushRequest(caller.device_id, batch_id, SCHEMA_VERSION_MAX, chunk)
            try:
                answer = await self._sync.push(
                    caller, request, fingerprint=digest, resend_lost=True
                )
            except KithError as exc:
                raise rows.located(exc, start) from None
            accepted += answer.accepted
            batch_ids.append(batch_id)
            superseded += [
                WatermelonSuperseded(s.table, s.id, s.field, s.reason) for s in answer.superseded
            ]
        return WatermelonPushResponse(True, accepted, batch_ids, superseded, sorted(rows.ignored))

    async def _existing(self, space_id: str, changes: dict[str, Any]) -> dict[str, dict[str, bool]]:
        """Which updated rows' records the server holds (id → deleted): an update to a record
        it has never had is applied as the whole row, as WatermelonDB's contract asks."""
        wanted: dict[str, list[str]] = {}
        for table, sections in changes.items():
            if table in COLUMNS and isinstance(sections, dict):
                updated = sections.get("updated")
                if isinstance(updated, list):
                    ids = [r["id"] for r in updated if isinstance(r, dict) and _is_id(r.get("id"))]
                    if ids:
                        wanted[table] = ids
        if not wanted:
            return {}
        async with self._pool.acquire() as conn:
            return {
                table: await store.existing_records(conn, space_id, table, ids)
                for table, ids in wanted.items()
            }


def _row_key(item: object) -> str:
    return str(item.get("id") if isinstance(item, dict) else item)


def _is_id(value: object) -> bool:
    return isinstance(value, str) and _ID.match(value) is not None


class _Rows:
    """A push's rows turned into Kith changes, with where each came from."""

    def __init__(self, device_id: str, clock: Clock) -> None:
        self.device = device_id
        self.clock = clock
        self.changes: list[ChangeIn] = []
        self.origins: list[tuple[str, str, str]] = []  # (table, section, id) per change
        self.fingerprints: list[bytes] = []
        self.ignored: set[str] = set()

    def add(self, table: str, section: str, item: object, known: Mapping[str, bool]) -> None:
        spec = TABLES[table]
        if spec.client_type is None:
            rid = (
                item
                if isinstance(item, str)
                else item.get("id")
                if isinstance(item, dict)
                else None
            )
            path = f"{table}.{section}[{rid}]"
            raise Forbidden(
                f"{table} is written by the server only",
                code=Code.READ_ONLY_TABLE,
                errors=[FieldError(path, f"{table} is read-only for clients")],
            )
        if section == "deleted":
            rid = item
            if not _is_id(rid):
                raise _row_error(table, section, None, "id", "not a record id")
            assert isinstance(rid, str)
            # No stamp comes with a deletion: the server's clock, the device as author
            # (deletes win whatever their stamp); the fingerprint leaves it out.
            stamp = format_hlc(parse(self.clock.now()).ms, 0, self.device)
            self._append(table, section, rid, {}, stamp, None, deleted=True)
            return
        if not isinstance(item, dict):
            raise _row_error(table, section, None, "id", "a row must be an object")
        rid = item.get("id")
        if not _is_id(rid):
            raise _row_error(table, section, None, "id", "not a record id (8-64 of A-Za-z0-9_-)")
        assert isinstance(rid, str)
        whole = section == "created" or rid not in known
        if whole and not spec.create_allowed:
            message = f"no {table} record with this id ({table} are created by the server)"
            raise _row_error(table, section, rid, "id", message)
        if whole:
            names: Iterable[str] = [k for k in item if k not in ("id", "_status", "_changed")]
        else:
            changed = item.get("_changed", "")
            if not isinstance(changed, str):
                raise _row_error(table, section, rid, "_changed", "expected a comma list")
            names = [n for n in changed.split(",") if n]
        fields = self._fields(table, section, rid, item, names, creating=whole)
        if not fields:
            return  # only stamps or local-only columns changed: nothing for Kith
        ms = _stamp_ms(table, section, rid, item)
        stamp = (
            format_hlc(ms, 0, self.device)
            if ms is not None
            else format_hlc(parse(self.clock.now()).ms, 0, self.device)
        )
        self._append(table, section, rid, fields, stamp, ms, deleted=False)

    def _append(
        self,
        table: str,
        section: str,
        rid: str,
        fields: dict[str, Any],
        stamp: str,
        ms: int | None,
        *,
        deleted: bool,
    ) -> None:
        self.changes.append(ChangeIn(table, rid, stamp, fields, deleted))  # type: ignore[arg-type]
        self.origins.append((table, section, rid))
        # What identifies this row's version when the app sends it again. A retry follows a
        # new pull, which overwrites a created row's columns with the server's copy (its
        # defaults filled in) but keeps an updated row's changed columns: so a created row
        # is known by its id and stamp, an updated row also by its changed values.
        if deleted:
            version: list[Any] = [table, rid, "deleted"]
        elif ms is not None and section == "created":
            version = [table, rid, section, ms]
        else:
            version = [table, rid, section, ms, fields]
        self.fingerprints.append(_canonical.encode(version))

    def _fields(
        self,
        table: str,
        section: str,
        rid: str,
        row: Mapping[str, Any],
        names: Iterable[str],
        *,
        creating: bool,
    ) -> dict[str, Any]:
        columns = COLUMNS[table]
        spec = TABLES[table]
        fields: dict[str, Any] = {}
        for name in names:
            if name in STAMP_COLUMNS:
                continue
            column = columns.get(name)
            if column is None:
                self.ignored.add(f"{table}.{name}")
                continue
            if name not in row:
                raise _row_error(table, section, rid, name, "listed in _changed but not sent")
            value = row[name]
            if value == "" and column.kind == "json":
                value = None  # a @json column never set on the phone
            if value is None and creating and not column.optional:
                if name in spec.required_on_create:
                    raise _row_error(table, section, rid, name, f"required when creating {table}")
                continue  # unset on the phone: the server's default applies
            fields[name] = to_kith(table, section, rid, column, value)
        if creating and spec.client_type is not None:
            missing = sorted(spec.required_on_create - fields.keys())
            if missing:
                raise _row_error(table, section, rid, missing[0], f"required when creating {table}")
        return fields

    def located(self, exc: KithError, offset: int) -> KithError:
        """``exc`` with its ``changes[i].fields.x`` paths rewritten to the row's table, id
        and column (``contacts.updated[abc123].display_name``)."""
        errors = []
        for error in exc.errors:
            match = _PATH.match(error.field)
            if match is None:
                errors.append(error)
                continue
            table, section, rid = self.origins[offset + int(match.group(1))]
            column = match.group(2) or "id"
            errors.append(FieldError(f"{table}.{section}[{rid}].{column}", error.message))
        if errors:
            exc.errors = errors
            exc.detail = f"{errors[0].field}: {errors[0].message}"
        return exc


def _stamp_ms(table: str, section: str, rid: str, row: Mapping[str, Any]) -> int | None:
    for name in ("updated_at", "created_at"):
        value = row.get(name)
        if value is None or value == 0:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 < value <= _MAX_MS
        ):
            raise _row_error(table, section, rid, name, "expected milliseconds since the epoch")
        return int(value)
    return None


def _row_error(
    table: str, section: str, rid: str | None, column: str, message: str
) -> InvalidInput:
    path = f"{table}.{section}[{rid if rid is not None else '?'}].{column}"
    return InvalidInput(f"{path}: {message}", errors=[FieldError(path, message)])


def to_kith(table: str, section: str, rid: str, column: Column, value: Any) -> Any:
    """A WatermelonDB column value as the Kith field's value (checked by Kith's own types
    afterwards; here only what the column kind implies)."""
    if value is None:
        return None
    kind = column.kind
    if kind == "time_ms":
        if isinstance(value, bool) or not isinstance(value, int | float) or abs(value) > _MAX_MS:
            raise _row_error(
                table, section, rid, column.name, "expected milliseconds since the epoch"
            )
        instant = _EPOCH + dt.timedelta(milliseconds=value)
        return instant.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if kind == "json":
        if isinstance(value, list | dict):
            return value
        if not isinstance(value, str):
            raise _row_error(
                table, section, rid, column.name, "expected JSON text (a @json column)"
            )
        try:
            return _decode(value)
        except msgspec.DecodeError:
            raise _row_error(table, section, rid, column.name, "not valid JSON") from None
    if kind == "number" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def pulled_row(
    table: str,
    rid: str,
    fields: str | bytes,
    hlc: str,
    wanted: frozenset[str] | None = None,
    cipher: SpaceCipher | None = None,
) -> dict[str, Any]:
    """A stored record (its ``fields`` JSON and newest stamp) as WatermelonDB's raw record:
    declared columns only, no ``_status``/``_changed``, ``updated_at`` = the stamp's ms;
    private text opened with ``cipher`` (decision 0021)."""
    columns = COLUMNS[table]
    out: dict[str, Any] = {"id": rid}
    decoded = _decode(fields)
    if cipher is not None:
        cipher.open_fields(table, rid, decoded)
    for name, value in decoded.items():
        column = columns.get(name)
        if column is None or (wanted is not None and name not in wanted):
            continue
        if value is None:
            out[name] = None
        elif column.kind == "time_ms":
            try:
                out[name] = (dt.datetime.fromisoformat(value) - _EPOCH) // _MS
            except (TypeError, ValueError):
                continue  # not an instant with an offset: never stored by Kith's types
        elif column.kind == "json":
            out[name] = _encode_rows.encode(value).decode()
        else:
            out[name] = value
    if wanted is None or "updated_at" in wanted:
        out["updated_at"] = int(hlc[:13]) if hlc else 0
    return out

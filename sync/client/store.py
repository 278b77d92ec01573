"""The device's local database (SQLite): the server's state as last seen, the queue of
local changes the server has not accepted yet, and the sync bookkeeping.

Three tables::

    records  each record as the server last showed it (from a pull, or from a push it
             accepted); ``fields`` is ``{}`` for a tombstone
    pending  one row per (table, id, field) changed here and not yet accepted: the latest
             local value and its HLC. Field ``''`` means "delete this record".
    meta     the pull cursor, the clock, the batch in flight, and a count of pulls

What the person sees is ``records`` overlaid with ``pending`` (:meth:`LocalStore.view`).
Keeping the two apart is what makes a lost edit disappear cleanly: when the server says
a pushed value was superseded, dropping it from ``pending`` reveals the winner, which is
either in ``records`` already or arrives with the next pull.

Editing a field twice before a sync keeps only the latest value (one row per field), so
the queue stays as small as the set of fields touched. A batch is *frozen* — its id and
exact content saved in ``meta`` — before it is sent, so a retry after a timeout or crash
re-sends the same ``batch_id`` with the same changes and the server applies it once.

Every method is one SQLite transaction under a lock, so the UI thread may edit while a
sync runs on another thread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Batch", "Change", "LocalStore", "Record"]

_DELETE = ""  # the pending row that stands for "delete this record" (never a field name)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    tbl     TEXT NOT NULL,
    id      TEXT NOT NULL,
    fields  TEXT NOT NULL,              -- JSON object, {} for a tombstone
    deleted INTEGER NOT NULL,
    hlc     TEXT NOT NULL,
    PRIMARY KEY (tbl, id)
);
CREATE TABLE IF NOT EXISTS pending (
    tbl   TEXT NOT NULL,
    id    TEXT NOT NULL,
    field TEXT NOT NULL,                -- '' = delete the record
    value TEXT,                         -- JSON; NULL for a delete
    hlc   TEXT NOT NULL,
    PRIMARY KEY (tbl, id, field)
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

# The server's state replaces ours whole: a pulled row is the record's complete state.
_PUT_RECORD = """
INSERT OR REPLACE INTO records (tbl, id, fields, deleted, hlc) VALUES (?, ?, ?, ?, ?)
"""


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True, slots=True)
class Record:
    """A record as the person sees it; ``fields`` is empty once it is deleted."""

    table: str
    id: str
    fields: dict[str, Any]
    deleted: bool
    hlc: str


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of a push: ``fields`` written at ``hlc``, or a delete."""

    table: str
    id: str
    hlc: str
    fields: dict[str, Any] = field(default_factory=dict)
    deleted: bool = False

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"table": self.table, "id": self.id, "hlc": self.hlc}
        if self.deleted:
            wire["deleted"] = True
        else:
            wire["fields"] = self.fields
        return wire

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Change:
        fields, deleted = wire.get("fields", {}), wire.get("deleted", False)
        return cls(wire["table"], wire["id"], wire["hlc"], fields, deleted)


@dataclass(frozen=True, slots=True)
class Batch:
    """A frozen push: sent, and if need be re-sent, exactly as it is."""

    batch_id: str
    changes: tuple[Change, ...]


class LocalStore:
    """The device's SQLite database: a file path, or ``":memory:"`` for tests."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        # isolation_level=None: transactions are begun explicitly in _tx; any thread may
        # call in (the lock serialises them).
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- meta ---------------------------------------------------------------------------

    @staticmethod
    def _get_meta(db: sqlite3.Connection, key: str) -> str | None:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def _set_meta(db: sqlite3.Connection, key: str, value: str | None) -> None:
        if value is None:
            db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def cursor(self) -> str | None:
        """Where the next pull starts (``None``: from the beginning)."""
        with self._tx() as db:
            return self._get_meta(db, "cursor")

    def clock(self) -> str | None:
        """The last HLC stamp this device issued or saw, to resume its clock."""
        with self._tx() as db:
            return self._get_meta(db, "clock")

    def save_clock(self, stamp: str) -> None:
        with self._tx() as db:
            self._set_meta(db, "clock", stamp)

    # -- local edits --------------------------------------------------------------------

    def write(self, table: str, record_id: str, fields: Mapping[str, Any], hlc: str) -> None:
        """Queue local field values (replacing older queued values of the same fields)."""
        with self._tx() as db:
            db.executemany(
                """
                INSERT INTO pending (tbl, id, field, value, hlc) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (tbl, id, field)
                DO UPDATE SET value = excluded.value, hlc = excluded.hlc
                """,
                [(table, record_id, name, _dumps(v), hlc) for name, v in fields.items()],
            )
            self._set_meta(db, "clock", hlc)

    def delete(self, table: str, record_id: str, hlc: str) -> None:
        """Queue a delete. Queued edits of the record are dropped: deletes are final, so
        the server would only file them as lost."""
        with self._tx() as db:
            db.execute("DELETE FROM pending WHERE tbl = ? AND id = ?", (table, record_id))
            db.execute(
                "INSERT INTO pending (tbl, id, field, value, hlc) VALUES (?, ?, ?, NULL, ?)",
                (table, record_id, _DELETE, hlc),
            )
            self._set_meta(db, "clock", hlc)

    # -- reads --------------------------------------------------------------------------

    def view(self, table: str, record_id: str) -> Record | None:
        """The record as the person sees it: server state overlaid with local edits."""
        with self._tx() as db:
            base = db.execute(
                "SELECT fields, deleted, hlc FROM records WHERE tbl = ? AND id = ?",
                (table, record_id),
            ).fetchone()
            queued = db.execute(
                "SELECT field, value, hlc FROM pending WHERE tbl = ? AND id = ?",
                (table, record_id),
            ).fetchall()
        return _compose(table, record_id, base, queued)

    def view_all(self, table: str, *, include_deleted: bool = False) -> list[Record]:
        with self._tx() as db:
            bases = {
                r[0]: r[1:]
                for r in db.execute(
                    "SELECT id, fields, deleted, hlc FROM records WHERE tbl = ?", (table,)
                )
            }
            queued: dict[str, list[tuple[str, str | None, str]]] = {}
            for rid, name, value, hlc in db.execute(
                "SELECT id, field, value, hlc FROM pending WHERE tbl = ?", (table,)
            ):
                queued.setdefault(rid, []).append((name, value, hlc))
        out = []
        for rid in sorted(bases.keys() | queued.keys()):
            record = _compose(table, rid, bases.get(rid), queued.get(rid, []))
            if record is not None and (include_deleted or not record.deleted):
                out.append(record)
        return out

    def server_records(self) -> list[Record]:
        """Every record (tombstones included) as the server last showed it."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT tbl, id, fields, deleted, hlc FROM records ORDER BY tbl, id"
            ).fetchall()
        return [Record(t, i, json.loads(f), bool(d), h) for t, i, f, d, h in rows]

    def pending_changes(self) -> list[Change]:
        """The queue as it would be pushed, oldest record first."""
        with self._tx() as db:
            return [c for group in self._pending_by_record(db) for c in group]

    # -- push ---------------------------------------------------------------------------

    def in_flight(self) -> Batch | None:
        """The batch sent but not yet acknowledged, if any."""
        with self._tx() as db:
            return self._in_flight(db)

    def _in_flight(self, db: sqlite3.Connection) -> Batch | None:
        raw = self._get_meta(db, "in_flight")
        if raw is None:
            return None
        frozen = json.loads(raw)
        return Batch(frozen["batch_id"], tuple(Change.from_wire(c) for c in frozen["changes"]))

    def freeze(self, batch_id: str, max_changes: int) -> Batch | None:
        """Freeze the next batch from the queue (``None`` if nothing is queued). A record's
        changes always travel together: a create must not arrive after its own edits."""
        with self._tx() as db:
            if (current := self._in_flight(db)) is not None:
                return current
            changes: list[Change] = []
            for group in self._pending_by_record(db):
                if changes and len(changes) + len(group) > max_changes:
                    break
                changes.extend(group)
            if not changes:
                return None
            wire = {"batch_id": batch_id, "changes": [c.to_wire() for c in changes]}
            self._set_meta(db, "in_flight", _dumps(wire))
            # Remember how many pulls had brought records: see complete() for why.
            self._set_meta(db, "in_flight_pulls", self._get_meta(db, "pulls") or "0")
            return Batch(batch_id, tuple(changes))

    def complete(self, batch: Batch, superseded: Iterable[tuple[str, str, str, str]]) -> None:
        """The server applied ``batch``. Drop exactly the queued values it carried (a value
        edited again since has a new HLC and stays queued), and record what the server now
        holds: accepted deletes, records found deleted there, and accepted values.
        ``superseded`` lists (table, id, field, reason) of the values that lost.

        Accepted values are recorded only if no pull brought records while the batch was
        in flight. A retried batch gets the answer stored when it was first applied; if a
        pull ran in between, ``records`` may already hold newer values than "accepted"
        says, and writing ours over them would never be corrected. Skipping is safe: the
        record changed with our push, so either that pull already brought the result, or
        the next one will."""
        lost: dict[tuple[str, str], dict[str, str]] = {}
        for table, rid, name, reason in superseded:
            lost.setdefault((table, rid), {})[name] = reason
        with self._tx() as db:
            no_pull_since = self._get_meta(db, "in_flight_pulls") == (
                self._get_meta(db, "pulls") or "0"
            )
            self._drop_carried(db, batch)
            for change in batch.changes:
                key = (change.table, change.id)
                losses = lost.get(key, {})
                if change.deleted or "deleted" in losses.values():
                    self._merge_base(db, key, {}, change.hlc, deleted=True)
                else:
                    accepted = {n: v for n, v in change.fields.items() if n not in losses}
                    if accepted and no_pull_since:
                        self._merge_base(db, key, accepted, change.hlc, deleted=False)
            self._set_meta(db, "in_flight", None)
            self._set_meta(db, "in_flight_pulls", None)

    def discard_in_flight(self) -> Batch | None:
        """Drop the batch in flight and the queued values it carried (newer edits stay)."""
        with self._tx() as db:
            batch = self._in_flight(db)
            if batch is None:
                return None
            self._drop_carried(db, batch)
            self._set_meta(db, "in_flight", None)
            self._set_meta(db, "in_flight_pulls", None)
            return batch

    @staticmethod
    def _drop_carried(db: sqlite3.Connection, batch: Batch) -> None:
        """Unqueue the values ``batch`` carried; a value edited since has another HLC."""
        db.executemany(
            "DELETE FROM pending WHERE tbl = ? AND id = ? AND field = ? AND hlc = ?",
            [
                (c.table, c.id, name, c.hlc)
                for c in batch.changes
                for name in ([_DELETE] if c.deleted else list(c.fields))
            ],
        )

    @staticmethod
    def _merge_base(
        db: sqlite3.Connection,
        key: tuple[str, str],
        fields: dict[str, Any],
        hlc: str,
        *,
        deleted: bool,
    ) -> None:
        row = db.execute(
            "SELECT fields, deleted, hlc FROM records WHERE tbl = ? AND id = ?", key
        ).fetchone()
        if row is not None and row[1]:
            return  # already a tombstone: nothing can change it
        merged = {} if deleted else {**(json.loads(row[0]) if row else {}), **fields}
        stamp = max(hlc, row[2]) if row else hlc
        db.execute(
            _PUT_RECORD,
            (*key, _dumps(merged), int(deleted), stamp),
        )

    # -- pull ---------------------------------------------------------------------------

    def apply_pulled(self, records: Sequence[Record], cursor: str | None) -> None:
        """Store one pulled page as the server's state; save ``cursor`` (if given) in the
        same transaction, so a crash never leaves the cursor ahead of the data."""
        with self._tx() as db:
            db.executemany(
                _PUT_RECORD,
                [
                    (r.table, r.id, _dumps({} if r.deleted else r.fields), int(r.deleted), r.hlc)
                    for r in records
                ],
            )
            if records:
                pulls = int(self._get_meta(db, "pulls") or "0") + 1
                self._set_meta(db, "pulls", str(pulls))
            if cursor is not None:
                self._set_meta(db, "cursor", cursor)

    def finish_reset(self, seen: set[tuple[str, str]], cursor: str) -> int:
        """End a full resync: drop records the server no longer has (unless edited here
        and still queued) and save the new cursor. Returns how many were dropped."""
        with self._tx() as db:
            keep = seen | {tuple(r) for r in db.execute("SELECT DISTINCT tbl, id FROM pending")}
            gone = [k for k in db.execute("SELECT tbl, id FROM records") if tuple(k) not in keep]
            db.executemany("DELETE FROM records WHERE tbl = ? AND id = ?", gone)
            self._set_meta(db, "cursor", cursor)
            return len(gone)

    # -- helpers ------------------------------------------------------------------------

    @staticmethod
    def _pending_by_record(db: sqlite3.Connection) -> list[list[Change]]:
        """Queued rows as changes (one per record and HLC), grouped by record, the record
        with the oldest change first."""
        records: dict[tuple[str, str], dict[tuple[str, bool], dict[str, Any]]] = {}
        rows = db.execute("SELECT tbl, id, field, value, hlc FROM pending ORDER BY tbl, id, hlc")
        for table, rid, name, value, hlc in rows:
            by_stamp = records.setdefault((table, rid), {})
            is_delete = name == _DELETE
            fields = by_stamp.setdefault((hlc, is_delete), {})
            if not is_delete:
                fields[name] = json.loads(value)
        groups = [
            [Change(t, i, hlc, fields, is_delete) for (hlc, is_delete), fields in stamps.items()]
            for (t, i), stamps in records.items()
        ]
        groups.sort(key=lambda g: g[0].hlc)
        return groups


def _compose(
    table: str,
    record_id: str,
    base: Sequence[Any] | None,
    queued: Sequence[tuple[str, str | None, str]],
) -> Record | None:
    if base is None and not queued:
        return None
    fields: dict[str, Any] = json.loads(base[0]) if base is not None else {}
    deleted = bool(base[1]) if base is not None else False
    hlc = str(base[2]) if base is not None else ""
    for name, value, stamp in queued:
        if name == _DELETE:
            deleted = True
        else:
            fields[name] = json.loads(value) if value is not None else None
        hlc = max(hlc, stamp)
    return Record(table, record_id, {} if deleted else fields, deleted, hlc)

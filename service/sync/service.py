"""The sync engine: push (validate, merge, cascade, sequence, record) and pull.

One transaction per push, begun by taking the space lock (see ``service/store/sync.py``).
The merge law itself lives in ``sync.merge``; this module decides what to merge and what
to write.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg
import msgspec
import msgspec.structs

from schemas.problem import FieldError
from schemas.sync import (
    ChangeOut,
    ConflictEntry,
    ConflictsResponse,
    PullRequest,
    PullResponse,
    PushRequest,
    PushResponse,
    SupersededField,
)
from schemas.tables import TABLES, Cascade
from service.accounts.sessions import Caller
from service.errors import Code, Conflict, Forbidden, InvalidInput, Malformed
from service.jobs import Kind
from service.store import care as care_store
from service.store import jobs as job_store
from service.store import sync as store
from service.store.db import Connection
from service.sync.private_text import (
    PRIVATE_FIELDS,
    PrivateText,
    SpaceCipher,
    has_sealed,
    needs_sealing,
)
from service.sync.validation import ValidChange, check_schema_version, validate_changes
from sync.cursor import InvalidCursor, decode_cursor, encode_cursor
from sync.hlc import Clock
from sync.merge import EMPTY_CLOCK, Loss, RecordState, apply, tombstone

__all__ = ["Publish", "SeqOracle", "SyncService"]

log = logging.getLogger("kith.sync")

Publish = Callable[[str, int], Awaitable[None]]


class SessionCheck(Protocol):
    """A caller's session to be confirmed by the query that reads for it (see
    ``service.http.guard.PendingSession``): ``settle`` raises if it is not live."""

    family_id: str
    user_id: str
    device_id: str

    def settle(self, live: bool) -> None: ...


class SeqOracle(Protocol):
    """Where the pull learns a space's seq without PostgreSQL (``service.sync.realtime``)."""

    async def latest(self, space_id: str) -> int | None:
        """A seq at least as new as every commit made before the call, or None."""

    async def learned(self, space_id: str, seq: int) -> None:
        """``seq`` was just read from PostgreSQL (the oracle had none)."""


_RULE_INPUTS = frozenset(name for name, spec in TABLES.items() if spec.feeds_rules)
_URGENT = frozenset(name for name, spec in TABLES.items() if spec.urgent)

_push_encoder = msgspec.json.Encoder()
_push_decoder = msgspec.json.Decoder(PushResponse)
_encode_value = msgspec.json.Encoder(order="sorted")


class _Working(msgspec.Struct):  # a Struct: one is built per changed record
    """A record being changed by this batch."""

    table: str
    id: str
    first_index: int
    before: RecordState | None
    state: RecordState
    touched: bool = False  # has a change of this batch been applied yet
    complete: bool = False  # a new record already holds its defaults


@dataclass(slots=True)
class _Batch:
    records: dict[tuple[str, str], _Working] = field(default_factory=dict)
    superseded: list[SupersededField] = field(default_factory=list)
    conflicts: list[store.ConflictWrite] = field(default_factory=list)
    # Records where a value this batch pushed lost (re-sequenced with ``resend_lost``).
    lost: set[tuple[str, str]] = field(default_factory=set)


class SyncService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        *,
        max_skew_ms: int,
        publish: Publish | None = None,
        announce: Publish | None = None,
        seqs: SeqOracle | None = None,
        evaluate_debounce_s: float | None = None,
        wake_workers: Callable[[], Awaitable[None]] | None = None,
        private: PrivateText | None = None,
    ) -> None:
        """``announce(space, seq)`` runs before each COMMIT that advances a space (holding
        its lock) and ``publish(space, seq)`` after it; ``seqs`` lets a pull whose cursor
        is the space's latest seq answer without PostgreSQL (see ``service.sync.realtime``).
        ``private`` seals and opens private text (decision 0021); without it (a worker's
        server writes) a private value to write or read is a programming error."""
        self.private = private
        self._pool = pool
        self._clock = clock
        self._max_skew_ms = max_skew_ms
        self._publish = publish
        self._announce = announce
        self._seqs = seqs
        self._evaluate_debounce_s = evaluate_debounce_s
        self._wake_workers = wake_workers

    async def server_write(
        self,
        space_id: str,
        table: str,
        record_id: str,
        fields: dict[str, Any] | None,
        *,
        create: bool = False,
        retired: frozenset[str] = frozenset(),
    ) -> bool:
        """Write ``fields`` of a record as the server (a nudge's "Snooze a week", an
        insight's status, a caregiver's summary), or delete it (``fields=None``): merged with
        the server's clock like any device's change, so it syncs to every device and a later
        edit on a phone still wins. Without ``create`` only an existing live record is
        written. ``retired``: server-written fields no longer in the schema, removed from
        the record (a pull carries the whole record, so devices drop them too). Returns
        whether the record exists (live) afterwards."""
        if fields is not None and needs_sealing(table, fields):
            fields = (await self._sealer(space_id)).seal_fields(table, record_id, fields)
        async with self._pool.acquire() as conn, conn.transaction():
            position = await store.lock_space(conn, space_id)
            current = (await store.load_records(conn, space_id, table, [record_id])).get(record_id)
            if current is not None and current.deleted:
                return False
            if current is None and (fields is None or not create):
                return False
            if current is not None and current.hlc != EMPTY_CLOCK:
                # What the server writes supersedes what it just read under the lock, even
                # if another process's clock (an API's, folded ahead by a fast phone within
                # the skew allowance) stamped it: else a worker's refresh of a summary would
                # silently lose to the older content.
                self._clock.receive(current.hlc)
            stamp = self._clock.now()
            state = tombstone(stamp) if fields is None else apply(current, fields, stamp).state
            if retired & state.fields.keys():
                state = msgspec.structs.replace(
                    state,
                    fields={k: v for k, v in state.fields.items() if k not in retired},
                    clocks={k: v for k, v in state.clocks.items() if k not in retired},
                )
            if state == current:
                return True
            seq = position.seq + 1
            await store.write_records(
                conn, space_id, table, [store.RecordWrite(record_id, state, seq)]
            )
            await store.advance_seq(conn, space_id, seq)
            if self._announce is not None:
                await self._announce(space_id, seq)
        if self._publish is not None:
            await self._publish(space_id, seq)
        return fields is not None

    # -- push ---------------------------------------------------------------------------

    async def push(
        self,
        caller: Caller,
        req: PushRequest,
        *,
        session: SessionCheck | None = None,
        fingerprint: bytes | None = None,
        resend_lost: bool = False,
    ) -> PushResponse:
        """Apply a batch, all of it or none. ``session``, when given, is confirmed live by
        the statement that takes the space's lock, before anything is read or written.
        ``fingerprint`` is what tells a retry of ``batch_id`` from a reuse of it; by default
        the hash of the changes as sent (an adapter whose stamps are minted on arrival,
        ``service/sync/watermelon.py``, passes the hash of what its device sent instead).
        ``resend_lost``: a record where a value of this batch lost gets a new seq even if
        nothing changed, so the pushing device's next pull brings it the winner — for
        clients that do not read ``superseded`` (WatermelonDB; decision 0011). Kith's own
        clients drop a superseded value from their queue and need no pull traffic for it."""
        check_schema_version(req.schema_version)
        if req.device_id != caller.device_id:
            raise Forbidden(
                "device_id is not the device this token was issued to",
                code=Code.DEVICE_MISMATCH,
                errors=[FieldError("device_id", "does not match the signed-in device")],
            )
        # What the device sent (before clamping), to tell a retry from a reused batch_id.
        sent = _push_encoder.encode(req.changes)
        request_hash = fingerprint or hashlib.sha256(sent).digest()
        changes, skew = validate_changes(
            req.changes, self._clock, self._max_skew_ms, look_for_nul=b"\\u0000" in sent
        )
        if any(needs_sealing(c.table, c.fields) for c in changes):
            # Sealed before the merge (the key made first, committed on its own): the stored
            # state, the merge's comparisons and the conflict history see only sealed text.
            cipher = await self._sealer(caller.space_id)
            changes = [
                msgspec.structs.replace(c, fields=cipher.seal_fields(c.table, c.id, c.fields))
                for c in changes
            ]
        async with self._pool.acquire() as conn, conn.transaction():
            start = await store.begin_push(
                conn,
                caller.space_id,
                req.batch_id,
                (session.family_id, session.user_id, session.device_id) if session else None,
            )
            if session is not None:
                session.settle(bool(start.session_live))
            position, stored = start.position, start.stored
            if stored is not None:
                response_bytes, digest = stored
                if digest is not None and digest != request_hash:
                    raise Conflict(
                        "this batch_id was already used for different changes; a retry must "
                        "resend the same changes, new changes need a new batch_id",
                        code=Code.BATCH_ID_REUSED,
                        errors=[FieldError("batch_id", "already used for different changes")],
                    )
                return _push_decoder.decode(response_bytes)  # a retry: same answer, no writes
            batch = await self._merge(conn, caller.space_id, changes)
            if not resend_lost:
                batch.lost.clear()
            await self._cascade(conn, caller.space_id, batch)
            seq = await self._write(conn, caller.space_id, position.seq, batch)
            if self._evaluate_debounce_s is not None and _feeds_rules(batch):
                # In the same transaction: the evaluation is queued if and only if the data
                # it reads was committed. Debounced per space (one queued job at a time).
                await job_store.enqueue(
                    conn,
                    Kind.EVALUATE,
                    space_id=caller.space_id,
                    dedupe_key=caller.space_id,
                    delay_s=self._evaluate_debounce_s,
                )
            urgent = _touches(batch, _URGENT)
            if urgent:
                # At once, not debounced: a "need help" check-in alerts caregivers now —
                # for people with a caregiver or a check-in deadline (nobody else's
                # check-ins need anything done).
                await care_store.enqueue_followups(conn, Kind.CARE_CHECK_IN, [caller.space_id])
            response = PushResponse(
                batch_id=req.batch_id,
                accepted=len(changes),
                superseded=batch.superseded,
                seq=seq,
                server_hlc=self._clock.now(),
                clock_skew_ms=skew,
            )
            await store.finish_push(
                conn,
                caller.space_id,
                seq if seq > position.seq else None,
                req.batch_id,
                caller.device_id,
                _push_encoder.encode(response),
                request_hash,
            )
            if seq > position.seq and self._announce is not None:
                # Last, still holding the space lock: the new seq is known before it can be
                # read, so no reader can take the old value for the latest.
                await self._announce(caller.space_id, seq)
        if seq > position.seq and self._publish is not None:
            await self._publish(caller.space_id, seq)
        if urgent and self._wake_workers is not None:
            await self._wake_workers()  # idle workers take it now, not at their next poll
        return response

    async def _sealer(self, space_id: str) -> SpaceCipher:
        if self.private is None:
            raise RuntimeError("private text to seal, but this SyncService has no keys")
        return await self.private.for_writing(space_id)

    async def _opener(self, space_id: str) -> SpaceCipher:
        if self.private is None:
            raise RuntimeError("sealed text to open, but this SyncService has no keys")
        return await self.private.opener(space_id)

    async def _merge(self, conn: Connection, space_id: str, changes: list[ValidChange]) -> _Batch:
        batch = _Batch()
        by_table: dict[str, set[str]] = {}
        for c in changes:
            by_table.setdefault(c.table, set()).add(c.id)
        current: dict[tuple[str, str], RecordState] = {}
        for table, ids in by_table.items():
            for rid, state in (await store.load_records(conn, space_id, table, ids)).items():
                current[(table, rid)] = state
        changes_per_record = Counter((c.table, c.id) for c in changes)
        for c in changes:
            key = (c.table, c.id)
            work = batch.records.get(key)
            if work is None:
                before = current.get(key)
                if before is None and not TABLES[c.table].create_allowed:
                    raise _field_error(c.index, "id", f"no {c.table} record with this id")
                if before is None and not c.deleted and changes_per_record[key] == 1:
                    # The common case of a new record written once: its final state directly
                    # (what apply + _complete_new_record would build, without either).
                    batch.records[key] = _new_record(c)
                    continue
                work = _Working(c.table, c.id, c.index, before, before or RecordState())
                batch.records[key] = work
            base = work.state if (work.before is not None or work.touched) else None
            outcome = apply(base, c.fields, c.hlc, deleted=c.deleted)
            work.state, work.touched = outcome.state, True
            if outcome.superseded:
                batch.lost.add(key)
            for loss in outcome.superseded:
                batch.superseded.append(SupersededField(c.table, c.id, loss.field, loss.reason))  # type: ignore[arg-type]
                batch.conflicts.append(_conflict(c.table, c.id, loss))
            for loss in outcome.displaced:
                batch.conflicts.append(_conflict(c.table, c.id, loss))
        for work in batch.records.values():
            if work.before is None and not work.state.deleted and not work.complete:
                _complete_new_record(work)
        return batch

    async def _cascade(self, conn: Connection, space_id: str, batch: _Batch) -> None:
        """For every declared cascade (``TableSpec.cascade``; today interactions of
        contacts): tombstone the records left with no live parent (server writes, new seq)
        — those naming parents deleted now, and those pushed now naming deleted parents."""
        for child, spec in TABLES.items():
            if spec.cascade is not None:
                await self._cascade_one(conn, space_id, batch, child, spec.cascade)

    async def _cascade_one(
        self, conn: Connection, space_id: str, batch: _Batch, child: str, cascade: Cascade
    ) -> None:
        parent, field = cascade.parent, cascade.field
        newly_deleted = [
            w.id
            for w in batch.records.values()
            if w.table == parent and w.state.deleted and not (w.before and w.before.deleted)
        ]
        candidates: dict[str, RecordState] = {}
        if newly_deleted:
            candidates = await store.records_naming(conn, space_id, child, newly_deleted)
        for w in batch.records.values():
            if w.table == child and not w.state.deleted:
                candidates[w.id] = w.state
        if not candidates:
            return
        named = {pid for s in candidates.values() for pid in s.fields.get(field, [])}
        deleted = await store.deleted_among(conn, space_id, parent, named)
        for w in batch.records.values():
            if w.table == parent and w.id in named:
                (deleted.add if w.state.deleted else deleted.discard)(w.id)
        for rid, state in candidates.items():
            parent_ids = state.fields.get(field) or []
            if parent_ids and all(pid in deleted for pid in parent_ids):
                work = batch.records.get((child, rid))
                if work is None:
                    work = _Working(child, rid, -1, state, state)
                    batch.records[(child, rid)] = work
                if not work.state.deleted:
                    work.state = tombstone(self._clock.now())

    async def _write(self, conn: Connection, space_id: str, seq: int, batch: _Batch) -> int:
        """Give every changed record the next sequence number, in batch order."""
        writes: dict[str, list[store.RecordWrite]] = {}
        ordered = sorted(batch.records.values(), key=lambda w: (w.first_index < 0, w.first_index))
        for work in ordered:
            if (
                work.before is not None
                and work.state == work.before
                and (work.table, work.id) not in batch.lost
            ):
                continue  # nothing changed: no new seq, no pull traffic
            # With ``resend_lost``, a record whose pushed value lost gets a new seq even if
            # nothing changed, so the device that pushed it is sent the winner on its next
            # pull: WatermelonDB keeps its own value and marks the row synced after the
            # push, and would otherwise show the losing value forever (decision 0011).
            seq += 1
            writes.setdefault(work.table, []).append(store.RecordWrite(work.id, work.state, seq))
        for table, rows in writes.items():
            await store.write_records(conn, space_id, table, rows)
        await store.insert_conflicts(conn, space_id, batch.conflicts)
        return seq  # the space's counter is advanced with the stored answer (finish_push)

    # -- pull ---------------------------------------------------------------------------

    async def pull_if_unchanged(self, space_id: str, req: PullRequest) -> PullResponse | None:
        """The answer to a pull whose cursor is the space's latest seq, known without
        PostgreSQL; None when that cannot be known so (the caller then uses :meth:`pull`).
        The caller has authenticated the request (``service/http/fastpath.py``)."""
        if req.cursor is None or self._seqs is None:
            return None
        check_schema_version(req.schema_version)
        after = _cursor_position(req.cursor)
        if await self._seqs.latest(space_id) != after:
            return None
        return PullResponse([], encode_cursor(after), False, self._clock.now(), False)

    async def pull(
        self, caller: Caller, req: PullRequest, *, session: SessionCheck | None = None
    ) -> PullResponse:
        """One page after the cursor. A cursor at the space's latest seq is answered from
        the seq oracle alone; anything else is one query (``store.pull_page``), which also
        confirms ``session`` (given when the caller's session is known live only from a
        cache) before anything it read is returned."""
        check_schema_version(req.schema_version)
        after = _cursor_position(req.cursor)
        latest = None
        if req.cursor is not None and self._seqs is not None:
            latest = await self._seqs.latest(caller.space_id)
            if latest == after:  # nothing committed since the cursor: no database needed
                return PullResponse([], encode_cursor(after), False, self._clock.now(), False)
        page = await store.pull_page(
            self._pool,
            caller.space_id,
            after,
            req.limit,
            from_cursor=req.cursor is not None,
            session=(session.family_id, session.user_id, session.device_id) if session else None,
        )
        if session is not None:
            session.settle(bool(page.session_live))
        if latest is None and self._seqs is not None and req.cursor is not None:
            await self._seqs.learned(caller.space_id, page.seq)
        rows = page.rows
        has_more = len(rows) > req.limit
        rows = rows[: req.limit]
        if any(has_sealed(r[2]) for r in rows):
            cipher = await self._opener(caller.space_id)
            changes = [
                ChangeOut(r[0], r[1], msgspec.Raw(cipher.open_json(r[0], r[1], r[2])), r[3], r[4])
                for r in rows
            ]
        else:
            changes = [ChangeOut(r[0], r[1], msgspec.Raw(r[2]), r[3], r[4]) for r in rows]
        cursor = encode_cursor(rows[-1][5] if rows else page.after)
        return PullResponse(changes, cursor, has_more, self._clock.now(), page.reset)

    # -- conflict history ---------------------------------------------------------------

    async def conflicts(
        self,
        caller: Caller,
        *,
        since: dt.datetime,
        after: str | None,
        limit: int,
        table: str | None,
        record_id: str | None,
    ) -> ConflictsResponse:
        after_id = 0
        if after is not None:
            try:
                after_id = decode_cursor(after)
            except InvalidCursor as exc:
                raise Malformed(
                    str(exc), code=Code.INVALID_CURSOR, errors=[FieldError("after", str(exc))]
                ) from None
        rows = await store.conflicts_since(
            self._pool,
            caller.space_id,
            since=since,
            after_id=after_id,
            limit=limit + 1,
            table=table,
            record_id=record_id,
        )
        page = rows[:limit]
        if any(_is_private(r) and has_sealed(r.value_json) for r in page):
            cipher = await self._opener(caller.space_id)
            page = [_opened(cipher, r) if _is_private(r) else r for r in page]
        entries = [
            ConflictEntry(
                r.table,
                r.record_id,
                r.field,
                msgspec.Raw(r.value_json.encode()),
                r.hlc,
                r.winner_hlc,
                r.reason,  # type: ignore[arg-type]  # the column holds only these values
                r.recorded_at,
            )
            for r in page
        ]
        nxt = encode_cursor(page[-1].id) if len(rows) > limit else None
        return ConflictsResponse(entries, nxt)


def _is_private(r: store.ConflictRow) -> bool:
    return r.field in PRIVATE_FIELDS.get(r.table, ())


def _opened(cipher: SpaceCipher, r: store.ConflictRow) -> store.ConflictRow:
    value = cipher.open_value(r.table, r.record_id, r.field, msgspec.json.decode(r.value_json))
    return dataclasses.replace(r, value_json=_encode_value.encode(value).decode())


def _touches(batch: _Batch, tables: frozenset[str]) -> bool:
    return any(w.table in tables and w.state != w.before for w in batch.records.values())


def _feeds_rules(batch: _Batch) -> bool:
    return _touches(batch, _RULE_INPUTS)


def _conflict(table: str, record_id: str, loss: Loss) -> store.ConflictWrite:
    return store.ConflictWrite(
        table,
        record_id,
        loss.field,
        _encode_value.encode(loss.value).decode(),
        loss.hlc,
        loss.winner_hlc,
        loss.reason,
    )


def _field_error(index: int, name: str, message: str) -> InvalidInput:
    path = f"changes[{index}].{name}"
    return InvalidInput(f"{path}: {message}", errors=[FieldError(path, message)])


def _new_record(c: ValidChange) -> _Working:
    spec = TABLES[c.table]
    missing = sorted(spec.required_on_create - c.fields.keys())
    if missing:
        raise _field_error(
            c.index,
            f"fields.{missing[0]}",
            f"required when creating a {c.table} record (missing: {', '.join(missing)})",
        )
    state = RecordState({**spec.defaults, **c.fields}, dict.fromkeys(c.fields, c.hlc))
    return _Working(c.table, c.id, c.index, None, state, touched=True, complete=True)


def _complete_new_record(work: _Working) -> None:
    """A record created by this batch must carry its table's required fields; the rest get
    defaults with no clock, so any real write beats them."""
    spec = TABLES[work.table]
    missing = sorted(spec.required_on_create - work.state.fields.keys())
    if missing:
        raise _field_error(
            work.first_index,
            f"fields.{missing[0]}",
            f"required when creating a {work.table} record (missing: {', '.join(missing)})",
        )
    fields: dict[str, Any] = dict(spec.defaults)
    fields.update(work.state.fields)
    work.state = RecordState(fields, dict(work.state.clocks))


def _cursor_position(cursor: str | None) -> int:
    """The seq a pull continues after (0 without a cursor); 400 naming ``cursor`` if it is
    not one this server issued."""
    if cursor is None:
        return 0
    try:
        return decode_cursor(cursor)
    except InvalidCursor as exc:
        raise Malformed(
            str(exc), code=Code.INVALID_CURSOR, errors=[FieldError("cursor", str(exc))]
        ) from None

"""SQL of the sync engine: the space lock, record state, pulls, conflicts, batches.

Ordering guarantee (the reason a pull cursor never skips a commit): a push takes its
space row's lock with ``FOR UPDATE`` before it reads or writes anything, and gives the
rows it changes the next numbers of the space's counter. The lock is held until commit,
so within a space, commit order is sequence order. A pull that sees seq N has therefore
seen every seq below N; nothing can later commit underneath its cursor (RxDB#6292).

Table names come only from the fixed ``SYNCED_TABLES`` tuple, never from a request.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from schemas.tables import TABLES
from service.store.db import Connection, Executor
from sync.merge import RecordState

__all__ = [
    "SYNCED_TABLES",
    "ConflictRow",
    "ConflictWrite",
    "PullPage",
    "PushStart",
    "RecordWrite",
    "SpacePosition",
    "advance_seq",
    "begin_push",
    "conflicts_since",
    "deleted_among",
    "finish_push",
    "insert_conflicts",
    "load_records",
    "lock_space",
    "pull_page",
    "purge_expired",
    "purge_tombstones",
    "records_naming",
    "settings_of",
    "space_position",
    "space_seqs",
    "write_records",
]

#: Every synced table, from their one declaration (``schemas/tables.py``).
SYNCED_TABLES = tuple(TABLES)

_decode = msgspec.json.decode


@dataclass(frozen=True, slots=True)
class SpacePosition:
    seq: int
    purged_seq: int


class RecordWrite(msgspec.Struct, frozen=True):  # one per written record
    id: str
    state: RecordState
    seq: int


@dataclass(frozen=True, slots=True)
class ConflictWrite:
    table: str
    record_id: str
    field: str
    value_json: str
    hlc: str
    winner_hlc: str
    reason: str


@dataclass(frozen=True, slots=True)
class ConflictRow(ConflictWrite):
    """A recorded conflict as its owner reads it back: what was written, plus its id (the
    page cursor) and when."""

    id: int
    recorded_at: dt.datetime


async def lock_space(conn: Connection, space_id: str) -> SpacePosition:
    """Take the space's write lock (held to commit) and read its counter."""
    row = await conn.fetchrow(
        "SELECT seq, purged_seq FROM spaces WHERE id = $1 FOR UPDATE", space_id
    )
    if row is None:
        raise LookupError("space does not exist")
    return SpacePosition(row["seq"], row["purged_seq"])


async def space_position(conn: Executor, space_id: str) -> SpacePosition:
    row = await conn.fetchrow("SELECT seq, purged_seq FROM spaces WHERE id = $1", space_id)
    if row is None:
        raise LookupError("space does not exist")
    return SpacePosition(row["seq"], row["purged_seq"])


async def space_seqs(conn: Executor, space_ids: list[str]) -> dict[str, int]:
    """The current seq of each of ``space_ids`` (the event streams' catch-up)."""
    rows = await conn.fetch("SELECT id, seq FROM spaces WHERE id = ANY($1::text[])", space_ids)
    return {r["id"]: r["seq"] for r in rows}


async def advance_seq(conn: Connection, space_id: str, seq: int) -> None:
    await conn.execute("UPDATE spaces SET seq = $2 WHERE id = $1", space_id, seq)


# Whether the session ($3, $4, $5) = (family, user, device) is live and its space is $1,
# the space the request reads or writes — the check of ``accounts.family_is_active`` — or
# NULL when not asked: part of the push's first statement and of a pull page, so neither
# needs a round trip of its own for it.
_SESSION_LIVE = """
    CASE WHEN $3::text IS NULL THEN NULL ELSE EXISTS (
        SELECT 1 FROM token_families f
        JOIN devices d ON d.user_id = f.user_id AND d.id = f.device_id
        WHERE f.id = $3 AND f.user_id = $4 AND f.device_id = $5 AND f.space_id = $1
          AND f.revoked_at IS NULL AND d.revoked_at IS NULL
    ) END AS session_live
"""


@dataclass(frozen=True, slots=True)
class PushStart:
    """What a push learns under the space's lock, in one round trip."""

    position: SpacePosition
    stored: tuple[bytes, bytes | None] | None  # an applied batch's response and hash
    session_live: bool | None  # None: not asked


_BEGIN_PUSH = (
    """
        SELECT s.seq, s.purged_seq, b.response, b.request_hash,"""
    + _SESSION_LIVE
    + """
        FROM spaces s
        LEFT JOIN sync_batches b ON b.space_id = s.id AND b.batch_id = $2
        WHERE s.id = $1
        FOR UPDATE OF s
        """
)


async def begin_push(
    conn: Connection, space_id: str, batch_id: str, session: tuple[str, str, str] | None
) -> PushStart:
    """Take the space's write lock (held to commit) and read, in the same statement, its
    counters, the stored answer of ``batch_id`` if that batch was applied, and whether
    ``session`` = (family, user, device) is live."""
    row = await conn.fetchrow(
        _BEGIN_PUSH,
        space_id,
        batch_id,
        *(session or (None, None, None)),
    )
    if row is None:
        raise LookupError("space does not exist")
    stored = None
    if row["response"] is not None:
        digest = row["request_hash"]
        stored = bytes(row["response"]), bytes(digest) if digest is not None else None
    return PushStart(SpacePosition(row["seq"], row["purged_seq"]), stored, row["session_live"])


async def finish_push(
    conn: Connection,
    space_id: str,
    seq: int | None,
    batch_id: str,
    device_id: str,
    response: bytes,
    request_hash: bytes,
) -> None:
    """Store the batch's answer (a retry gets it back) and, if it wrote anything, advance
    the space's counter to ``seq`` — one statement."""
    await conn.execute(
        """
        WITH advanced AS (
            UPDATE spaces SET seq = $6 WHERE id = $1 AND $6::bigint IS NOT NULL
        )
        INSERT INTO sync_batches (space_id, batch_id, device_id, response, request_hash)
        VALUES ($1, $2, $3, $4, $5)
        """,
        space_id,
        batch_id,
        device_id,
        response,
        request_hash,
        seq,
    )


def _state(row: asyncpg.Record) -> RecordState:
    return RecordState(
        fields=_decode(row["fields"]),
        clocks=_decode(row["clocks"]),
        deleted=row["deleted"],
        deleted_hlc=row["deleted_hlc"],
    )


_LOAD = {
    t: f"""
        SELECT id, fields::text AS fields, clocks::text AS clocks, deleted, deleted_hlc
        FROM {t} WHERE space_id = $1 AND id = ANY($2::text[])
        """
    for t in SYNCED_TABLES
}


async def load_records(
    conn: Connection, space_id: str, table: str, ids: Iterable[str]
) -> dict[str, RecordState]:
    rows = await conn.fetch(_LOAD[table], space_id, list(ids))
    return {r["id"]: _state(r) for r in rows}


#: (child table, its list field naming parents) for every declared cascade.
_CASCADES = tuple((t, s.cascade.field) for t, s in TABLES.items() if s.cascade is not None)
_NAMING = {
    t: f"""
        SELECT id, fields::text AS fields, clocks::text AS clocks, deleted, deleted_hlc
        FROM {t}
        WHERE space_id = $1 AND NOT deleted AND fields->'{field}' ?| $2::text[]
        """
    for t, field in _CASCADES
}


async def records_naming(
    conn: Connection, space_id: str, table: str, parent_ids: Sequence[str]
) -> dict[str, RecordState]:
    """Live records of ``table`` that name any of ``parent_ids`` in their cascade field
    (for the delete cascade: interactions naming deleted contacts)."""
    rows = await conn.fetch(_NAMING[table], space_id, list(parent_ids))
    return {r["id"]: _state(r) for r in rows}


_DELETED_AMONG = {
    t: f"SELECT id FROM {t} WHERE space_id = $1 AND id = ANY($2::text[]) AND deleted"
    for t in SYNCED_TABLES
}


async def deleted_among(
    conn: Connection, space_id: str, table: str, ids: Iterable[str]
) -> set[str]:
    """Which of ``ids`` are tombstones in ``table``."""
    rows = await conn.fetch(_DELETED_AMONG[table], space_id, list(ids))
    return {r["id"] for r in rows}


_encode = msgspec.json.encode

# updated_at: EXCLUDED's is the column default, now() — the same instant as now() in the
# SET list, which Citus refuses inside ON CONFLICT … DO UPDATE on a distributed table.
_WRITE = {
    t: f"""
        INSERT INTO {t} AS r (space_id, id, fields, clocks, deleted, deleted_hlc, hlc, seq)
        SELECT $1, w.id, w.fields::jsonb, w.clocks::jsonb, w.deleted, w.deleted_hlc, w.hlc, w.seq
        FROM unnest($2::text[], $3::text[], $4::text[], $5::bool[], $6::text[], $7::text[],
                    $8::bigint[]) AS w(id, fields, clocks, deleted, deleted_hlc, hlc, seq)
        ON CONFLICT (space_id, id) DO UPDATE
           SET fields = EXCLUDED.fields, clocks = EXCLUDED.clocks, deleted = EXCLUDED.deleted,
               deleted_hlc = EXCLUDED.deleted_hlc, hlc = EXCLUDED.hlc, seq = EXCLUDED.seq,
               updated_at = EXCLUDED.updated_at
        """
    for t in SYNCED_TABLES
}


async def write_records(
    conn: Connection, space_id: str, table: str, writes: Sequence[RecordWrite]
) -> None:
    """Upsert merged states in one set-based statement."""
    if not writes:
        return
    await conn.execute(
        _WRITE[table],
        space_id,
        [w.id for w in writes],
        [_encode(w.state.fields).decode() for w in writes],
        [_encode(w.state.clocks).decode() for w in writes],
        [w.state.deleted for w in writes],
        [w.state.deleted_hlc for w in writes],
        [w.state.hlc for w in writes],
        [w.seq for w in writes],
    )


async def insert_conflicts(
    conn: Connection, space_id: str, conflicts: Sequence[ConflictWrite]
) -> None:
    if not conflicts:
        return
    await conn.execute(
        """
        INSERT INTO conflicts (space_id, tbl, record_id, field, value, hlc, winner_hlc, reason)
        SELECT $1, c.tbl, c.record_id, c.field, c.value::jsonb, c.hlc, c.winner_hlc, c.reason
        FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                    $8::text[]) AS c(tbl, record_id, field, value, hlc, winner_hlc, reason)
        """,
        space_id,
        [c.table for c in conflicts],
        [c.record_id for c in conflicts],
        [c.field for c in conflicts],
        [c.value_json for c in conflicts],
        [c.hlc for c in conflicts],
        [c.winner_hlc for c in conflicts],
        [c.reason for c in conflicts],
    )


# One round trip per page: the space's counters, the page, and — when the caller's session
# is known live only from a process cache — whether it still is. Each branch of the page is
# an index range scan on (space_id, seq) from the effective cursor; the planner merges them
# in seq order (Merge Append) and stops at the limit, so a page costs O(limit), not
# O(space). A cursor older than a purged tombstone, or newer than the space (another
# account's, a restored backup's), is not continued: the page starts over (``reset``).
_PULL_PAGE = (
    """
    WITH pos AS (
        SELECT seq, purged_seq,
               $7 AND ($2 < purged_seq OR $2 > seq) AS reset
        FROM spaces WHERE id = $1
    ), eff AS (
        SELECT seq, purged_seq, reset, CASE WHEN reset THEN 0 ELSE $2 END AS after FROM pos
    )
    SELECT c.tbl, c.id, c.fields, c.deleted, c.hlc, c.seq,
           eff.seq AS space_seq, eff.reset, eff.after,
           """
    + _SESSION_LIVE
    + """
    FROM eff LEFT JOIN LATERAL (
        SELECT * FROM ("""
    + " UNION ALL ".join(
        f"(SELECT '{t}' AS tbl, id, fields::text AS fields, deleted, hlc, seq FROM {t}"
        f" WHERE space_id = $1 AND seq > eff.after ORDER BY seq LIMIT $6)"
        for t in SYNCED_TABLES
    )
    + """) AS u ORDER BY seq LIMIT $6
    ) AS c ON true
    """  # no outer ORDER BY: PostgreSQL would sort again; the caller sorts (already sorted)
)


_seq_of = operator.itemgetter(5)


@dataclass(frozen=True, slots=True)
class PullPage:
    seq: int  # the space's seq
    after: int  # where the page starts: the cursor's seq, or 0 after a reset
    reset: bool
    session_live: bool | None  # None: not asked
    # (table, id, fields JSON text, deleted, hlc, seq, ...): asyncpg records, not a dataclass
    # per row — a pull page is the hottest path in Kith and the caller turns each row
    # straight into its wire type.
    rows: list[asyncpg.Record]


async def pull_page(
    conn: Executor,
    space_id: str,
    after_seq: int,
    limit: int,
    *,
    from_cursor: bool,
    session: tuple[str, str, str] | None = None,
) -> PullPage:
    """Up to ``limit + 1`` changes after ``after_seq`` (the extra one says there is more),
    with the space's counters; ``session`` = (family, user, device) is checked live too."""
    family, user, device = session if session is not None else (None, None, None)
    records = await conn.fetch(
        _PULL_PAGE, space_id, after_seq, family, user, device, limit + 1, from_cursor
    )
    if not records:
        raise LookupError("space does not exist")
    head = records[0]
    # No change: one row of counters. Otherwise the rows arrive in seq order (the nested
    # loop keeps the Merge Append's order); sorting an ordered list is one pass, and keeps
    # the page right whatever plan is chosen.
    rows = sorted(records, key=_seq_of) if head["tbl"] is not None else []
    return PullPage(head["space_seq"], head["after"], head["reset"], head["session_live"], rows)


async def conflicts_since(
    conn: Executor,
    space_id: str,
    *,
    since: dt.datetime,
    after_id: int,
    limit: int,
    table: str | None,
    record_id: str | None,
) -> list[ConflictRow]:
    rows = await conn.fetch(
        """
        SELECT id, tbl, record_id, field, value::text AS value, hlc, winner_hlc, reason, recorded_at
        FROM conflicts
        WHERE space_id = $1 AND recorded_at >= $2 AND id > $3
          AND ($5::text IS NULL OR tbl = $5) AND ($6::text IS NULL OR record_id = $6)
        ORDER BY id
        LIMIT $4
        """,
        space_id,
        since,
        after_id,
        limit,
        table,
        record_id,
    )
    return [
        ConflictRow(
            table=r["tbl"],
            record_id=r["record_id"],
            field=r["field"],
            value_json=r["value"],
            hlc=r["hlc"],
            winner_hlc=r["winner_hlc"],
            reason=r["reason"],
            id=r["id"],
            recorded_at=r["recorded_at"],
        )
        for r in rows
    ]


async def purge_tombstones(conn: Connection, older_than: dt.datetime) -> int:
    """Delete tombstones past the horizon and raise each space's ``purged_seq``, so a
    device whose cursor predates a purged tombstone is told to reset instead of silently
    keeping a row that was deleted elsewhere."""
    total = 0
    async with conn.transaction():
        for t in SYNCED_TABLES:
            rows = await conn.fetch(
                f"""
                WITH gone AS (
                    DELETE FROM {t} WHERE deleted AND updated_at < $1
                    RETURNING space_id, seq
                )
                SELECT space_id, max(seq) AS seq, count(*) AS n FROM gone GROUP BY space_id
                """,
                older_than,
            )
            for r in rows:
                total += r["n"]
                await conn.execute(
                    "UPDATE spaces SET purged_seq = greatest(purged_seq, $2) WHERE id = $1",
                    r["space_id"],
                    r["seq"],
                )
    return total


async def purge_expired(
    conn: Connection, *, conflicts_before: dt.datetime, batches_before: dt.datetime
) -> tuple[int, int]:
    """Drop conflict history and idempotency records past their retention."""
    conflicts = await conn.fetchval(
        """
        WITH d AS (DELETE FROM conflicts WHERE recorded_at < $1 RETURNING 1)
        SELECT count(*) FROM d
        """,
        conflicts_before,
    )
    batches = await conn.fetchval(
        """
        WITH d AS (DELETE FROM sync_batches WHERE created_at < $1 RETURNING 1)
        SELECT count(*) FROM d
        """,
        batches_before,
    )
    return int(conflicts), int(batches)


async def settings_of(conn: Executor, space_id: str) -> dict[str, Any] | None:
    """The person's synced settings record (time zone, quiet hours, nudge budget, check-in
    deadline), or None before their first sync of it."""
    text = await conn.fetchval(
        "SELECT fields::text FROM settings WHERE space_id = $1 AND id = 'settings' AND NOT deleted",
        space_id,
    )
    return _decode(text) if text else None

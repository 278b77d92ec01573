"""SQL of ``kith seal-existing`` (decision 0021): private text stored in the clear before
migration 0011 found, space by space, and replaced by its sealed form.

A value is *in the clear* when it is a non-empty JSON string that is not a well-formed
sealed value (the caller passes the pattern of one): a stored text that merely starts like
a sealed value counts as text. Every statement names its space but the listing of spaces,
which walks them all on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.tables import TABLES
from service.store.db import Connection, Executor

__all__ = [
    "PRIVATE_TABLES",
    "ClearConflict",
    "ClearRecord",
    "being_erased",
    "clear_conflicts",
    "clear_records",
    "seal_conflicts",
    "seal_records",
    "spaces_after",
]

#: The synced tables with private fields, from their one declaration.
PRIVATE_TABLES: tuple[str, ...] = tuple(t for t, s in TABLES.items() if s.private)


@dataclass(frozen=True, slots=True)
class ClearRecord:
    id: str
    fields: str  # the record's fields, as JSON text


@dataclass(frozen=True, slots=True)
class ClearConflict:
    id: int
    table: str
    record_id: str
    field: str
    value: str  # the kept value, as JSON text


async def spaces_after(conn: Executor, after: str, limit: int) -> list[str]:
    """Up to ``limit`` spaces after ``after``, in id order, skipping those whose account is
    being erased (their rows are about to go, their key may already be gone)."""
    rows = await conn.fetch(
        """
        SELECT s.id FROM spaces s JOIN users u ON u.id = s.owner_id
        WHERE s.id > $1 AND u.erasing_at IS NULL
        ORDER BY s.id LIMIT $2
        """,
        after,
        limit,
    )
    return [r["id"] for r in rows]


async def being_erased(conn: Executor, space_id: str) -> bool:
    """Whether the space is gone or its account is being erased (asked again under the
    space's lock, since the listing may be minutes old)."""
    erasing = await conn.fetchval(
        """
        SELECT u.erasing_at IS NOT NULL FROM spaces s JOIN users u ON u.id = s.owner_id
        WHERE s.id = $1
        """,
        space_id,
    )
    return erasing is None or bool(erasing)


# A record with a private field ($3: its names) holding text in the clear ($4: the pattern
# of a sealed value). Live records only: a tombstone keeps no fields. Keyset pages by id.
_CLEAR = {
    t: f"""
        SELECT r.id, r.fields::text AS fields FROM {t} AS r
        WHERE r.space_id = $1 AND r.id > $2 AND NOT r.deleted AND EXISTS (
            SELECT 1 FROM jsonb_each(r.fields) AS f(name, value)
            WHERE f.name = ANY($3::text[]) AND jsonb_typeof(f.value) = 'string'
              AND f.value #>> '{{}}' <> '' AND f.value #>> '{{}}' !~ $4
        )
        ORDER BY r.id LIMIT $5
    """
    for t in PRIVATE_TABLES
}

# Each record's private values replaced by their sealed forms ($4, an object per record)
# only where they are still the text that was read ($3): a write that changed one in
# between keeps its value (the record is left for a later run). Neither seq nor updated_at
# moves: the record's content — what a pull returns, what the merge compares once sealed —
# is unchanged.
_SEAL = {
    t: f"""
        UPDATE {t} AS r SET fields = r.fields || u.sealed
        FROM unnest($2::text[], $3::jsonb[], $4::jsonb[]) AS u(id, clear, sealed)
        WHERE r.space_id = $1 AND r.id = u.id AND r.fields @> u.clear
        RETURNING r.id
    """
    for t in PRIVATE_TABLES
}


async def clear_records(
    conn: Executor,
    table: str,
    space_id: str,
    names: list[str],
    sealed_pattern: str,
    after: str,
    limit: int,
) -> list[ClearRecord]:
    rows = await conn.fetch(_CLEAR[table], space_id, after, names, sealed_pattern, limit)
    return [ClearRecord(r["id"], r["fields"]) for r in rows]


async def seal_records(
    conn: Connection,
    table: str,
    space_id: str,
    writes: list[tuple[str, str, str]],
) -> set[str]:
    """``writes``: (record id, its clear values as a JSON object, their sealed forms as
    one). The records that changed."""
    rows = await conn.fetch(
        _SEAL[table],
        space_id,
        [w[0] for w in writes],
        [w[1] for w in writes],
        [w[2] for w in writes],
    )
    return {r["id"] for r in rows}


async def clear_conflicts(
    conn: Executor,
    space_id: str,
    places: list[str],
    sealed_pattern: str,
    after: int,
    limit: int,
) -> list[ClearConflict]:
    """Kept values of a private field (``places``: ``table.field``) still in the clear."""
    rows = await conn.fetch(
        """
        SELECT id, tbl, record_id, field, value::text AS value FROM conflicts
        WHERE space_id = $1 AND id > $2 AND tbl || '.' || field = ANY($3::text[])
          AND jsonb_typeof(value) = 'string'
          AND value #>> '{}' <> '' AND value #>> '{}' !~ $4
        ORDER BY id LIMIT $5
        """,
        space_id,
        after,
        places,
        sealed_pattern,
        limit,
    )
    return [ClearConflict(r["id"], r["tbl"], r["record_id"], r["field"], r["value"]) for r in rows]


async def seal_conflicts(
    conn: Connection, space_id: str, writes: list[tuple[int, str, str]]
) -> int:
    """``writes``: (conflict id, its clear value as JSON, its sealed form as JSON), each
    replaced only if still as read. How many changed."""
    status = await conn.execute(
        """
        UPDATE conflicts AS c SET value = u.sealed
        FROM unnest($2::bigint[], $3::jsonb[], $4::jsonb[]) AS u(id, clear, sealed)
        WHERE c.space_id = $1 AND c.id = u.id AND c.value = u.clear
        """,
        space_id,
        [w[0] for w in writes],
        [w[1] for w in writes],
        [w[2] for w in writes],
    )
    return int(status.split()[-1])

"""SQL of the WatermelonDB adapter (``service/sync/watermelon.py``): one table's changes in a
seq window, page by page, and which records of a push the space already holds.

A WatermelonDB pull answers with one object per table, so the adapter reads table by table
rather than in Kith's cross-table seq order. It does so inside one REPEATABLE READ, READ
ONLY transaction (taken by the caller): :func:`space_position` and every page then see the
same snapshot, so the window ``(after, upto]`` holds exactly the commits up to ``upto`` —
a consistent view, as WatermelonDB's backend contract asks — and nothing committed during
the pull is lost: it has a seq above ``upto`` and is in the next pull.

Table names come only from ``SYNCED_TABLES``, never from a request.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from service.store.db import Connection
from service.store.sync import SYNCED_TABLES, space_position

__all__ = ["existing_records", "live_page", "space_position", "tombstone_page"]

# Keyset pages on the (space_id, seq) index of each table: a page costs O(limit) whatever
# the table's size, and the caller never holds more than one page.
_LIVE = {
    t: f"""
        SELECT id, fields::text AS fields, hlc, seq FROM {t}
        WHERE space_id = $1 AND seq > $2 AND seq <= $3 AND NOT deleted
        ORDER BY seq LIMIT $4
        """
    for t in SYNCED_TABLES
}
_TOMBSTONES = {
    t: f"""
        SELECT id, seq FROM {t}
        WHERE space_id = $1 AND seq > $2 AND seq <= $3 AND deleted
        ORDER BY seq LIMIT $4
        """
    for t in SYNCED_TABLES
}
_EXISTING = {
    t: f"SELECT id, deleted FROM {t} WHERE space_id = $1 AND id = ANY($2::text[])"
    for t in SYNCED_TABLES
}


async def live_page(
    conn: Connection, space_id: str, table: str, after: int, upto: int, limit: int
) -> list[asyncpg.Record]:
    """Up to ``limit`` live records of ``table`` with ``after < seq <= upto``, in seq
    order: (id, fields JSON text, hlc, seq)."""
    return await conn.fetch(_LIVE[table], space_id, after, upto, limit)


async def tombstone_page(
    conn: Connection, space_id: str, table: str, after: int, upto: int, limit: int
) -> list[asyncpg.Record]:
    """Up to ``limit`` deleted records' (id, seq) of ``table`` in the same window."""
    return await conn.fetch(_TOMBSTONES[table], space_id, after, upto, limit)


async def existing_records(
    conn: Connection, space_id: str, table: str, ids: Iterable[str]
) -> dict[str, bool]:
    """Which of ``ids`` the space holds in ``table``: id → deleted."""
    rows = await conn.fetch(_EXISTING[table], space_id, list(ids))
    return {r["id"]: r["deleted"] for r in rows}

"""SQL the rules engine needs: people's histories in bulk, nudge requests, sweep scheduling.

Histories are read outside the write transaction (they are the rules' input, not state the
evaluation modifies); the insights themselves are re-read under the space lock before they
are merged and written (``service/insights/service.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from schemas.nudges import NudgeRequest
from schemas.tables import TABLES
from service.store.db import Connection, Executor, columns

__all__ = [
    "NudgeRequest",
    "RawHistory",
    "due_for_morning_sweep",
    "insert_nudge_requests",
    "load_histories",
]


@dataclass(slots=True)
class RawHistory:
    """One person's live rows as stored JSON text, keyed by record id."""

    contacts: dict[str, str] = field(default_factory=dict)
    interactions: dict[str, str] = field(default_factory=dict)
    reflections: dict[str, str] = field(default_factory=dict)
    insights: dict[str, str] = field(default_factory=dict)
    settings: str | None = None


async def load_histories(conn: Executor, space_ids: Sequence[str]) -> dict[str, RawHistory]:
    """Five set-based reads for a whole chunk of people (the sweep reads hundreds at once)."""
    out = {s: RawHistory() for s in space_ids}
    ids = list(space_ids)
    for table, target in (
        ("contacts", "contacts"),
        ("interactions", "interactions"),
        ("insights", "insights"),
    ):
        # Without the private text (notes; decision 0021): the rules never read it, and
        # what they are handed cannot leak it.
        rows = await conn.fetch(
            f"SELECT space_id, id, (fields - $2::text[])::text AS f FROM {table} "
            "WHERE space_id = ANY($1::text[]) AND NOT deleted",
            ids,
            sorted(TABLES[table].private),
        )
        for r in rows:
            getattr(out[r["space_id"]], target)[r["id"]] = r["f"]
    # Only reflections carrying an instrument matter to the rules; their text never leaves
    # the database here.
    rows = await conn.fetch(
        """
        SELECT space_id, id,
               jsonb_build_object('occurred_at', fields->'occurred_at', 'ucla3', fields->'ucla3',
                                  'lsns6', fields->'lsns6', 'who5', fields->'who5')::text AS f
        FROM reflections
        WHERE space_id = ANY($1::text[]) AND NOT deleted
          AND (jsonb_typeof(fields->'ucla3') = 'array' OR jsonb_typeof(fields->'lsns6') = 'array'
               OR jsonb_typeof(fields->'who5') = 'array')
        """,
        ids,
    )
    for r in rows:
        out[r["space_id"]].reflections[r["id"]] = r["f"]
    rows = await conn.fetch(
        "SELECT space_id, fields::text AS f FROM settings "
        "WHERE space_id = ANY($1::text[]) AND id = 'settings' AND NOT deleted",
        ids,
    )
    for r in rows:
        out[r["space_id"]].settings = r["f"]
    return out


async def insert_nudge_requests(
    conn: Connection, space_id: str, requests: Sequence[NudgeRequest]
) -> None:
    if not requests:
        return
    await conn.execute(
        """
        INSERT INTO nudge_requests (space_id, id, insight_id, contact_id, rule, level, title, body)
        SELECT $1, n.id, n.insight_id, n.contact_id, n.rule, n.level, n.title, n.body
        FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                    $8::text[]) AS n(id, insight_id, contact_id, rule, level, title, body)
        ON CONFLICT (space_id, id) DO NOTHING
        """,
        space_id,
        *columns(requests, "id", "insight_id", "contact_id", "rule", "level", "title", "body"),
    )


async def due_for_morning_sweep(conn: Executor, now: dt.datetime, morning_hour: int) -> list[str]:
    """Claim the spaces whose local time has reached ``morning_hour`` today and that were
    not swept yet on their local date; marks them swept (the caller queues their jobs in
    the same transaction, so a crash loses neither)."""
    rows = await conn.fetch(
        """
        WITH local AS (
            SELECT sp.id,
                   ($1::timestamptz AT TIME ZONE coalesce(st.fields->>'time_zone', 'UTC')) AS t
            FROM spaces sp
            LEFT JOIN settings st ON st.space_id = sp.id AND st.id = 'settings'
        )
        UPDATE spaces sp SET swept_on = local.t::date
          FROM local
         WHERE sp.id = local.id
           AND extract(hour FROM local.t) >= $2
           AND (sp.swept_on IS NULL OR sp.swept_on < local.t::date)
        RETURNING sp.id
        """,
        now,
        morning_hour,
    )
    return [r["id"] for r in rows]

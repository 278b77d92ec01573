"""SQL of nudges: the life of a nudge request (planned, sent, merged, skipped, cancelled),
what the planner reads, the person's feedback and each rule's effectiveness. Every query
names the space it is for.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from service.store.db import Connection, Executor
from service.store.insights import NudgeRequest

__all__ = [
    "Pending",
    "PlanInputs",
    "RuleEffect",
    "TieRow",
    "effectiveness",
    "list_nudges",
    "load_plan_inputs",
    "lock_plan",
    "mark_decided",
    "mark_sent",
    "record_feedback",
    "replan_if_pending",
]

_decode = msgspec.json.decode


class Pending(NudgeRequest, frozen=True):
    """A nudge request still waiting to be planned: the request as the evaluator wrote it
    (``schemas.nudges.NudgeRequest``), and when."""

    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class TieRow:
    id: str
    name: str
    live: bool
    snoozed_until: dt.date | None
    last_met_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class PlanInputs:
    pending: list[Pending]
    settings: dict[str, Any] | None
    sent: list[dt.datetime]
    open_insights: set[str]
    ties: dict[str, TieRow]


async def lock_plan(conn: Connection, space_id: str) -> None:
    """One planner per person at a time (held to the end of the transaction), so two
    workers can never both spend the same day's budget."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('kith:nudge-plan:' || $1))", space_id)


async def load_plan_inputs(conn: Connection, space_id: str, now: dt.datetime) -> PlanInputs:
    rows = await conn.fetch(
        """
        SELECT id, insight_id, contact_id, rule, level, title, body, created_at
        FROM nudge_requests WHERE space_id = $1 AND state = 'pending'
        """,
        space_id,
    )
    pending = [Pending(*r.values()) for r in rows]
    settings_text = await conn.fetchval(
        "SELECT fields::text FROM settings WHERE space_id = $1 AND id = 'settings' AND NOT deleted",
        space_id,
    )
    sent = [
        r["sent_at"]
        for r in await conn.fetch(
            """
            SELECT sent_at FROM nudge_requests
            WHERE space_id = $1 AND state = 'sent' AND sent_at > $2
            """,
            space_id,
            now - dt.timedelta(days=8),
        )
    ]
    insight_ids = list({p.insight_id for p in pending})
    open_insights = {
        r["id"]
        for r in await conn.fetch(
            """
            SELECT id FROM insights
            WHERE space_id = $1 AND id = ANY($2::text[]) AND NOT deleted
              AND coalesce(fields->>'status', 'open') IN ('open', 'seen')
            """,
            space_id,
            insight_ids,
        )
    }
    contact_ids = list({p.contact_id for p in pending if p.contact_id})
    ties = await load_ties(conn, space_id, contact_ids, now)
    return PlanInputs(
        pending, _decode(settings_text) if settings_text else None, sent, open_insights, ties
    )


async def load_ties(
    conn: Executor, space_id: str, contact_ids: Sequence[str], now: dt.datetime
) -> dict[str, TieRow]:
    if not contact_ids:
        return {}
    met = {
        r["contact_id"]: r["at"]
        for r in await conn.fetch(
            """
            SELECT c.id AS contact_id, max((i.fields->>'occurred_at')::timestamptz) AS at
            FROM interactions i
            CROSS JOIN LATERAL jsonb_array_elements_text(i.fields->'contact_ids') AS c(id)
            WHERE i.space_id = $1 AND NOT i.deleted AND i.fields->>'kind' = 'in_person'
              AND c.id = ANY($2::text[]) AND (i.fields->>'occurred_at')::timestamptz <= $3
              -- a time stored before the edge checked the range (year 0 in UTC) would
              -- not decode: left out, as every reader of event times does
              AND (i.fields->>'occurred_at')::timestamptz >= '1900-01-01T00:00:00Z'
            GROUP BY c.id
            """,
            space_id,
            list(contact_ids),
            now,
        )
    }
    out: dict[str, TieRow] = {}
    for r in await conn.fetch(
        """
        SELECT id, fields->>'display_name' AS name, deleted,
               coalesce((fields->>'archived')::boolean, false) AS archived,
               (fields->>'snoozed_until')::date AS snoozed_until
        FROM contacts WHERE space_id = $1 AND id = ANY($2::text[])
        """,
        space_id,
        list(contact_ids),
    ):
        out[r["id"]] = TieRow(
            r["id"],
            r["name"] or "",
            not r["deleted"] and not r["archived"],
            r["snoozed_until"],
            met.get(r["id"]),
        )
    return out


async def mark_decided(
    conn: Connection,
    space_id: str,
    outcomes: Sequence[tuple[str, str, str, str | None]],
    at: dt.datetime,
) -> None:
    """(nudge id, new state, reason, merged_into) for requests that leave ``pending``."""
    if not outcomes:
        return
    await conn.execute(
        """
        UPDATE nudge_requests n
           SET state = o.state, reason = o.reason, merged_into = o.merged_into, decided_at = $6
          FROM unnest($2::text[], $3::text[], $4::text[], $5::text[])
               AS o(id, state, reason, merged_into)
         WHERE n.space_id = $1 AND n.id = o.id AND n.state = 'pending'
        """,
        space_id,
        [o[0] for o in outcomes],
        [o[1] for o in outcomes],
        [o[2] for o in outcomes],
        [o[3] for o in outcomes],
        at,
    )


async def mark_sent(
    conn: Connection, space_id: str, nudge_id: str, title: str, body: str, at: dt.datetime
) -> bool:
    return bool(
        await conn.fetchval(
            """
            UPDATE nudge_requests
               SET state = 'sent', sent_at = $3, decided_at = $3, push_title = $4, push_body = $5
             WHERE space_id = $1 AND id = $2 AND state = 'pending'
            RETURNING true
            """,
            space_id,
            nudge_id,
            at,
            title,
            body,
        )
    )


async def replan_if_pending(conn: Executor, space_id: str) -> None:
    """Queue the person's nudge planner now if they have requests waiting."""
    await conn.execute(
        """
        INSERT INTO jobs (kind, space_id, dedupe_key)
        SELECT 'nudge_plan', $1, $1
        WHERE EXISTS (SELECT 1 FROM nudge_requests WHERE space_id = $1 AND state = 'pending')
        ON CONFLICT (kind, dedupe_key) WHERE state = 'queued' AND dedupe_key IS NOT NULL
        DO UPDATE SET run_at = least(jobs.run_at, now()), updated_at = now()
        """,
        space_id,
    )


async def record_feedback(
    conn: Connection, space_id: str, nudge_id: str, action: str, at: dt.datetime
) -> tuple[str | None, str] | None:
    """Store the phone's button press on a nudge the person received. Returns (contact id,
    insight id), or None if the caller has no such sent nudge. The latest press wins."""
    row = await conn.fetchrow(
        """
        UPDATE nudge_requests SET feedback = $3, feedback_at = $4
         WHERE space_id = $1 AND id = $2 AND state IN ('sent', 'merged')
        RETURNING contact_id, insight_id
        """,
        space_id,
        nudge_id,
        action,
        at,
    )
    return None if row is None else (row["contact_id"], row["insight_id"])


async def list_nudges(conn: Executor, space_id: str, limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        SELECT id, insight_id, contact_id, rule, level, state, reason, merged_into,
               created_at, sent_at, coalesce(push_title, title) AS title,
               coalesce(push_body, body) AS body, feedback, feedback_at
        FROM nudge_requests WHERE space_id = $1
        ORDER BY created_at DESC, id LIMIT $2
        """,
        space_id,
        limit,
    )
    return [dict(r) for r in rows]


@dataclass(frozen=True, slots=True)
class RuleEffect:
    rule: str
    sent: int
    settled: int  # sent at least 14 days ago: the outcome is known
    effective: int  # of the settled, followed by an in-person meeting within 14 days

    @property
    def rate(self) -> float | None:
        return self.effective / self.settled if self.settled else None


async def effectiveness(
    conn: Executor, now: dt.datetime, since: dt.datetime, window_days: int = 14
) -> list[RuleEffect]:
    """Per rule: of the nudges about a contact sent since ``since`` whose 14 days have
    passed, how many were followed by an in-person interaction with that contact."""
    rows = await conn.fetch(
        """
        SELECT n.rule, count(*) AS sent,
               count(*) FILTER (
                   WHERE n.sent_at <= $1::timestamptz - make_interval(days => $3)
               ) AS settled,
               count(*) FILTER (
                   WHERE n.sent_at <= $1::timestamptz - make_interval(days => $3) AND EXISTS (
                       SELECT 1 FROM interactions i
                       WHERE i.space_id = n.space_id AND NOT i.deleted
                         AND i.fields->>'kind' = 'in_person'
                         AND i.fields->'contact_ids' ? n.contact_id
                         AND (i.fields->>'occurred_at')::timestamptz > n.sent_at
                         AND (i.fields->>'occurred_at')::timestamptz
                             <= n.sent_at + make_interval(days => $3))
               ) AS effective
        FROM nudge_requests n
        WHERE n.state = 'sent' AND n.contact_id IS NOT NULL AND n.sent_at >= $2
        GROUP BY n.rule ORDER BY n.rule
        """,
        now,
        since,
        window_days,
    )
    return [RuleEffect(r["rule"], r["sent"], r["settled"], r["effective"]) for r in rows]

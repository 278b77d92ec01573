"""SQL of caregiver sharing: invitations, links, the audit trail, alerts, summary inputs.

Every query names the older adult's space or the caregiver's user id it is for.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from schemas.tables import EVENT_TIME_MIN
from service.store.care_alerts import AlertState, alert_states
from service.store.db import Connection, Executor

#: An alert as the summary reads it (with its acknowledgements and resolution).
Alert = AlertState

__all__ = [
    "Alert",
    "AuditRow",
    "Link",
    "SummaryInputs",
    "active_links",
    "add_audit",
    "alert_recipients",
    "check_ins_on",
    "clear_help_alerts",
    "clear_missed_alert",
    "create_invitation",
    "create_link",
    "enqueue_followups",
    "link_for_caregiver",
    "link_for_owner",
    "links_of_caregiver",
    "links_of_person",
    "list_audit",
    "purge_invitations",
    "raise_alert",
    "summary_inputs",
    "take_invitation",
    "update_link",
]


@dataclass(frozen=True, slots=True)
class CheckIn:
    at: dt.datetime
    status: str  # ok | not_great | need_help
    mood: int | None


@dataclass(frozen=True, slots=True)
class Touch:
    at: dt.datetime
    in_person: bool


@dataclass(frozen=True, slots=True)
class Link:
    space_id: str
    id: str
    user_id: str
    caregiver_user_id: str
    caregiver_space_id: str
    label: str
    scopes: list[str]
    state: str
    generation: int
    created_at: dt.datetime
    updated_at: dt.datetime
    person_name: str
    caregiver_name: str

    @property
    def summary_id(self) -> str:
        """The care_summaries row in the caregiver's space. Deletes are final, so a link
        resumed after a pause gets a new row (its generation), not its tombstone back."""
        return f"care-{self.id}-{self.generation}"


_LINK_COLUMNS = """
    l.space_id, l.id, l.user_id, l.caregiver_user_id, l.caregiver_space_id, l.label, l.scopes,
    l.state, l.generation, l.created_at, l.updated_at,
    p.display_name AS person_name, c.display_name AS caregiver_name
"""
_LINK_FROM = """
    FROM care_links l
    JOIN users p ON p.id = l.user_id
    JOIN users c ON c.id = l.caregiver_user_id
"""


def _link(r: Any) -> Link:
    return Link(
        r["space_id"],
        r["id"],
        r["user_id"],
        r["caregiver_user_id"],
        r["caregiver_space_id"],
        r["label"],
        list(r["scopes"]),
        r["state"],
        r["generation"],
        r["created_at"],
        r["updated_at"],
        r["person_name"],
        r["caregiver_name"],
    )


# -- invitations ---------------------------------------------------------------------------


async def create_invitation(
    conn: Executor,
    space_id: str,
    user_id: str,
    code_hash: bytes,
    expires_at: dt.datetime,
    scopes: Sequence[str],
) -> None:
    await conn.execute(
        """
        INSERT INTO care_invitations (code_hash, space_id, user_id, expires_at, scopes)
        VALUES ($1, $2, $3, $4, $5)
        """,
        code_hash,
        space_id,
        user_id,
        expires_at,
        list(scopes),
    )


async def take_invitation(
    conn: Connection, code_hash: bytes, now: dt.datetime
) -> tuple[str, str, list[str]] | None:
    """Use an invitation once: (space id, user id, scopes) of who invited, or None if the
    code is unknown, used or expired (one answer for all three: codes are not enumerable)."""
    row = await conn.fetchrow(
        """
        UPDATE care_invitations SET used_at = $2
         WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2
        RETURNING space_id, user_id, scopes
        """,
        code_hash,
        now,
    )
    return None if row is None else (row["space_id"], row["user_id"], list(row["scopes"]))


async def purge_invitations(conn: Executor, before: dt.datetime) -> int:
    """Invitations used or expired before ``before`` (maintenance; only their hashes)."""
    result = await conn.execute(
        "DELETE FROM care_invitations WHERE expires_at < $1 OR used_at < $1", before
    )
    return int(result.split()[-1])


# -- links ---------------------------------------------------------------------------------


async def create_link(
    conn: Connection,
    *,
    space_id: str,
    link_id: str,
    user_id: str,
    caregiver_user_id: str,
    caregiver_space_id: str,
    label: str,
    scopes: Sequence[str],
) -> bool:
    """False if this caregiver already has a live link to this person."""
    value = await conn.fetchval(
        """
        INSERT INTO care_links (space_id, id, user_id, caregiver_user_id, caregiver_space_id,
                                label, scopes)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (space_id, caregiver_user_id) WHERE state <> 'revoked' DO NOTHING
        RETURNING true
        """,
        space_id,
        link_id,
        user_id,
        caregiver_user_id,
        caregiver_space_id,
        label,
        list(scopes),
    )
    return bool(value)


async def links_of_person(conn: Executor, space_id: str) -> list[Link]:
    rows = await conn.fetch(
        f"SELECT {_LINK_COLUMNS} {_LINK_FROM} WHERE l.space_id = $1 AND l.state <> 'revoked' "
        "ORDER BY l.created_at",
        space_id,
    )
    return [_link(r) for r in rows]


async def links_of_caregiver(conn: Executor, caregiver_user_id: str) -> list[Link]:
    rows = await conn.fetch(
        f"SELECT {_LINK_COLUMNS} {_LINK_FROM} "
        "WHERE l.caregiver_user_id = $1 AND l.state <> 'revoked' ORDER BY l.created_at",
        caregiver_user_id,
    )
    return [_link(r) for r in rows]


async def link_for_owner(
    conn: Connection, space_id: str, link_id: str, *, lock: bool = False
) -> Link | None:
    row = await conn.fetchrow(
        f"SELECT {_LINK_COLUMNS} {_LINK_FROM} "
        "WHERE l.space_id = $1 AND l.id = $2 AND l.state <> 'revoked'"
        + (" FOR UPDATE OF l" if lock else ""),
        space_id,
        link_id,
    )
    return None if row is None else _link(row)


async def link_for_caregiver(conn: Executor, caregiver_user_id: str, link_id: str) -> Link | None:
    row = await conn.fetchrow(
        f"SELECT {_LINK_COLUMNS} {_LINK_FROM} "
        "WHERE l.caregiver_user_id = $1 AND l.id = $2 AND l.state <> 'revoked'",
        caregiver_user_id,
        link_id,
    )
    return None if row is None else _link(row)


async def active_links(conn: Executor, space_id: str) -> list[Link]:
    rows = await conn.fetch(
        f"SELECT {_LINK_COLUMNS} {_LINK_FROM} WHERE l.space_id = $1 AND l.state = 'active'",
        space_id,
    )
    return [_link(r) for r in rows]


async def update_link(
    conn: Connection,
    space_id: str,
    link_id: str,
    *,
    scopes: Sequence[str] | None = None,
    state: str | None = None,
    new_generation: bool = False,
) -> None:
    await conn.execute(
        """
        UPDATE care_links
           SET scopes = coalesce($3::text[], scopes), state = coalesce($4, state),
               generation = generation + CASE WHEN $5 THEN 1 ELSE 0 END, updated_at = now()
         WHERE space_id = $1 AND id = $2
        """,
        space_id,
        link_id,
        list(scopes) if scopes is not None else None,
        state,
        new_generation,
    )


async def enqueue_followups(conn: Executor, kind: str, space_ids: Sequence[str]) -> None:
    """Queue ``kind`` for those of ``space_ids`` with a check-in deadline or an active
    caregiver link (after an evaluation: settings may have changed; daily: summaries)."""
    # A UNION of two reads by space id rather than EXISTS subqueries correlated with an
    # unnest(): the same rows, and on Citus one query per shard group whose result is
    # inserted into the coordinator's queue (Citus refuses the correlated form's join).
    await conn.execute(
        """
        INSERT INTO jobs (kind, space_id, dedupe_key)
        SELECT $1, f.space_id, f.space_id FROM (
            SELECT space_id FROM care_links
            WHERE space_id = ANY($2::text[]) AND state = 'active'
            UNION
            SELECT space_id FROM settings
            WHERE space_id = ANY($2::text[]) AND id = 'settings' AND NOT deleted
              AND jsonb_typeof(fields->'check_in_deadline') = 'string'
        ) AS f
        ON CONFLICT (kind, dedupe_key) WHERE state = 'queued' AND dedupe_key IS NOT NULL
        DO NOTHING
        """,
        kind,
        list(space_ids),
    )


# -- audit ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditRow:
    link_id: str | None  # None: the person acted themselves
    caregiver_name: str
    channel: str
    viewed_at: dt.datetime
    action: str = "viewed"  # viewed | acknowledged | resolved
    alert_id: str | None = None


async def add_audit(conn: Executor, link: Link, channel: str) -> None:
    await conn.execute(
        """
        INSERT INTO care_audit (space_id, link_id, caregiver_user_id, channel)
        VALUES ($1, $2, $3, $4)
        """,
        link.space_id,
        link.id,
        link.caregiver_user_id,
        channel,
    )


async def list_audit(conn: Executor, space_id: str, limit: int) -> list[AuditRow]:
    rows = await conn.fetch(
        """
        SELECT a.link_id, u.display_name, a.channel, a.viewed_at, a.action, a.alert_id
        FROM care_audit a JOIN users u ON u.id = a.caregiver_user_id
        WHERE a.space_id = $1 ORDER BY a.viewed_at DESC, a.id DESC LIMIT $2
        """,
        space_id,
        limit,
    )
    return [
        AuditRow(
            r["link_id"],
            r["display_name"],
            r["channel"],
            r["viewed_at"],
            r["action"],
            r["alert_id"],
        )
        for r in rows
    ]


# -- summary inputs and alerts -------------------------------------------------------------


#: Stored instants every reader can convert to any time zone and do day arithmetic on.
#: The edge refuses event times before 1900 (``schemas/tables.py``), but rows stored before
#: it did may hold anything RFC 3339 allows — ``0001-01-01T00:00:00+14:00`` is before year
#: 1 in UTC, which neither Python nor asyncpg can hold.
_READABLE = (EVENT_TIME_MIN, dt.datetime(9000, 1, 1, tzinfo=dt.UTC))


def _event_time(text: str | None) -> dt.datetime | None:
    """A stored event time as an aware UTC datetime, or None if it is not readable."""
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    # Compared as aware instants first: converting year-1 +14:00 to UTC would overflow.
    if value.tzinfo is None or not _READABLE[0] <= value < _READABLE[1]:
        return None
    return value.astimezone(dt.UTC)


@dataclass(frozen=True, slots=True)
class SummaryInputs:
    settings: dict[str, Any] | None
    check_ins: list[CheckIn]
    touches: list[Touch]
    alerts: list[Alert]
    isolation_risk: bool
    #: Rows left out because their stored event time cannot be read (``_event_time``).
    unreadable: int = 0


def _readable(
    rows: list[asyncpg.Record], skipped: list[asyncpg.Record]
) -> Iterator[tuple[dt.datetime, asyncpg.Record]]:
    """Each row with its ``at`` read as an instant; a row whose time no reader can hold is
    added to ``skipped`` instead."""
    for r in rows:
        at = _event_time(r["at"])
        if at is None:
            skipped.append(r)
        else:
            yield at, r


async def summary_inputs(conn: Executor, space_id: str, now: dt.datetime) -> SummaryInputs:
    """Statuses, moods, kinds and times only: names, notes and texts are never read.

    Times are compared in SQL but handed over as text and parsed by ``_event_time``: a row
    stored with an instant no reader can hold (before the edge checked the range) is left
    out and counted, never decoded by asyncpg (which would raise and fail the summary)."""
    settings = await conn.fetchval(
        "SELECT fields::text FROM settings WHERE space_id = $1 AND id = 'settings' AND NOT deleted",
        space_id,
    )
    skipped: list[asyncpg.Record] = []
    check_ins: list[CheckIn] = []
    rows = await conn.fetch(
        """
        (SELECT fields->>'occurred_at' AS at, fields->>'status' AS status,
                fields->'mood' AS mood
         FROM check_ins WHERE space_id = $1 AND NOT deleted
           AND (fields->>'occurred_at')::timestamptz > $2::timestamptz - interval '3 days')
        UNION
        (SELECT fields->>'occurred_at', fields->>'status', fields->'mood'
         FROM check_ins WHERE space_id = $1 AND NOT deleted
           AND (fields->>'occurred_at')::timestamptz <= $2
         ORDER BY (fields->>'occurred_at')::timestamptz DESC LIMIT 1)
        """,
        space_id,
        now,
    )
    for at, r in _readable(rows, skipped):
        mood = msgspec.json.decode(r["mood"]) if r["mood"] is not None else None
        check_ins.append(CheckIn(at, r["status"], mood if type(mood) is int else None))
    rows = await conn.fetch(
        """
        (SELECT fields->>'occurred_at' AS at, fields->>'kind' = 'in_person' AS in_person
         FROM interactions WHERE space_id = $1 AND NOT deleted
           AND (fields->>'occurred_at')::timestamptz > $2::timestamptz - interval '13 weeks'
           AND (fields->>'occurred_at')::timestamptz <= $2)
        UNION ALL
        (SELECT fields->>'occurred_at', true
         FROM interactions WHERE space_id = $1 AND NOT deleted
           AND fields->>'kind' = 'in_person'
           AND (fields->>'occurred_at')::timestamptz <= $2::timestamptz - interval '13 weeks'
         ORDER BY (fields->>'occurred_at')::timestamptz DESC LIMIT 1)
        """,
        space_id,
        now,
    )
    touches = [Touch(at, bool(r["in_person"])) for at, r in _readable(rows, skipped)]
    alerts = await alert_states(conn, space_id, now)
    isolation = bool(
        await conn.fetchval(
            """
            SELECT EXISTS (SELECT 1 FROM insights WHERE space_id = $1 AND NOT deleted
                           AND fields->>'rule' = 'narrowing'
                           AND coalesce(fields->>'status', 'open') IN ('open', 'seen'))
            """,
            space_id,
        )
    )
    return SummaryInputs(
        msgspec.json.decode(settings) if settings else None,
        check_ins,
        touches,
        alerts,
        isolation,
        len(skipped),
    )


async def raise_alert(
    conn: Executor,
    space_id: str,
    alert_id: str,
    kind: str,
    priority: str,
    local_date: dt.date,
    at: dt.datetime,
) -> bool:
    """True if this alert is new (so its pushes go out once)."""
    value = await conn.fetchval(
        """
        INSERT INTO care_alerts (space_id, id, kind, priority, local_date, raised_at)
        VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (space_id, id) DO NOTHING RETURNING true
        """,
        space_id,
        alert_id,
        kind,
        priority,
        local_date,
        at,
    )
    return bool(value)


async def clear_missed_alert(
    conn: Executor, space_id: str, local_date: dt.date, at: dt.datetime
) -> bool:
    """A late check-in clears the day's missed-check-in alert; True if one was open."""
    value = await conn.fetchval(
        """
        UPDATE care_alerts SET cleared_at = $3, resolved_at = $3, resolved_by = 'check_in'
         WHERE space_id = $1 AND kind = 'missed_check_in' AND local_date = $2
           AND cleared_at IS NULL
        RETURNING true
        """,
        space_id,
        local_date,
        at,
    )
    return bool(value)


async def clear_help_alerts(conn: Executor, space_id: str, at: dt.datetime) -> int:
    """An ``ok`` check-in after a need-help one closes it."""
    result = await conn.execute(
        """
        UPDATE care_alerts SET cleared_at = $2, resolved_at = $2, resolved_by = 'check_in'
         WHERE space_id = $1 AND kind = 'need_help' AND cleared_at IS NULL
        """,
        space_id,
        at,
    )
    return int(result.split()[-1])


async def alert_recipients(conn: Executor, space_id: str) -> list[tuple[str, str, str, str]]:
    """(caregiver's space id, device id, link label, link id) for every signed-in,
    push-capable device of every caregiver with an active link and the ``alerts`` scope."""
    rows = await conn.fetch(
        """
        SELECT l.caregiver_space_id, d.id AS device_id, l.label, l.id AS link_id
        FROM care_links l
        JOIN devices d ON d.user_id = l.caregiver_user_id
        WHERE l.space_id = $1 AND l.state = 'active' AND 'alerts' = ANY(l.scopes)
          AND d.revoked_at IS NULL AND d.push_token IS NOT NULL
        ORDER BY l.caregiver_space_id, d.id
        """,
        space_id,
    )
    return [(r["caregiver_space_id"], r["device_id"], r["label"], r["link_id"]) for r in rows]


async def check_ins_on(
    conn: Executor, space_id: str, start: dt.datetime, end: dt.datetime
) -> list[tuple[str, CheckIn]]:
    """(record id, check-in) between ``start`` and ``end``, in time order."""
    rows = await conn.fetch(
        """
        SELECT id, (fields->>'occurred_at')::timestamptz AS at, fields->>'status' AS status,
               (fields->>'mood')::int AS mood
        FROM check_ins WHERE space_id = $1 AND NOT deleted
          AND (fields->>'occurred_at')::timestamptz >= $2
          AND (fields->>'occurred_at')::timestamptz < $3
        ORDER BY 2
        """,
        space_id,
        start,
        end,
    )
    return [(r["id"], CheckIn(r["at"], r["status"], r["mood"])) for r in rows]

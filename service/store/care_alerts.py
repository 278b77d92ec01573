"""SQL of a help request's loop: acknowledgements, resolutions, the escalation ladder's
state, and what the person, the caregivers and the operator read of it (decision 0018).

Every statement names the older adult's space it is for. The alert row is the point of
serialization: acknowledging, resolving and climbing a rung each lock it (``lock_alert``)
and decide under that lock, so "the first acknowledgement wins" and "a resolved alert never
climbs another rung" hold between API processes and workers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from service.store.db import Executor

__all__ = [
    "Acknowledgement",
    "AlertState",
    "NoResponse",
    "acknowledge",
    "add_action_audit",
    "advance_ladder",
    "alert_states",
    "cancel_ladder",
    "enqueue_pushes",
    "has_acknowledged",
    "ladder_dedupe_key",
    "lock_alert",
    "mark_no_response",
    "no_response_alerts",
    "resolve",
]

#: A resolved alert stays in the summaries and the person's view this long.
RECENT = dt.timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    link_id: str
    name: str  # the caregiver's display name: all the person learns of them
    channel: str
    at: dt.datetime


@dataclass(frozen=True, slots=True)
class AlertState:
    """One alert with everything its loop has recorded."""

    space_id: str
    id: str
    kind: str
    priority: str
    raised_at: dt.datetime
    cleared_at: dt.datetime | None
    acknowledged_at: dt.datetime | None
    acknowledged_link_id: str | None
    resolved_at: dt.datetime | None
    resolved_by: str | None  # 'person', 'check_in' or a link id
    resolved_by_name: str | None  # the resolving caregiver's name
    ladder_step: int
    no_response_at: dt.datetime | None
    acknowledgements: tuple[Acknowledgement, ...] = ()

    @property
    def resolved(self) -> bool:
        return self.cleared_at is not None

    @property
    def status(self) -> str:
        if self.resolved:
            return "resolved"
        if self.acknowledged_at is not None:
            return "acknowledged"
        return "no_response" if self.no_response_at is not None else "open"

    @property
    def first(self) -> Acknowledgement | None:
        return next(
            (a for a in self.acknowledgements if a.link_id == self.acknowledged_link_id), None
        )


# $1 is the alert's space in every statement that uses these columns. The subquery names
# it, not a.space_id: the same rows, and on Citus a query it can route to one shard group
# (it refuses the correlated form under FOR UPDATE).
_ALERT_COLUMNS = """
    a.space_id, a.id, a.kind, a.priority, a.raised_at, a.cleared_at, a.acknowledged_at,
    a.acknowledged_link_id, a.resolved_at, a.resolved_by, a.ladder_step, a.no_response_at,
    (SELECT u.display_name FROM care_links l JOIN users u ON u.id = l.caregiver_user_id
      WHERE l.space_id = $1 AND l.id = a.resolved_by) AS resolved_by_name
"""


def _state(r: object, acks: Sequence[Acknowledgement] = ()) -> AlertState:
    row: dict[str, object] = dict(r)  # type: ignore[call-overload]
    return AlertState(
        str(row["space_id"]),
        str(row["id"]),
        str(row["kind"]),
        str(row["priority"]),
        row["raised_at"],  # type: ignore[arg-type]
        row["cleared_at"],  # type: ignore[arg-type]
        row["acknowledged_at"],  # type: ignore[arg-type]
        row["acknowledged_link_id"],  # type: ignore[arg-type]
        row["resolved_at"],  # type: ignore[arg-type]
        row["resolved_by"],  # type: ignore[arg-type]
        row["resolved_by_name"],  # type: ignore[arg-type]
        int(row["ladder_step"]),  # type: ignore[call-overload]
        row["no_response_at"],  # type: ignore[arg-type]
        tuple(acks),
    )


async def lock_alert(conn: Executor, space_id: str, alert_id: str) -> AlertState | None:
    """The alert, locked until the transaction ends (call inside one)."""
    row = await conn.fetchrow(
        f"SELECT {_ALERT_COLUMNS} FROM care_alerts a WHERE a.space_id = $1 AND a.id = $2 "
        "FOR UPDATE OF a",
        space_id,
        alert_id,
    )
    return None if row is None else _state(row)


async def alert_states(
    conn: Executor, space_id: str, now: dt.datetime, *, only: str | None = None
) -> list[AlertState]:
    """The person's open alerts and those resolved in the last 24 hours (or just the alert
    ``only``, however old), oldest first, each with its acknowledgements (two reads)."""
    rows = await conn.fetch(
        f"""
        SELECT {_ALERT_COLUMNS} FROM care_alerts a
        WHERE a.space_id = $1
          AND CASE WHEN $3::text IS NULL THEN a.cleared_at IS NULL OR a.cleared_at > $2
                   ELSE a.id = $3 END
        ORDER BY a.raised_at, a.id
        """,
        space_id,
        now - RECENT,
        only,
    )
    if not rows:
        return []
    acks = await conn.fetch(
        """
        SELECT k.alert_id, k.link_id, u.display_name, k.channel, k.acknowledged_at
        FROM care_acknowledgements k JOIN users u ON u.id = k.caregiver_user_id
        WHERE k.space_id = $1 AND k.alert_id = ANY($2::text[])
        ORDER BY k.acknowledged_at, k.link_id
        """,
        space_id,
        [r["id"] for r in rows],
    )
    by_alert: dict[str, list[Acknowledgement]] = {}
    for k in acks:
        by_alert.setdefault(k["alert_id"], []).append(
            Acknowledgement(k["link_id"], k["display_name"], k["channel"], k["acknowledged_at"])
        )
    return [_state(r, by_alert.get(r["id"], ())) for r in rows]


async def acknowledge(
    conn: Executor,
    space_id: str,
    alert_id: str,
    link_id: str,
    caregiver_user_id: str,
    channel: str,
    at: dt.datetime,
) -> tuple[bool, bool]:
    """Record one caregiver's acknowledgement (call with the alert locked). Returns
    (recorded: this caregiver had not acknowledged before, first: theirs is the one that
    wins)."""
    recorded = await conn.fetchval(
        """
        INSERT INTO care_acknowledgements
            (space_id, alert_id, link_id, caregiver_user_id, channel, acknowledged_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (space_id, alert_id, link_id) DO NOTHING RETURNING true
        """,
        space_id,
        alert_id,
        link_id,
        caregiver_user_id,
        channel,
        at,
    )
    first = await conn.fetchval(
        """
        UPDATE care_alerts SET acknowledged_at = $3, acknowledged_link_id = $4
         WHERE space_id = $1 AND id = $2 AND acknowledged_at IS NULL
        RETURNING true
        """,
        space_id,
        alert_id,
        at,
        link_id,
    )
    return bool(recorded), bool(first)


async def has_acknowledged(conn: Executor, space_id: str, alert_id: str, link_id: str) -> bool:
    value = await conn.fetchval(
        """
        SELECT true FROM care_acknowledgements
        WHERE space_id = $1 AND alert_id = $2 AND link_id = $3
        """,
        space_id,
        alert_id,
        link_id,
    )
    return bool(value)


async def resolve(conn: Executor, space_id: str, alert_id: str, by: str, at: dt.datetime) -> bool:
    """Close the alert (call with it locked); False if it was closed already."""
    value = await conn.fetchval(
        """
        UPDATE care_alerts SET cleared_at = $3, resolved_at = $3, resolved_by = $4
         WHERE space_id = $1 AND id = $2 AND cleared_at IS NULL
        RETURNING true
        """,
        space_id,
        alert_id,
        at,
        by,
    )
    return bool(value)


def ladder_dedupe_key(space_id: str, alert_id: str) -> str:
    """One queued ladder job per alert."""
    return f"{space_id}|{alert_id}"


async def cancel_ladder(conn: Executor, kind: str, space_id: str, alert_id: str) -> None:
    """Drop the alert's next rung if it is waiting (an acknowledgement or a resolution
    ends the ladder at once; a rung already running finds the alert closed and stops)."""
    await conn.execute(
        "DELETE FROM jobs WHERE kind = $1 AND dedupe_key = $2 AND state = 'queued'",
        kind,
        ladder_dedupe_key(space_id, alert_id),
    )


async def advance_ladder(conn: Executor, space_id: str, alert_id: str, step: int) -> None:
    await conn.execute(
        "UPDATE care_alerts SET ladder_step = $3 WHERE space_id = $1 AND id = $2",
        space_id,
        alert_id,
        step,
    )


async def mark_no_response(conn: Executor, space_id: str, alert_id: str, at: dt.datetime) -> None:
    await conn.execute(
        """
        UPDATE care_alerts SET no_response_at = $3
         WHERE space_id = $1 AND id = $2 AND no_response_at IS NULL
        """,
        space_id,
        alert_id,
        at,
    )


async def add_action_audit(
    conn: Executor,
    space_id: str,
    link_id: str | None,
    user_id: str,
    channel: str,
    action: str,
    alert_id: str,
) -> None:
    """An acknowledgement or a resolution in the person's audit (``link_id`` None: the
    person acted themselves)."""
    await conn.execute(
        """
        INSERT INTO care_audit (space_id, link_id, caregiver_user_id, channel, action, alert_id)
        VALUES ($1, $2, $3, $4, $5, $6)
        """,
        space_id,
        link_id,
        user_id,
        channel,
        action,
        alert_id,
    )


async def enqueue_pushes(
    conn: Executor,
    kind: str,
    targets: Sequence[tuple[str, str]],
    notification: dict[str, object],
) -> None:
    """One ``kind`` (``care_push``) job per (space id, device id), all saying
    ``notification`` (collapse_id, title, body, time_sensitive, optionally category, data)."""
    if not targets:
        return
    await conn.execute(
        """
        INSERT INTO jobs (kind, space_id, payload, max_attempts)
        SELECT $1, t.space_id, $4::jsonb || jsonb_build_object('device_id', t.device_id), 12
        FROM unnest($2::text[], $3::text[]) AS t(space_id, device_id)
        """,
        kind,
        [t[0] for t in targets],
        [t[1] for t in targets],
        msgspec.json.encode(notification).decode(),
    )


@dataclass(frozen=True, slots=True)
class NoResponse:
    space_id: str
    alert_id: str
    raised_at: dt.datetime
    no_response_at: dt.datetime
    resolved: bool


async def no_response_alerts(conn: Executor, since: dt.datetime) -> list[NoResponse]:
    """Help requests nobody answered, marked since ``since`` (``kith report``)."""
    rows = await conn.fetch(
        """
        SELECT space_id, id, raised_at, no_response_at, cleared_at IS NOT NULL AS resolved
        FROM care_alerts WHERE no_response_at > $1 AND acknowledged_at IS NULL
        ORDER BY no_response_at DESC LIMIT 50
        """,
        since,
    )
    return [
        NoResponse(r["space_id"], r["id"], r["raised_at"], r["no_response_at"], r["resolved"])
        for r in rows
    ]

"""SQL of the push worker: nudge requests' life, push addresses, shared credentials,
feedback and effectiveness. Every query names the space (or the device's owner) it is for.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from service.nudges.planning import Pending
from service.push.base import Address
from service.store.db import Connection, Executor

__all__ = [
    "Credential",
    "PlanInputs",
    "PushTarget",
    "RuleEffect",
    "TieRow",
    "device_address",
    "disable_credential",
    "disabled_credentials",
    "drop_token",
    "effectiveness",
    "enable_credential",
    "list_nudges",
    "load_plan_inputs",
    "lock_credential",
    "lock_plan",
    "mark_decided",
    "mark_sent",
    "push_devices",
    "push_targets",
    "record_feedback",
    "replan_if_pending",
    "save_credential",
    "set_environment",
    "settings_of",
]

_decode = msgspec.json.decode


# -- shared provider credentials ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credential:
    key: str
    token: str
    minted_at: dt.datetime
    expires_at: dt.datetime
    disabled_reason: str | None


async def lock_credential(conn: Connection, key: str) -> Credential:
    """The credential row, locked until the transaction ends (so only one worker mints).
    A missing row is created first (empty token, minted at the epoch), so there is always
    a row to lock."""
    await conn.execute(
        """
        INSERT INTO push_credentials (key, token, minted_at, expires_at)
        VALUES ($1, '', 'epoch', 'epoch') ON CONFLICT (key) DO NOTHING
        """,
        key,
    )
    row = await conn.fetchrow(
        """
        SELECT token, minted_at, expires_at, disabled_reason
        FROM push_credentials WHERE key = $1 FOR UPDATE
        """,
        key,
    )
    assert row is not None
    return Credential(
        key, row["token"], row["minted_at"], row["expires_at"], row["disabled_reason"]
    )


async def save_credential(conn: Connection, cred: Credential) -> None:
    await conn.execute(
        """
        UPDATE push_credentials SET token = $2, minted_at = $3, expires_at = $4
        WHERE key = $1
        """,
        cred.key,
        cred.token,
        cred.minted_at,
        cred.expires_at,
    )


async def disable_credential(conn: Executor, key: str, reason: str, at: dt.datetime) -> None:
    await conn.execute(
        """
        INSERT INTO push_credentials (key, token, minted_at, expires_at, disabled_reason,
                                      disabled_at)
        VALUES ($1, '', 'epoch', 'epoch', $2, $3)
        ON CONFLICT (key) DO UPDATE SET disabled_reason = $2, disabled_at = $3
        """,
        key,
        reason,
        at,
    )


async def disabled_credentials(conn: Executor) -> list[tuple[str, str, dt.datetime]]:
    """(key, why, since) of every credential a provider refused (the operator's report)."""
    rows = await conn.fetch(
        """
        SELECT key, disabled_reason, disabled_at FROM push_credentials
        WHERE disabled_reason IS NOT NULL ORDER BY disabled_at
        """
    )
    return [(r["key"], r["disabled_reason"], r["disabled_at"]) for r in rows]


async def enable_credential(conn: Executor, key: str) -> bool:
    """An operator fixed the key: sends resume, and the next one mints a fresh token."""
    return bool(
        await conn.fetchval(
            """
            UPDATE push_credentials
               SET disabled_reason = NULL, disabled_at = NULL, token = '', minted_at = 'epoch',
                   expires_at = 'epoch'
             WHERE key = $1 AND disabled_reason IS NOT NULL
            RETURNING true
            """,
            key,
        )
    )


# -- planning ------------------------------------------------------------------------------


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


async def push_devices(conn: Executor, space_id: str) -> list[str]:
    """The person's signed-in devices that have a push address."""
    rows = await conn.fetch(
        """
        SELECT d.id FROM devices d JOIN spaces s ON s.owner_id = d.user_id
        WHERE s.id = $1 AND d.revoked_at IS NULL AND d.push_token IS NOT NULL
        ORDER BY d.id
        """,
        space_id,
    )
    return [r["id"] for r in rows]


# -- sending -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PushTarget:
    state: str
    title: str | None
    body: str | None
    contact_id: str | None
    insight_id: str
    rule: str
    provider: str | None
    token: str | None
    environment: str | None
    topic: str | None
    keys: dict[str, str] | None
    registered_at: dt.datetime | None
    settings: dict[str, Any] | None
    sent_at: dt.datetime | None


async def push_targets(
    conn: Executor, keys: Sequence[tuple[str, str, str]]
) -> list[PushTarget | None]:
    """Each send's inputs — (space, nudge, device) → the nudge's text and the device's
    address *now* (a token refreshed or removed since the nudge was planned is honoured) —
    for many sends in one read, in the order of ``keys``."""
    rows = await conn.fetch(
        """
        SELECT k.ord, n.state, n.push_title, n.push_body, n.contact_id, n.insight_id, n.rule,
               d.push_provider, d.push_token, d.push_environment, d.push_topic,
               d.push_keys::text AS keys, d.push_token_updated_at,
               st.fields::text AS settings, n.sent_at
        FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
             AS k(space_id, nudge_id, device_id, ord)
        JOIN nudge_requests n ON n.space_id = k.space_id AND n.id = k.nudge_id
        JOIN spaces s ON s.id = n.space_id
        LEFT JOIN devices d
               ON d.user_id = s.owner_id AND d.id = k.device_id AND d.revoked_at IS NULL
        LEFT JOIN settings st ON st.space_id = n.space_id AND st.id = 'settings' AND NOT st.deleted
        """,
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
    )
    out: list[PushTarget | None] = [None] * len(keys)
    for r in rows:
        out[r["ord"] - 1] = PushTarget(
            r["state"],
            r["push_title"],
            r["push_body"],
            r["contact_id"],
            r["insight_id"],
            r["rule"],
            r["push_provider"],
            r["push_token"],
            r["push_environment"],
            r["push_topic"],
            _decode(r["keys"]) if r["keys"] else None,
            r["push_token_updated_at"],
            _decode(r["settings"]) if r["settings"] else None,
            r["sent_at"],
        )
    return out


async def device_address(conn: Executor, space_id: str, device_id: str) -> Address | None:
    """A signed-in device's push address, found through its owner's space."""
    r = await conn.fetchrow(
        """
        SELECT d.push_provider, d.push_token, d.push_environment, d.push_topic,
               d.push_keys::text AS keys, d.push_token_updated_at
        FROM devices d JOIN spaces s ON s.owner_id = d.user_id
        WHERE s.id = $1 AND d.id = $2 AND d.revoked_at IS NULL AND d.push_token IS NOT NULL
        """,
        space_id,
        device_id,
    )
    if r is None:
        return None
    return Address(
        device_id,
        r["push_provider"],
        r["push_token"],
        r["push_token_updated_at"],
        r["push_environment"],
        r["push_topic"],
        _decode(r["keys"]) if r["keys"] else None,
    )


async def drop_token(
    conn: Executor, space_id: str, device_id: str, token: str, invalid_since: dt.datetime | None
) -> bool:
    """Forget a device's push address the provider says is dead — only the token that was
    used, and (APNs 410) only if it was registered before the provider's timestamp: a token
    the phone registered again since then is live."""
    return bool(
        await conn.fetchval(
            """
            UPDATE devices d
               SET push_provider = NULL, push_token = NULL, push_keys = NULL,
                   push_environment = NULL, push_topic = NULL, push_token_updated_at = NULL
              FROM spaces s
             WHERE s.id = $1 AND d.user_id = s.owner_id AND d.id = $2 AND d.push_token = $3
               AND ($4::timestamptz IS NULL OR d.push_token_updated_at < $4)
            RETURNING true
            """,
            space_id,
            device_id,
            token,
            invalid_since,
        )
    )


async def set_environment(
    conn: Executor, space_id: str, device_id: str, token: str, environment: str
) -> None:
    """The token turned out to belong to the other APNs environment (a debug build)."""
    await conn.execute(
        """
        UPDATE devices d SET push_environment = $4
          FROM spaces s
         WHERE s.id = $1 AND d.user_id = s.owner_id AND d.id = $2 AND d.push_token = $3
        """,
        space_id,
        device_id,
        token,
        environment,
    )


# -- feedback and reporting ----------------------------------------------------------------


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


async def settings_of(conn: Executor, space_id: str) -> dict[str, Any] | None:
    text = await conn.fetchval(
        "SELECT fields::text FROM settings WHERE space_id = $1 AND id = 'settings' AND NOT deleted",
        space_id,
    )
    return _decode(text) if text else None


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

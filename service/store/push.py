"""SQL of push delivery: devices' push addresses and the providers' shared credentials.
Every query names the space (or the device's owner) it is for.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from schemas.auth import ProviderName
from service.store.db import Connection, Executor

__all__ = [
    "Address",
    "Credential",
    "PushTarget",
    "device_address",
    "disable_credential",
    "disabled_credentials",
    "drop_token",
    "enable_credential",
    "lock_credential",
    "push_devices",
    "push_targets",
    "save_credential",
    "set_environment",
]


@dataclass(frozen=True, slots=True)
class Address:
    """Where one device receives pushes (the ``devices.push_*`` columns)."""

    device_id: str
    provider: ProviderName
    token: str  # APNs hex token, FCM registration token, or Web Push endpoint URL
    registered_at: dt.datetime
    environment: str | None = None  # APNs: "sandbox" | "production"
    topic: str | None = None  # APNs: the app's bundle id, if not the configured one
    keys: dict[str, str] | None = None  # Web Push: {"p256dh": ..., "auth": ...} (base64url)


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
    # The owner is found through users.space_id, not spaces.owner_id: on Citus devices and
    # users are reference tables, and Citus refuses to write one while reading a
    # distributed table (spaces) in the same statement.
    return bool(
        await conn.fetchval(
            """
            UPDATE devices d
               SET push_provider = NULL, push_token = NULL, push_keys = NULL,
                   push_environment = NULL, push_topic = NULL, push_token_updated_at = NULL
              FROM users u
             WHERE u.space_id = $1 AND d.user_id = u.id AND d.id = $2 AND d.push_token = $3
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
          FROM users u
         WHERE u.space_id = $1 AND d.user_id = u.id AND d.id = $2 AND d.push_token = $3
        """,
        space_id,
        device_id,
        token,
        environment,
    )


# -- feedback and reporting ----------------------------------------------------------------

"""SQL for users, spaces, devices and token families.

Every statement here is scoped by the caller's user id (or by a secret the caller holds: a
refresh token hash), never by a bare row id taken from a request.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg

from schemas.auth import DeviceOut
from service.store.db import Connection, Executor

__all__ = [
    "CodeCheck",
    "NewUser",
    "RefreshRow",
    "UserRow",
    "active_families",
    "email_of",
    "email_taken",
    "family_is_active",
    "insert_refresh_token",
    "insert_user",
    "list_devices",
    "mark_refresh_used",
    "password_hash_of",
    "put_code",
    "record_consent",
    "refresh_token_for_update",
    "revoke_device",
    "revoke_device_families",
    "revoke_family",
    "session_age_s",
    "set_email",
    "set_password",
    "set_push_token",
    "start_family",
    "take_code",
    "upsert_device",
    "user_by_email",
    "user_space",
]


@dataclass(frozen=True, slots=True)
class UserRow:
    id: str
    space_id: str
    password_hash: str
    terms_version: str | None = None


@dataclass(frozen=True, slots=True)
class RefreshRow:
    family_id: str
    user_id: str
    device_id: str
    space_id: str
    expires_at: dt.datetime
    used: bool
    family_revoked: bool
    terms_version: str | None = None


@dataclass(frozen=True, slots=True)
class NewUser:
    """A person's account as it is made: with a password, or by Apple or Google (the
    password hash '', which no password matches, and maybe no email). The terms version
    and the wellbeing consent are recorded with the time, if given."""

    email: str | None
    password_hash: str
    display_name: str
    time_zone: str
    terms_version: str | None = None
    wellbeing_consent: bool = False


async def insert_user(conn: Connection, user_id: str, space_id: str, user: NewUser) -> bool:
    """Create the user and their space; False if the email is already registered."""
    inserted = await conn.fetchval(
        """
        INSERT INTO users (id, email, password_hash, display_name, time_zone, terms_version,
                           terms_accepted_at, wellbeing_consent_at, space_id)
        VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $6::text IS NULL THEN NULL ELSE now() END,
                CASE WHEN $7 THEN now() END, $8)
        ON CONFLICT (lower(email)) DO NOTHING
        RETURNING id
        """,
        user_id,
        user.email,
        user.password_hash,
        user.display_name,
        user.time_zone,
        user.terms_version,
        user.wellbeing_consent,
        space_id,
    )
    if inserted is None:
        return False
    await conn.execute("INSERT INTO spaces (id, owner_id) VALUES ($1, $2)", space_id, user_id)
    return True


async def user_by_email(conn: Executor, email: str) -> UserRow | None:
    # users carries the space id (migration 0008): on Citus a lookup in a reference table,
    # answered by the coordinator's copy, not a question to every shard of spaces.
    row = await conn.fetchrow(
        """
        SELECT id, space_id, password_hash, terms_version
        FROM users WHERE lower(email) = lower($1) AND erasing_at IS NULL
        """,
        email,
    )
    if row is None:
        return None
    space_id = await user_space(conn, row)
    return UserRow(row["id"], space_id, row["password_hash"], row["terms_version"])


async def user_space(conn: Executor, user: asyncpg.Record) -> str:
    """The space of a ``users`` row read with its ``id`` and ``space_id``."""
    space_id: str | None = user["space_id"]
    if space_id is None:
        # Registered by the release before 0008 while this one rolled out: found by owner.
        space_id = await conn.fetchval("SELECT id FROM spaces WHERE owner_id = $1", user["id"])
    assert space_id is not None, "every account has a space"
    return space_id


async def password_hash_of(conn: Executor, user_id: str) -> str | None:
    """The user's password hash (None: no such account, or one being erased)."""
    value = await conn.fetchval(
        "SELECT password_hash FROM users WHERE id = $1 AND erasing_at IS NULL", user_id
    )
    return None if value is None else str(value)


async def put_code(
    conn: Executor,
    *,
    user_id: str,
    purpose: str,
    code_hash: bytes,
    ttl_s: int,
    new_email: str | None = None,
) -> None:
    """A new one-time code for ``purpose``; it replaces the person's previous one."""
    # created_at from EXCLUDED (the column default, now()): Citus refuses now() in the SET
    # list, also on a coordinator table in its metadata (account_codes references users).
    await conn.execute(
        """
        INSERT INTO account_codes (user_id, purpose, code_hash, new_email, expires_at)
        VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
        ON CONFLICT (user_id, purpose) DO UPDATE
           SET code_hash = EXCLUDED.code_hash, new_email = EXCLUDED.new_email,
               attempts = 0, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
        """,
        user_id,
        purpose,
        code_hash,
        new_email,
        float(ttl_s),
    )


@dataclass(frozen=True, slots=True)
class CodeCheck:
    ok: bool
    new_email: str | None = None


async def take_code(
    conn: Connection, *, user_id: str, purpose: str, code_hash: bytes, max_attempts: int
) -> CodeCheck:
    """Use the person's code once: right, live and tried fewer than ``max_attempts``
    times → deleted and ok; wrong → one more attempt counted. Run it in a transaction."""
    # FOR UPDATE: two guesses at once take turns, so the attempt count cannot be raced.
    row = await conn.fetchrow(
        """
        SELECT code_hash, new_email, attempts, expires_at > now() AS live
        FROM account_codes WHERE user_id = $1 AND purpose = $2
        FOR UPDATE
        """,
        user_id,
        purpose,
    )
    if row is None:
        return CodeCheck(False)
    if row["live"] and row["attempts"] < max_attempts and row["code_hash"] == code_hash:
        await conn.execute(
            "DELETE FROM account_codes WHERE user_id = $1 AND purpose = $2", user_id, purpose
        )
        return CodeCheck(True, row["new_email"])
    await conn.execute(
        "UPDATE account_codes SET attempts = attempts + 1 WHERE user_id = $1 AND purpose = $2",
        user_id,
        purpose,
    )
    return CodeCheck(False)


async def set_password(conn: Connection, user_id: str, password_hash: str) -> list[str]:
    """A new password: every session of the person ends (their devices stay known) and the
    web sessions too. Returns the person's device ids (to end their streams)."""
    await conn.execute(
        "UPDATE users SET password_hash = $2 WHERE id = $1 AND erasing_at IS NULL",
        user_id,
        password_hash,
    )
    rows = await conn.fetch(
        """
        UPDATE token_families SET revoked_at = now(), revoked_reason = 'password_reset'
        WHERE user_id = $1 AND revoked_at IS NULL
        RETURNING device_id
        """,
        user_id,
    )
    await conn.execute("DELETE FROM web_sessions WHERE user_id = $1", user_id)
    return sorted({r["device_id"] for r in rows})


async def set_email(conn: Executor, user_id: str, email: str) -> bool:
    """False if another account has the address (nothing changed)."""
    try:
        done = await conn.fetchval(
            "UPDATE users SET email = $2 WHERE id = $1 AND erasing_at IS NULL RETURNING true",
            user_id,
            email,
        )
    except asyncpg.UniqueViolationError:
        return False
    return bool(done)


async def email_of(conn: Executor, user_id: str) -> str | None:
    value = await conn.fetchval(
        "SELECT email FROM users WHERE id = $1 AND erasing_at IS NULL", user_id
    )
    return None if value is None else str(value)


async def email_taken(conn: Executor, email: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM users WHERE lower(email) = lower($1)", email))


async def record_consent(conn: Executor, user_id: str, terms_version: str) -> dt.datetime:
    """The person accepted ``terms_version`` and consented to wellbeing data, now."""
    value = await conn.fetchval(
        """
        UPDATE users SET terms_version = $2, terms_accepted_at = now(),
                         wellbeing_consent_at = now()
        WHERE id = $1 AND erasing_at IS NULL
        RETURNING terms_accepted_at
        """,
        user_id,
        terms_version,
    )
    if not isinstance(value, dt.datetime):
        raise LookupError("no such account")
    return value


async def session_age_s(conn: Executor, *, family_id: str, user_id: str) -> float | None:
    """Seconds since the session (token family) was started by a sign-in; refreshing its
    tokens does not make it younger."""
    value = await conn.fetchval(
        """
        SELECT extract(epoch FROM now() - created_at)::float8 FROM token_families
        WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL
        """,
        family_id,
        user_id,
    )
    return None if value is None else float(value)


async def upsert_device(
    conn: Connection, *, user_id: str, device_id: str, platform: str, name: str
) -> None:
    """Register the device, or bring a known (even previously revoked) one back: logging in
    with the password again is how a person re-admits a phone they had removed."""
    # EXCLUDED.last_seen_at is the now() of VALUES: the same instant as a now() in the SET
    # list, which Citus refuses there (it evaluates functions only where it routes rows).
    await conn.execute(
        """
        INSERT INTO devices (user_id, id, platform, name, last_seen_at)
        VALUES ($1, $2, $3, $4, now())
        ON CONFLICT (user_id, id) DO UPDATE
           SET platform = EXCLUDED.platform, name = EXCLUDED.name,
               last_seen_at = EXCLUDED.last_seen_at, revoked_at = NULL
        """,
        user_id,
        device_id,
        platform,
        name,
    )


async def start_family(
    conn: Connection, *, family_id: str, user_id: str, device_id: str, space_id: str
) -> None:
    """One live session per device: a new login ends the device's previous family."""
    await revoke_device_families(conn, user_id=user_id, device_id=device_id, reason="new_login")
    await conn.execute(
        """
        INSERT INTO token_families (id, user_id, device_id, space_id) VALUES ($1, $2, $3, $4)
        """,
        family_id,
        user_id,
        device_id,
        space_id,
    )


async def revoke_family(conn: Executor, family_id: str, reason: str) -> None:
    await conn.execute(
        """
        UPDATE token_families SET revoked_at = now(), revoked_reason = $2
        WHERE id = $1 AND revoked_at IS NULL
        """,
        family_id,
        reason,
    )


async def revoke_device_families(
    conn: Executor, *, user_id: str, device_id: str, reason: str
) -> None:
    await conn.execute(
        """
        UPDATE token_families SET revoked_at = now(), revoked_reason = $3
        WHERE user_id = $1 AND device_id = $2 AND revoked_at IS NULL
        """,
        user_id,
        device_id,
        reason,
    )


async def insert_refresh_token(
    conn: Connection, *, token_hash: bytes, family_id: str, ttl_s: int
) -> None:
    await conn.execute(
        """
        INSERT INTO refresh_tokens (token_hash, family_id, expires_at)
        VALUES ($1, $2, now() + make_interval(secs => $3))
        """,
        token_hash,
        family_id,
        float(ttl_s),
    )


async def refresh_token_for_update(conn: Connection, token_hash: bytes) -> RefreshRow | None:
    # FOR UPDATE: two concurrent refreshes with the same token serialize here, so exactly
    # one rotates and the other sees it used (and revokes the family as a replay).
    row = await conn.fetchrow(
        """
        SELECT f.id AS family_id, f.user_id, f.device_id, f.space_id, r.expires_at,
               r.used_at IS NOT NULL AS used,
               (f.revoked_at IS NOT NULL
                OR d.revoked_at IS NOT NULL) AS family_revoked,
               u.terms_version
        FROM refresh_tokens r
        JOIN token_families f ON f.id = r.family_id
        JOIN devices d ON d.user_id = f.user_id AND d.id = f.device_id
        JOIN users u ON u.id = f.user_id
        WHERE r.token_hash = $1
        FOR UPDATE OF r
        """,
        token_hash,
    )
    if row is None:
        return None
    return RefreshRow(
        row["family_id"],
        row["user_id"],
        row["device_id"],
        row["space_id"],
        row["expires_at"],
        row["used"],
        row["family_revoked"],
        row["terms_version"],
    )


async def mark_refresh_used(conn: Connection, token_hash: bytes) -> None:
    await conn.execute(
        "UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1", token_hash
    )


async def family_is_active(
    conn: Executor, *, family_id: str, user_id: str, device_id: str, space_id: str
) -> bool:
    """The per-request check behind every access token: session and device still live, and
    the token's space the session's own (a token is trusted for nothing its session is not)."""
    return bool(
        await conn.fetchval(
            """
            SELECT true
            FROM token_families f
            JOIN devices d ON d.user_id = f.user_id AND d.id = f.device_id
            WHERE f.id = $1 AND f.user_id = $2 AND f.device_id = $3 AND f.space_id = $4
              AND f.revoked_at IS NULL AND d.revoked_at IS NULL
            """,
            family_id,
            user_id,
            device_id,
            space_id,
        )
    )


async def active_families(conn: Executor, family_ids: list[str]) -> set[str]:
    """Which of ``family_ids`` are still live sessions of live devices (one query for every
    open event stream of a process, on each heartbeat)."""
    rows = await conn.fetch(
        """
        SELECT f.id
        FROM token_families f
        JOIN devices d ON d.user_id = f.user_id AND d.id = f.device_id
        WHERE f.id = ANY($1::text[]) AND f.revoked_at IS NULL AND d.revoked_at IS NULL
        """,
        family_ids,
    )
    return {r["id"] for r in rows}


async def list_devices(conn: Executor, user_id: str, current_device_id: str) -> list[DeviceOut]:
    """The user's signed-in devices as the API lists them (``current``: the caller's own)."""
    rows = await conn.fetch(
        """
        SELECT id, platform, name, created_at, last_seen_at, push_provider, id = $2 AS current
        FROM devices WHERE user_id = $1 AND revoked_at IS NULL
        ORDER BY created_at
        """,
        user_id,
        current_device_id,
    )
    return [DeviceOut(**r) for r in rows]


async def revoke_device(conn: Connection, *, user_id: str, device_id: str) -> bool:
    """Sign a device out everywhere and forget its push token."""
    done = await conn.fetchval(
        """
        UPDATE devices
           SET revoked_at = now(), push_provider = NULL, push_token = NULL, push_keys = NULL,
               push_environment = NULL, push_topic = NULL, push_token_updated_at = NULL
        WHERE user_id = $1 AND id = $2 AND revoked_at IS NULL
        RETURNING true
        """,
        user_id,
        device_id,
    )
    if done:
        await revoke_device_families(
            conn, user_id=user_id, device_id=device_id, reason="device_revoked"
        )
    return bool(done)


async def set_push_token(
    conn: Connection,
    *,
    user_id: str,
    device_id: str,
    provider: str,
    token: str,
    environment: str | None,
    topic: str | None,
    keys_json: str | None,
) -> bool:
    """Store the caller's device's push address; False (and nothing changed) if the caller
    has no live device with this id.

    A token can only belong to one device: any other device (of any user) holding it loses
    it, so a reinstalled app or a phone that changed hands never gets someone else's nudges.
    The takeover happens only once the caller's own device is found, in the same statement,
    so naming someone else's device changes nothing at all. Run it inside a transaction."""
    # Two devices claiming the same token at once would each clear the other's copy before
    # either committed, leaving it on both; a lock per token makes the claims take turns.
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{provider}:{token}"
    )
    updated = await conn.fetchval(
        """
        WITH mine AS (
            UPDATE devices
               SET push_provider = $3, push_token = $4, push_environment = $5, push_topic = $6,
                   push_keys = $7::jsonb, push_token_updated_at = now()
            WHERE user_id = $1 AND id = $2 AND revoked_at IS NULL
            RETURNING 1
        ), taken_over AS (
            UPDATE devices
               SET push_provider = NULL, push_token = NULL, push_keys = NULL,
                   push_environment = NULL, push_topic = NULL, push_token_updated_at = NULL
            WHERE push_provider = $3 AND push_token = $4 AND NOT (user_id = $1 AND id = $2)
              AND EXISTS (SELECT 1 FROM mine)
        )
        SELECT EXISTS (SELECT 1 FROM mine)
        """,
        user_id,
        device_id,
        provider,
        token,
        environment,
        topic,
        keys_json,
    )
    return bool(updated)

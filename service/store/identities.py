"""SQL for the sign-in identities: Apple and Google accounts linked to Kith accounts.

An identity is found by what the provider vouched for — (provider, subject) from a verified
ID token — or by its person's user id; never by an id taken from a request. On Citus the
table is replicated (a reference table, like ``users``): a sign-in finds it before knowing
anyone's space (decision 0020).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from schemas.auth import IdentityOut
from service.store.accounts import user_space
from service.store.db import Connection, Executor

__all__ = [
    "Linked",
    "SignInUser",
    "account_of",
    "delete_identity",
    "identities_of",
    "insert_identity",
    "lock_sign_in_methods",
    "password_set",
    "touch_identity",
    "user_by_identity",
]


@dataclass(frozen=True, slots=True)
class SignInUser:
    id: str
    space_id: str
    terms_version: str | None


class Linked(StrEnum):
    """What linking an identity to an account did."""

    LINKED = "linked"  # new
    ALREADY = "already"  # this account had it already: nothing changed
    TAKEN = "taken"  # another account has it
    PROVIDER_TAKEN = "provider_taken"  # this account has another identity of the provider


async def user_by_identity(conn: Executor, provider: str, subject: str) -> SignInUser | None:
    """The live account the identity signs in to (None: unknown, or being erased)."""
    row = await conn.fetchrow(
        """
        SELECT u.id, u.space_id, u.terms_version
        FROM identities i JOIN users u ON u.id = i.user_id
        WHERE i.provider = $1 AND i.subject = $2 AND u.erasing_at IS NULL
        """,
        provider,
        subject,
    )
    if row is None:
        return None
    return SignInUser(row["id"], await user_space(conn, row), row["terms_version"])


async def touch_identity(
    conn: Executor, provider: str, subject: str, email: str | None, private_email: bool
) -> None:
    """A sign-in with the identity: its time, and the email if the token carried a verified
    one (Apple sends it reliably only the first time: a later token without it keeps it)."""
    await conn.execute(
        """
        UPDATE identities
           SET last_sign_in_at = now(), email = COALESCE($3, email),
               private_email = CASE WHEN $3::text IS NULL THEN private_email ELSE $4 END
        WHERE provider = $1 AND subject = $2
        """,
        provider,
        subject,
        email,
        private_email,
    )


async def insert_identity(
    conn: Connection,
    *,
    user_id: str,
    provider: str,
    subject: str,
    email: str | None,
    private_email: bool,
    signed_in: bool,
) -> Linked:
    """Link the identity to the account, unless it or the provider is linked already
    (then nothing is written and the answer says which)."""
    # DO NOTHING on either key: (provider, subject) — someone has this identity — or
    # (user_id, provider) — this account has another one. A concurrent insert of the same
    # identity waits on the key and then finds it taken.
    inserted = await conn.fetchval(
        """
        INSERT INTO identities (provider, subject, user_id, email, private_email,
                                last_sign_in_at)
        VALUES ($1, $2, $3, $4, $5, CASE WHEN $6 THEN now() END)
        ON CONFLICT DO NOTHING
        RETURNING true
        """,
        provider,
        subject,
        user_id,
        email,
        private_email,
        signed_in,
    )
    if inserted:
        return Linked.LINKED
    holder = await conn.fetchval(
        "SELECT user_id FROM identities WHERE provider = $1 AND subject = $2", provider, subject
    )
    if holder == user_id:
        return Linked.ALREADY
    if holder is not None:
        return Linked.TAKEN
    return Linked.PROVIDER_TAKEN


async def lock_sign_in_methods(conn: Connection, user_id: str) -> None:
    """Take turns changing one account's ways to sign in (run it in a transaction): two
    unlinks at once must not both see the other's identity as the one that remains."""
    # An advisory lock, on the coordinator every Kith process talks to (a row lock on the
    # replicated users table would be taken on every node).
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"sign-in-methods:{user_id}"
    )


async def password_set(conn: Executor, user_id: str) -> bool:
    """Whether the account has a password (one made with a provider has '' until a
    password reset sets one)."""
    return bool(
        await conn.fetchval(
            "SELECT password_hash <> '' FROM users WHERE id = $1 AND erasing_at IS NULL", user_id
        )
    )


async def account_of(conn: Executor, user_id: str) -> dict[str, Any] | None:
    """The person's account as ``GET /v1/account`` shows it (without its identities)."""
    row = await conn.fetchrow(
        """
        SELECT id AS user_id, email, display_name, time_zone, password_hash <> '' AS has_password
        FROM users WHERE id = $1 AND erasing_at IS NULL
        """,
        user_id,
    )
    return None if row is None else dict(row)


async def identities_of(conn: Executor, user_id: str) -> list[IdentityOut]:
    rows = await conn.fetch(
        """
        SELECT provider, subject, email, private_email, created_at AS linked_at, last_sign_in_at
        FROM identities WHERE user_id = $1 ORDER BY provider
        """,
        user_id,
    )
    return [IdentityOut(**r) for r in rows]


async def delete_identity(conn: Executor, user_id: str, provider: str) -> bool:
    done = await conn.fetchval(
        "DELETE FROM identities WHERE user_id = $1 AND provider = $2 RETURNING true",
        user_id,
        provider,
    )
    return bool(done)

"""SQL of the people's data keys (``space_keys``, migration 0011; decision 0021): each is
read, made, destroyed and re-wrapped here, and only ever held wrapped.

Every statement names its space but the rotation's, which walks every space on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.store.db import Connection, Executor

__all__ = ["WrappedKey", "create_key", "destroy_key", "key_of", "keys_not_under", "rewrap"]


@dataclass(frozen=True, slots=True)
class WrappedKey:
    space_id: str
    master_kid: str
    wrapped: bytes


async def key_of(conn: Executor, space_id: str) -> WrappedKey | None:
    row = await conn.fetchrow(
        "SELECT master_kid, wrapped FROM space_keys WHERE space_id = $1", space_id
    )
    return None if row is None else WrappedKey(space_id, row["master_kid"], bytes(row["wrapped"]))


async def create_key(
    conn: Connection, space_id: str, master_kid: str, wrapped: bytes
) -> WrappedKey:
    """Store ``wrapped`` as the space's key unless it has one; return the key it has now.
    Its own transaction, committed here: a key must never seal anything before it is
    durable, or a rolled-back push would leave a process caching a key nobody else can
    find. LookupError if the space is gone (its account was erased)."""
    async with conn.transaction():
        # The space's row, share-locked: an erasure (which locks it FOR UPDATE, then deletes
        # the key and the space in one transaction) either runs wholly before — no space,
        # no key made for it — or after, deleting this key with the rest.
        if (
            await conn.fetchval("SELECT 1 FROM spaces WHERE id = $1 FOR KEY SHARE", space_id)
            is None
        ):
            raise LookupError(f"space {space_id!r} does not exist")
        # ON CONFLICT: two processes making the space's first key at once both end up with
        # the one inserted first (the second waits for it, then does nothing); the loser's
        # random key is thrown away unused.
        await conn.execute(
            """
            INSERT INTO space_keys (space_id, master_kid, wrapped) VALUES ($1, $2, $3)
            ON CONFLICT (space_id) DO NOTHING
            """,
            space_id,
            master_kid,
            wrapped,
        )
    found = await key_of(conn, space_id)
    if found is None:  # destroyed in between: the account is being erased
        raise LookupError(f"no key for space {space_id!r}")
    return found


async def destroy_key(conn: Executor, space_id: str) -> bool:
    """Delete the space's key (whatever of its text is left anywhere is unreadable after
    this). Whether there was one."""
    done = await conn.fetchval(
        """
        WITH d AS (DELETE FROM space_keys WHERE space_id = $1 RETURNING 1)
        SELECT count(*) FROM d
        """,
        space_id,
    )
    return bool(done)


async def keys_not_under(
    conn: Executor, master_kid: str, after: str, limit: int
) -> list[WrappedKey]:
    """Up to ``limit`` keys wrapped under another master key than ``master_kid``, in space
    order after ``after`` (a keyset page: the rotation walks every space once)."""
    rows = await conn.fetch(
        """
        SELECT space_id, master_kid, wrapped FROM space_keys
        WHERE master_kid <> $1 AND space_id > $2
        ORDER BY space_id LIMIT $3
        """,
        master_kid,
        after,
        limit,
    )
    return [WrappedKey(r["space_id"], r["master_kid"], bytes(r["wrapped"])) for r in rows]


async def rewrap(conn: Executor, old: WrappedKey, new: WrappedKey) -> bool:
    """Replace ``old`` by its re-wrapped ``new`` if it is still as read — a key destroyed
    (or re-wrapped by another run) meanwhile is left as it is. Whether it changed."""
    # One row per statement, by its space: on Citus each is routed to one shard (a rotation
    # is a background walk; its speed is not a request's).
    status = await conn.execute(
        """
        UPDATE space_keys SET master_kid = $2, wrapped = $3, rewrapped_at = now()
        WHERE space_id = $1 AND master_kid = $4 AND wrapped = $5
        """,
        new.space_id,
        new.master_kid,
        new.wrapped,
        old.master_kid,
        old.wrapped,
    )
    return bool(status == "UPDATE 1")

"""SQL of ``kith seed``: bulk, set-based inserts of generated people (users, spaces and
their synced records), one chunk of people per transaction.

Rows arrive fully formed (ids, JSON text, HLC, seq) and go in with ``COPY`` (asyncpg's
``copy_records_to_table``, binary protocol): no per-row statement, no merge, no lock — the
spaces are new, so nothing else can be writing to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.store.db import Connection, columns

__all__ = ["SEEDED_TABLES", "SeedUser", "SyncedRow", "existing_emails", "insert_chunk"]

#: The synced tables the seeder fills, in the order their rows get sequence numbers.
SEEDED_TABLES = ("settings", "contacts", "interactions", "reflections")

_RECORD_COLUMNS = ("space_id", "id", "fields", "clocks", "deleted", "deleted_hlc", "hlc", "seq")


@dataclass(frozen=True, slots=True)
class SeedUser:
    id: str
    space_id: str
    email: str
    password_hash: str
    display_name: str
    time_zone: str
    seq: int  # the space's counter: the highest seq among its rows


#: (space_id, id, fields JSON, clocks JSON, deleted, deleted_hlc, hlc, seq)
SyncedRow = tuple[str, str, str, str, bool, str, str, int]


async def existing_emails(conn: Connection, emails: Sequence[str]) -> list[str]:
    rows = await conn.fetch(
        "SELECT email FROM users WHERE lower(email) = ANY($1::text[])",
        [e.lower() for e in emails],
    )
    return [r["email"] for r in rows]


async def insert_chunk(
    conn: Connection, users: Sequence[SeedUser], rows: dict[str, list[SyncedRow]]
) -> None:
    """Insert the users, their spaces (counter already advanced) and their synced rows.
    Run it inside a transaction."""
    await conn.execute(
        """
        INSERT INTO users (id, email, password_hash, display_name, time_zone, space_id)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::text[])
        """,
        *columns(users, "id", "email", "password_hash", "display_name", "time_zone", "space_id"),
    )
    await conn.execute(
        """
        INSERT INTO spaces (id, owner_id, seq)
        SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
        """,
        *columns(users, "space_id", "id", "seq"),
    )
    for table in SEEDED_TABLES:
        records = rows.get(table)
        if records:
            await conn.copy_records_to_table(table, records=records, columns=_RECORD_COLUMNS)

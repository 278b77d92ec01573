"""SQL of the migration runner: numbered forward-only files under an advisory lock."""

from __future__ import annotations

from service.store.db import Connection

__all__ = ["applied_versions", "apply_migration", "migration_lock"]

# Any constant works; it only has to be the same in every process that migrates.
_LOCK_KEY = 0x6B697468  # "kith"


async def migration_lock(conn: Connection) -> None:
    """Block until this session holds the migration lock (released when it closes), so
    two processes starting at once never apply the same file twice."""
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    await conn.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


async def applied_versions(conn: Connection) -> set[int]:
    rows = await conn.fetch("SELECT version FROM schema_migrations")
    return {r["version"] for r in rows}


async def apply_migration(conn: Connection, version: int, name: str, sql: str) -> None:
    """Run one file and record it in the same transaction: all of it or none of it."""
    async with conn.transaction():
        await conn.execute(sql)
        await conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
        )

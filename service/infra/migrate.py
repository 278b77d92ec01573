"""Apply the numbered ``migrations/NNNN_name.sql`` files that a database has not seen."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from service.store import distribution
from service.store import migrations as store

__all__ = ["MIGRATIONS_DIR", "Migration", "discover", "migrate"]

_SERVICE = Path(__file__).resolve().parent.parent
_PACKAGED = _SERVICE / "_migrations"
MIGRATIONS_DIR = _PACKAGED if _PACKAGED.is_dir() else _SERVICE.parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError("two migration files share a version number")
    return found


async def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply pending migrations in order; return the versions applied now.

    On a database with the Citus extension, then place every table on the cluster
    (``service/store/distribution.py``): by space, reference or coordinator. That step is
    idempotent, so it also places the tables a new migration adds."""
    conn = await asyncpg.connect(dsn)
    try:
        await store.migration_lock(conn)
        done = await store.applied_versions(conn)
        applied = []
        for m in discover(directory):
            if m.version not in done:
                await store.apply_migration(conn, m.version, m.name, m.path.read_text())
                applied.append(m.version)
        if await distribution.citus_installed(conn):
            await distribution.distribute(conn)
        return applied
    finally:
        await conn.close()

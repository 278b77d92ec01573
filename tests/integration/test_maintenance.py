"""The daily maintenance job removes what has outlived its purpose — and nothing else."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import asyncpg
import httpx

from service.config import Settings
from service.jobs import Job, Kind
from service.sync import maintenance
from tests.helpers import new_id, push, register, stamp


async def test_maintenance_purges_only_what_expired(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any], database_url: str
) -> None:
    ana = await register(http)
    old, fresh = new_id("c"), new_id("c")
    for cid in (old, fresh):
        await push(
            http,
            ana,
            [
                {
                    "table": "contacts",
                    "id": cid,
                    "hlc": stamp(ana.device_id),
                    "fields": {"display_name": "X"},
                }
            ],
        )
        await push(
            http,
            ana,
            [
                {
                    "table": "contacts",
                    "id": cid,
                    "hlc": stamp(ana.device_id, offset_ms=1),
                    "deleted": True,
                }
            ],
        )
    space = await pool.fetchval("SELECT id FROM spaces WHERE owner_id = $1", ana.user_id)
    await pool.execute(
        "UPDATE contacts SET updated_at = now() - interval '400 days' "
        "WHERE space_id = $1 AND id = $2",
        space,
        old,
    )
    user_id = ana.user_id
    expired, live = secrets.token_bytes(32), secrets.token_bytes(32)
    await pool.execute(
        """
        INSERT INTO web_sessions (token_hash, user_id, csrf_token, expires_at)
        VALUES ($1, $3, 'c', now() - interval '1 hour'), ($2, $3, 'c', now() + interval '1 hour')
        """,
        expired,
        live,
        user_id,
    )
    stale_code, new_code = hashlib.sha256(b"stale").digest(), hashlib.sha256(b"new").digest()
    await pool.execute(
        """
        INSERT INTO care_invitations (code_hash, space_id, user_id, expires_at)
        VALUES ($1, $3, $4, now() - interval '10 days'), ($2, $3, $4, now() + interval '2 days')
        """,
        stale_code,
        new_code,
        space,
        user_id,
    )
    dead_old = await pool.fetchval(
        "INSERT INTO jobs (kind, state, updated_at) "
        "VALUES ('x', 'dead', now() - interval '40 days') RETURNING id"
    )
    dead_new = await pool.fetchval(
        "INSERT INTO jobs (kind, state) VALUES ('x', 'dead') RETURNING id"
    )

    run = maintenance.make_handler(pool, Settings().using(database_url=database_url))
    await run(Job(0, Kind.MAINTENANCE, None, {}, 1))

    contacts = {
        r["id"] for r in await pool.fetch("SELECT id FROM contacts WHERE space_id = $1", space)
    }
    assert contacts == {fresh}  # the tombstone past the 180-day horizon is gone
    assert await pool.fetchval("SELECT purged_seq > 0 FROM spaces WHERE id = $1", space)
    sessions = {
        r[0]
        for r in await pool.fetch("SELECT token_hash FROM web_sessions WHERE user_id = $1", user_id)
    }
    assert sessions == {live}
    codes = {
        r[0]
        for r in await pool.fetch(
            "SELECT code_hash FROM care_invitations WHERE space_id = $1", space
        )
    }
    assert codes == {new_code}
    jobs = {
        r[0]
        for r in await pool.fetch("SELECT id FROM jobs WHERE id = ANY($1)", [dead_old, dead_new])
    }
    assert jobs == {dead_new}
    await pool.execute("DELETE FROM jobs WHERE id = $1 OR kind = $2", dead_new, Kind.MAINTENANCE)

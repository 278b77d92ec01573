"""SQL of the caregiver web page's cookie sessions (only a hash of the cookie is stored)."""

from __future__ import annotations

import datetime as dt

from service.store.db import Executor

__all__ = ["delete_session", "insert_session", "purge_sessions", "session_user"]


async def insert_session(
    conn: Executor, token_hash: bytes, user_id: str, csrf_token: str, expires_at: dt.datetime
) -> None:
    await conn.execute(
        """
        INSERT INTO web_sessions (token_hash, user_id, csrf_token, expires_at)
        VALUES ($1, $2, $3, $4)
        """,
        token_hash,
        user_id,
        csrf_token,
        expires_at,
    )


async def session_user(conn: Executor, token_hash: bytes) -> tuple[str, str] | None:
    """(user id, CSRF token) of a live session."""
    row = await conn.fetchrow(
        "SELECT user_id, csrf_token FROM web_sessions WHERE token_hash = $1 AND expires_at > now()",
        token_hash,
    )
    return None if row is None else (row["user_id"], row["csrf_token"])


async def delete_session(conn: Executor, token_hash: bytes) -> None:
    await conn.execute("DELETE FROM web_sessions WHERE token_hash = $1", token_hash)


async def purge_sessions(conn: Executor, now: dt.datetime) -> int:
    """Expired web sessions (maintenance)."""
    result = await conn.execute("DELETE FROM web_sessions WHERE expires_at < $1", now)
    return int(result.split()[-1])

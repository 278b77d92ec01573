"""The PostgreSQL connection pool and the connection types the store functions take."""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

__all__ = ["CONNECT_TIMEOUT_S", "Connection", "Executor", "create_pool"]

#: A connection, bare or borrowed from the pool (use it for transactions).
Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
#: Anything that can run a single statement: a connection or the pool itself.
Executor: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any] | asyncpg.Pool[Any]"


async def _keep_session(_: asyncpg.Connection[Any]) -> None:
    """Nothing to reset: Kith never changes session state on a pooled connection (no SET,
    LISTEN, cursors or session advisory locks — its locks are transaction-scoped; the one
    session lock, the migrations', is taken on a connection of its own). asyncpg still
    rolls back a transaction left open. Its default reset would cost a round trip per
    release: measured at 16% of the push worker's time."""


#: How long opening one connection may take: a PostgreSQL that is down or unreachable is
#: answered as an outage (503) within seconds rather than holding requests for a minute.
CONNECT_TIMEOUT_S = 5.0


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool[Any]:
    """Open a pool. jsonb travels as text both ways: the service encodes and decodes it
    with msgspec (and passes pulled rows through without decoding them at all). With
    ``min_size=0`` it opens no connection until one is needed."""
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=CONNECT_TIMEOUT_S,
        command_timeout=60,
        server_settings={"application_name": "kith", "jit": "off"},
        reset=_keep_session,
    )

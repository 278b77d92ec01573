"""The PostgreSQL connection pool, the connection types the store functions take, and the
shapes their statements share."""

from __future__ import annotations

from collections.abc import Iterable
from operator import attrgetter
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

__all__ = [
    "CONNECT_TIMEOUT_S",
    "Connection",
    "Executor",
    "columns",
    "create_pool",
]

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


def columns(rows: Iterable[Any], *names: str) -> list[list[Any]]:
    """The arrays a many-row ``INSERT ... SELECT ... FROM unnest($1::text[], ...)`` takes:
    one list per attribute ``names`` (in order), one element per row — a whole batch in
    one statement and one round trip."""
    getters = [attrgetter(name) for name in names]
    rows = list(rows)
    return [[get(row) for row in rows] for get in getters]

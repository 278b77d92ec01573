"""Which exceptions mean "a server Kith depends on is unavailable", as opposed to a bug.

PostgreSQL refusing or dropping connections (stopped, restarting, shutting down, out of
connection slots, a network error on the way) and Redis unreachable are outages: the
request was fine and will succeed later, so clients get ``503 unavailable`` with
``Retry-After`` (``service/errors.py``), readiness reports it (``/health/ready``) and the
rules sweep stops a chunk instead of blaming each person in it. Everything else stays a
500 (a bug to fix), whatever its type.
"""

from __future__ import annotations

import asyncpg
import redis.exceptions

__all__ = ["RETRY_AFTER_S", "Dependency", "is_outage", "which"]

#: What a 503 tells clients to wait before retrying (seconds): a PostgreSQL restart or a
#: failover takes a few seconds; the reference client adds jitter and backs off further.
RETRY_AFTER_S = 2

Dependency = str  # "database" | "redis"

_DATABASE = (
    OSError,  # refused, reset, unreachable (ConnectionRefusedError, socket.gaierror, ...)
    asyncpg.PostgresConnectionError,  # class 08: the connection failed or was lost
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, starting up
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: no connection slots
)
_REDIS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def which(exc: BaseException) -> Dependency | None:
    """``"database"`` or ``"redis"`` if ``exc`` (or what it was raised from) says that
    server is unavailable, else None."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 5:
        if isinstance(current, _REDIS):
            return "redis"
        if isinstance(current, _DATABASE) or _closed_connection(current):
            return "database"
        if isinstance(current, TimeoutError) and _from_asyncpg(current):
            return "database"  # connecting timed out
        current = current.__cause__ or current.__context__
        seen += 1
    return None


def is_outage(exc: BaseException) -> bool:
    return which(exc) is not None


def _closed_connection(exc: BaseException) -> bool:
    # asyncpg says "connection is closed" / "pool is closing" with a bare InterfaceError,
    # which it also uses for misuse (a bug); only the first kind is an outage. A connection
    # the server dropped in the middle of a transaction is left in a state asyncpg refuses
    # to leave ("cannot switch to state …; another operation is in progress", an
    # InternalClientError): seen only while PostgreSQL restarts, so an outage too.
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        return "cannot switch to state" in str(exc)
    return isinstance(exc, asyncpg.InterfaceError) and (
        "closed" in str(exc) or "closing" in str(exc)
    )


def _from_asyncpg(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if "asyncpg" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False

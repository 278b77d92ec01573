"""Which exceptions are outages (503, retry later) and which are bugs (500): the answer a
device gets while PostgreSQL restarts depends on it."""

from __future__ import annotations

import asyncpg
import pytest
import redis.exceptions

from service.infra.outages import which


@pytest.mark.parametrize(
    ("exc", "dependency"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "database"),
        (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"), "database"),
        (asyncpg.exceptions.AdminShutdownError("terminating connection"), "database"),
        (
            asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
            "database",
        ),
        (asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients"), "database"),
        (asyncpg.InterfaceError("connection is closed"), "database"),
        # a connection the server dropped mid-transaction, seen during restarts
        (
            asyncpg.exceptions.InternalClientError(
                "cannot switch to state 15; another operation (2) is in progress"
            ),
            "database",
        ),
        (redis.exceptions.ConnectionError("Error 111 connecting"), "redis"),
        # bugs stay bugs
        (asyncpg.InterfaceError("cannot call Connection.fetch(): misuse"), None),
        (asyncpg.exceptions.InternalClientError("unexpected codec"), None),
        (asyncpg.exceptions.UndefinedTableError('relation "x" does not exist'), None),
        (ZeroDivisionError(), None),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_what_counts_as_an_outage(exc: BaseException, dependency: str | None) -> None:
    assert which(exc) == dependency


def test_an_outage_raised_from_inside_a_bug_is_still_an_outage() -> None:
    outer = RuntimeError("while refreshing a summary")
    outer.__cause__ = asyncpg.exceptions.AdminShutdownError("terminating connection")
    assert which(outer) == "database"

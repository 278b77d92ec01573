"""The no-change pull (cursor = the space's latest seq) is answered without PostgreSQL, and
is never stale: a pull made after another device's push returned always brings that push —
across API processes, and with Redis gone.

"Without PostgreSQL" is checked from the outside: the API under test reaches PostgreSQL
only through a TCP proxy that counts every byte the API sends it, so any query — the
session check included — would show.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import Account, login, new_id, pull_all, push, register, stamp
from tests.integration.realtime_support import (
    ApiInstance,
    TcpProxy,
    api_instance,
    proxied_url,
    refused_redis_url,
)


@pytest.fixture(scope="module")
def counted(
    server_env: dict[str, str], database_url: str
) -> Iterator[tuple[ApiInstance, TcpProxy]]:
    """An API process whose every PostgreSQL byte goes through a counting proxy."""
    upstream, at = proxied_url(database_url)
    with (
        TcpProxy(upstream) as proxy,
        api_instance("nochange-counted", server_env, DATABASE_URL=at(proxy.port)) as api,
    ):
        yield api, proxy


def _contact(account: Account) -> list[dict[str, Any]]:
    return [
        {
            "table": "contacts",
            "id": new_id("contact"),
            "hlc": stamp(account.device_id),
            "fields": {"display_name": "Sam"},
        }
    ]


async def _pull(http: httpx.AsyncClient, account: Account, cursor: str) -> dict[str, Any]:
    r = await http.post(
        "/v1/sync/pull", headers=account.headers, json={"schema_version": 1, "cursor": cursor}
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _settled(http: httpx.AsyncClient, account: Account, cursor: str, proxy: TcpProxy) -> None:
    """Wait (≤ 10 s) until a no-change pull leaves PostgreSQL alone: a process trusts Redis
    a few seconds after subscribing, and learns a space on its first pull."""
    deadline = time.monotonic() + 10
    while True:
        before = proxy.sent_upstream
        await _pull(http, account, cursor)
        if proxy.sent_upstream == before:
            return
        assert time.monotonic() < deadline, "no-change pulls kept querying PostgreSQL"
        await asyncio.sleep(0.2)


async def test_a_no_change_pull_sends_nothing_to_postgresql(
    counted: tuple[ApiInstance, TcpProxy],
) -> None:
    api, proxy = counted
    async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as http:
        ana = await register(http)
        await push(http, ana, _contact(ana))
        _, cursor = await pull_all(http, ana)
        await _settled(http, ana, cursor, proxy)

        before = proxy.sent_upstream
        for _ in range(50):
            body = await _pull(http, ana, cursor)
            assert (body["changes"], body["cursor"], body["has_more"]) == ([], cursor, False)
            assert body["reset"] is False
        assert proxy.sent_upstream == before, "a no-change pull queried PostgreSQL"

        # The proxy does see real work: a change is pulled from the database.
        tablet = await login(http, ana.email, new_id("tablet"))
        changes = _contact(tablet)
        await push(http, tablet, changes)
        body = await _pull(http, ana, cursor)
        assert [c["id"] for c in body["changes"]] == [changes[0]["id"]]
        assert proxy.sent_upstream > before


async def _round_trips(
    writer_http: httpx.AsyncClient,
    reader_http: httpx.AsyncClient,
    rounds: int,
) -> list[tuple[int, list[str], list[str]]]:
    """``rounds`` times: the phone pushes through one process; as soon as that answers,
    the tablet pulls through the other with its last cursor. Returns, per round, what the
    tablet should have received and what it did (ids), for the test to compare."""
    phone = await register(writer_http)
    tablet = await login(writer_http, phone.email, new_id("tablet"))
    _, cursor = await pull_all(reader_http, tablet)
    seen: list[tuple[int, list[str], list[str]]] = []
    for i in range(rounds):
        writer, reader = (writer_http, reader_http) if i % 2 == 0 else (reader_http, writer_http)
        if i % 3 == 0:  # and sometimes a no-change pull first, so the reader knows the space
            seen.append(
                (i, [], [c["id"] for c in (await _pull(reader, tablet, cursor))["changes"]])
            )
        changes = _contact(phone)
        await push(writer, phone, changes)
        body = await _pull(reader, tablet, cursor)
        seen.append((i, [changes[0]["id"]], [c["id"] for c in body["changes"]]))
        cursor = body["cursor"]
    return seen


def _stale(seen: list[tuple[int, list[str], list[str]]]) -> list[int]:
    """The rounds whose pull did not bring exactly what had been pushed before it."""
    return [i for i, expected, got in seen if got != expected]


async def test_a_pull_after_another_devices_push_is_never_stale(
    live_server: str, counted: tuple[ApiInstance, TcpProxy]
) -> None:
    api, _ = counted
    async with (
        httpx.AsyncClient(base_url=live_server, timeout=30) as one,
        httpx.AsyncClient(base_url=api.base_url, timeout=30) as other,
    ):
        same_process = await _round_trips(one, one, rounds=20)
        across = await _round_trips(one, other, rounds=40)  # both directions
    assert _stale(same_process) == []
    assert _stale(across) == []
    assert sum(1 for _, expected, _ in across if expected) == 40  # every push was checked


async def test_without_redis_pulls_use_postgresql_and_are_never_stale(
    server_env: dict[str, str],
) -> None:
    nowhere = refused_redis_url()
    with (
        api_instance("nochange-no-redis-1", server_env, REDIS_URL=nowhere) as first,
        api_instance("nochange-no-redis-2", server_env, REDIS_URL=nowhere) as second,
    ):
        async with (
            httpx.AsyncClient(base_url=first.base_url, timeout=30) as one,
            httpx.AsyncClient(base_url=second.base_url, timeout=30) as other,
        ):
            seen = await _round_trips(one, other, rounds=20)
            ready = (await one.get("/health/ready")).json()
    assert _stale(seen) == []
    assert sum(1 for _, expected, _ in seen if expected) == 20
    assert ready["status"] == "degraded"  # it really ran without Redis


async def test_a_session_signed_out_on_one_process_is_refused_by_another_within_a_second(
    live_server: str, counted: tuple[ApiInstance, TcpProxy]
) -> None:
    """The session cache's bound: the sign-out reaches the other processes over Redis."""
    api, _ = counted
    async with (
        httpx.AsyncClient(base_url=live_server, timeout=30) as one,
        httpx.AsyncClient(base_url=api.base_url, timeout=30) as other,
    ):
        ana = await register(one)
        _, cursor = await pull_all(other, ana)
        await _pull(other, ana, cursor)  # cached as live over there
        assert (await one.post("/v1/auth/logout", headers=ana.headers)).status_code == 204
        deadline = time.monotonic() + 1.0
        while True:
            r = await other.post(
                "/v1/sync/pull",
                headers=ana.headers,
                json={"schema_version": 1, "cursor": cursor},
            )
            if r.status_code == 401:
                assert r.json()["code"] == "session_revoked"
                return
            assert time.monotonic() < deadline, "still accepted a second after signing out"

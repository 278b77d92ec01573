"""``GET /v1/sync/events``: a device is poked within a second of any change to its space,
from any API process; reconnecting never misses a change; a signed-out session's stream
ends; Redis going away is announced and its return catches up; shutdown says "retry"."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
import signal
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from service.sync.realtime import ChangeNotifier
from service.sync.service import SyncService
from sync.hlc import Clock
from tests.helpers import Account, login, new_id, push, register, stamp
from tests.integration.realtime_support import (
    ApiInstance,
    SseReader,
    TcpProxy,
    api_instance,
    proxied_url,
)

POKE_WITHIN_S = 1.0


def _contact(account: Account, name: str = "Sam") -> list[dict[str, Any]]:
    return [
        {
            "table": "contacts",
            "id": new_id("contact"),
            "hlc": stamp(account.device_id),
            "fields": {"display_name": name},
        }
    ]


@contextlib.asynccontextmanager
async def open_stream(
    base_url: str,
    account: Account,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    token_in_query: bool = False,
) -> AsyncIterator[SseReader]:
    sent_headers = dict(headers or {})
    sent_params = dict(params or {})
    if token_in_query:
        sent_params["access_token"] = account.access_token
    else:
        sent_headers.update(account.headers)
    timeout = httpx.Timeout(10, read=None)
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=timeout) as client,
        client.stream("GET", "/v1/sync/events", headers=sent_headers, params=sent_params) as r,
    ):
        assert r.status_code == 200, (await r.aread()).decode()
        assert r.headers["content-type"].startswith("text/event-stream")
        reader = SseReader(r)
        first = await reader.next()
        assert first is not None
        assert first.event == "status", first
        assert first.json() == {"realtime": True}, first
        assert first.retry == 2000
        yield reader


async def _expect_no_event(reader: SseReader, kind: str, within_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        event = await reader.until(kind, within_s=within_s)
        raise AssertionError(f"unexpected {kind} event: {event}")


@pytest.fixture(scope="module")
def fast_heartbeat(server_env: dict[str, str]) -> Iterator[ApiInstance]:
    """A second API process (same database and Redis) whose streams beat every second."""
    with api_instance("events-fast-heartbeat", server_env, KITH_SSE_HEARTBEAT_S="1") as api:
        yield api


# -- pokes ----------------------------------------------------------------------------------


async def test_a_device_is_poked_within_a_second_of_another_devices_push(
    http: httpx.AsyncClient, live_server: str
) -> None:
    phone = await register(http)
    tablet = await login(http, phone.email, new_id("tablet"))
    async with open_stream(live_server, tablet) as stream:
        pushed_at = time.monotonic()
        result = await push(http, phone, _contact(phone))
        change = await stream.until("change", within_s=POKE_WITHIN_S)
        assert time.monotonic() - pushed_at < POKE_WITHIN_S
        assert change.json() == {"seq": result["seq"]}
        assert change.id == str(result["seq"])  # what EventSource sends back on reconnect


async def test_every_api_process_pokes_its_own_streams(
    http: httpx.AsyncClient, live_server: str, fast_heartbeat: ApiInstance
) -> None:
    phone = await register(http)
    tablet = await login(http, phone.email, new_id("tablet"))
    async with (
        open_stream(live_server, tablet) as here,
        open_stream(fast_heartbeat.base_url, tablet) as there,
        httpx.AsyncClient(base_url=fast_heartbeat.base_url, timeout=30) as other,
    ):
        result = await push(other, phone, _contact(phone))  # pushed to the other process
        for stream in (here, there):
            change = await stream.until("change", within_s=POKE_WITHIN_S)
            assert change.json() == {"seq": result["seq"]}


async def test_several_workers_behind_one_port_all_deliver(
    http: httpx.AsyncClient, server_env: dict[str, str]
) -> None:
    phone = await register(http)
    tablet = await login(http, phone.email, new_id("tablet"))
    with api_instance("events-two-workers", server_env, KITH_WORKERS="2") as api:
        async with contextlib.AsyncExitStack() as streams:
            readers = [
                await streams.enter_async_context(open_stream(api.base_url, tablet))
                for _ in range(6)
            ]
            result = await push(http, phone, _contact(phone))
            seqs = await asyncio.gather(
                *(r.until("change", within_s=POKE_WITHIN_S) for r in readers)
            )
        assert {e.json()["seq"] for e in seqs} == {result["seq"]}


async def test_server_writes_poke_the_devices_too(
    http: httpx.AsyncClient, live_server: str, database_url: str, redis_url: str
) -> None:
    """A server write (a nudge's snooze, an insight's status, a care summary) goes through
    ``SyncService.server_write``, which announces and publishes like a push."""
    phone = await register(http)
    changes = _contact(phone)
    pushed = await push(http, phone, changes)
    space_id = await _space_of(database_url, phone)
    client = aioredis.Redis.from_url(redis_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        notifier = ChangeNotifier(client)
        service = SyncService(
            pool,
            Clock(f"srv-{secrets.token_hex(4)}"),
            max_skew_ms=300_000,
            publish=notifier.publish,
            announce=notifier.announce,
        )
        async with open_stream(live_server, phone) as stream:
            snooze = (dt.date.today() + dt.timedelta(days=7)).isoformat()
            written = await service.server_write(
                space_id, "contacts", changes[0]["id"], {"snoozed_until": snooze}
            )
            assert written
            change = await stream.until("change", within_s=POKE_WITHIN_S)
            assert change.json()["seq"] == pushed["seq"] + 1
    finally:
        await pool.close()
        await client.aclose()


async def _space_of(database_url: str, account: Account) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        return str(
            await conn.fetchval("SELECT id FROM spaces WHERE owner_id = $1", account.user_id)
        )
    finally:
        await conn.close()


# -- reconnecting ---------------------------------------------------------------------------


async def test_a_reconnecting_device_is_poked_at_once_if_it_missed_a_change(
    http: httpx.AsyncClient, live_server: str
) -> None:
    phone = await register(http)
    tablet = await login(http, phone.email, new_id("tablet"))
    async with open_stream(live_server, tablet) as stream:
        first = await push(http, phone, _contact(phone, "Ana"))
        seen = await stream.until("change", within_s=POKE_WITHIN_S)
    missed = await push(http, phone, _contact(phone, "Bea"))  # while the tablet is away
    assert seen.id is not None
    async with open_stream(live_server, tablet, headers={"Last-Event-ID": seen.id}) as stream:
        change = await stream.until("change", within_s=POKE_WITHIN_S)
        assert change.json() == {"seq": missed["seq"]}
    async with open_stream(live_server, tablet, params={"since": str(first["seq"])}) as stream:
        change = await stream.until("change", within_s=POKE_WITHIN_S)
        assert change.json() == {"seq": missed["seq"]}
    # Up to date: no poke.
    async with open_stream(live_server, tablet, params={"since": str(missed["seq"])}) as stream:
        await _expect_no_event(stream, "change", within_s=0.5)


# -- authentication -------------------------------------------------------------------------


async def test_the_stream_needs_a_live_session(http: httpx.AsyncClient, live_server: str) -> None:
    phone = await register(http)
    r = await http.get("/v1/sync/events")
    assert r.status_code == 401
    r = await http.get("/v1/sync/events", params={"access_token": "not-a-token"})
    assert r.status_code == 401
    assert r.json()["code"] == "invalid_token"
    assert (await http.post("/v1/auth/logout", headers=phone.headers)).status_code == 204
    r = await http.get("/v1/sync/events", params={"access_token": phone.access_token})
    assert r.status_code == 401
    assert r.json()["code"] == "session_revoked"


async def test_a_browser_can_pass_the_token_in_the_query_and_it_is_never_logged(
    http: httpx.AsyncClient, fast_heartbeat: ApiInstance
) -> None:
    phone = await register(http)
    forged = phone.access_token[:-6] + "AAAAAA"
    async with (
        httpx.AsyncClient(base_url=fast_heartbeat.base_url, timeout=30) as there,
        open_stream(fast_heartbeat.base_url, phone, token_in_query=True) as stream,
    ):
        r = await there.get("/v1/sync/events", params={"access_token": forged})
        assert r.status_code == 401
        result = await push(there, phone, _contact(phone))
        change = await stream.until("change", within_s=POKE_WITHIN_S)
        assert change.json() == {"seq": result["seq"]}
    await asyncio.sleep(0.5)  # the access line of the stream is written when it ends
    log = fast_heartbeat.log_text()
    assert "/v1/sync/events" in log
    for secret in (phone.access_token, forged, phone.access_token.split(".")[2]):
        assert secret not in log


# -- sessions ending ------------------------------------------------------------------------


async def test_logging_out_ends_the_devices_stream_at_once(
    http: httpx.AsyncClient, live_server: str
) -> None:
    phone = await register(http)
    async with open_stream(live_server, phone) as stream:
        assert (await http.post("/v1/auth/logout", headers=phone.headers)).status_code == 204
        end = await stream.until("end", within_s=POKE_WITHIN_S)
        assert end.json() == {"reason": "session_revoked"}
        assert await stream.next() is None  # and the stream is over


async def test_removing_a_device_from_another_process_ends_its_stream(
    http: httpx.AsyncClient, live_server: str, fast_heartbeat: ApiInstance
) -> None:
    phone = await register(http)
    tablet = await login(http, phone.email, new_id("tablet"))
    async with (
        open_stream(live_server, tablet) as stream,
        httpx.AsyncClient(base_url=fast_heartbeat.base_url, timeout=30) as other,
    ):
        r = await other.delete(f"/v1/devices/{tablet.device_id}", headers=phone.headers)
        assert r.status_code == 204
        end = await stream.until("end", within_s=POKE_WITHIN_S)
        assert end.json() == {"reason": "session_revoked"}
    r = await http.get("/v1/devices", headers=tablet.headers)
    assert r.status_code == 401


async def test_a_revocation_nobody_announced_ends_the_stream_on_the_next_heartbeat(
    http: httpx.AsyncClient, fast_heartbeat: ApiInstance, db: asyncpg.Connection
) -> None:
    """Written straight to PostgreSQL (as if the revoking process could not reach Redis):
    the heartbeat's session check still ends the stream."""
    phone = await register(http)
    async with open_stream(fast_heartbeat.base_url, phone) as stream:
        beat = await stream.next(within_s=3)
        assert beat is not None
        assert beat.comments == ["keep-alive"]
        await db.execute(
            "UPDATE token_families SET revoked_at = now(), revoked_reason = 'test' "
            "WHERE user_id = $1",
            phone.user_id,
        )
        end = await stream.until("end", within_s=3)
        assert end.json() == {"reason": "session_revoked"}


# -- Redis going away -----------------------------------------------------------------------


async def test_without_redis_the_stream_says_so_and_catches_up_when_it_returns(
    http: httpx.AsyncClient, server_env: dict[str, str], redis_url: str
) -> None:
    phone = await register(http)
    upstream, at = proxied_url(redis_url)
    with (
        TcpProxy(upstream) as proxy,
        api_instance(
            "events-redis-proxy",
            server_env,
            REDIS_URL=at(proxy.port),
            KITH_SSE_HEARTBEAT_S="1",
        ) as api,
    ):
        async with (
            httpx.AsyncClient(base_url=api.base_url, timeout=30) as there,
            open_stream(api.base_url, phone) as stream,
        ):
            proxy.cut()
            status = await stream.until("status", within_s=3)
            assert status.json() == {"realtime": False}
            # Sync keeps working, and the stream keeps beating.
            result = await push(there, phone, _contact(phone))
            r = await there.post(
                "/v1/sync/pull",
                headers=phone.headers,
                json={"schema_version": 1, "cursor": None},
            )
            assert r.status_code == 200
            beat = await stream.next(within_s=3)
            assert beat is not None
            assert beat.comments == ["keep-alive"]
            proxy.restore()
            status = await stream.until("status", within_s=5)
            assert status.json() == {"realtime": True}
            change = await stream.until("change", within_s=3)
            assert change.json() == {"seq": result["seq"]}  # the change made while away


# -- shutdown -------------------------------------------------------------------------------


async def test_shutdown_closes_streams_with_a_retry_hint(
    http: httpx.AsyncClient, server_env: dict[str, str]
) -> None:
    phone = await register(http)
    with api_instance("events-shutdown", server_env) as api:
        async with open_stream(api.base_url, phone) as stream:
            api.process.send_signal(signal.SIGTERM)
            last = await stream.next(within_s=10)
            assert last is not None
            assert last.retry == 2000
            assert await stream.next(within_s=10) is None
        assert await asyncio.to_thread(api.process.wait, 20) == 0

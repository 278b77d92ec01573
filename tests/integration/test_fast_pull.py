"""The no-change pull answered in front of Litestar (``service/http/fastpath.py``) gives exactly
the answer the full path gives — and every request it is not sure about reaches Litestar
unchanged, body included.

Each request below is sent twice to one running app (real PostgreSQL and Redis): once
through the stack the server runs (``service.app.served``: rate limits, ``FastPull``) and
once straight to Litestar. A counting wrapper shows which ones the fast path answered
itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar

from service.app import create_app, served
from service.config import Settings
from service.infra.logs import ObservedApp
from sync.cursor import encode_cursor
from tests.helpers import Account, new_id, pull_all, push, register, stamp

Message = MutableMapping[str, Any]


@dataclass
class Counted:
    """Litestar, counting the requests that reach it."""

    app: Litestar
    calls: int = 0

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.calls += 1
        await self.app(scope, receive, send)  # type: ignore[arg-type]


@asynccontextmanager
async def _running(app: Litestar) -> AsyncIterator[None]:
    """Run the app's ASGI lifespan (pool, Redis, the realtime subscription)."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()

    async def receive() -> Message:
        return await inbox.get()

    async def send(message: Message) -> None:
        await outbox.put(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, receive, send))  # type: ignore[arg-type]
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    assert started["type"] == "lifespan.startup.complete", started
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


@dataclass
class Rig:
    fast: httpx.AsyncClient
    full: httpx.AsyncClient
    litestar: Counted
    account: Account
    cursor: str


@dataclass
class Apps:
    fast: httpx.AsyncClient
    full: httpx.AsyncClient
    litestar: Counted


@pytest.fixture(scope="module")
async def apps(server_env: dict[str, str]) -> AsyncIterator[Apps]:
    app = create_app(Settings.from_env(server_env))
    counted = Counted(app)
    fast_app = served(app, inner=counted)  # as app_from_env serves it
    full_app = ObservedApp(app)  # Litestar alone
    async with (
        _running(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=fast_app), base_url="http://k") as fast,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=full_app), base_url="http://k") as full,
    ):
        yield Apps(fast, full, counted)


@pytest.fixture
async def rig(apps: Apps) -> Rig:
    """A new person with one contact, pulled up to date; the fast path knows them."""
    account = await register(apps.full)
    await push(apps.full, account, [_contact(account)])
    _, cursor = await pull_all(apps.full, account)
    rig = Rig(apps.fast, apps.full, apps.litestar, account, cursor)
    await _until_fast(rig)
    return rig


def _contact(account: Account) -> dict[str, Any]:
    return {
        "table": "contacts",
        "id": new_id("contact"),
        "hlc": stamp(account.device_id),
        "fields": {"display_name": "Sam"},
    }


async def _until_fast(rig: Rig) -> None:
    """The process trusts its seq memory shortly after subscribing to Redis; wait for it."""
    for _ in range(100):
        before = rig.litestar.calls
        r = await rig.fast.post("/v1/sync/pull", headers=rig.account.headers, json=_body(rig))
        assert r.status_code == 200, r.text
        if rig.litestar.calls == before:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the fast path never answered a no-change pull")


def _body(rig: Rig, **overrides: Any) -> dict[str, Any]:
    return {"schema_version": 1, "cursor": rig.cursor} | overrides


def _comparable(r: httpx.Response) -> tuple[int, str, Any]:
    """Status, content type and body, without what differs between any two answers."""
    body = r.json()
    if isinstance(body, dict):
        body.pop("server_hlc", None)
    return r.status_code, r.headers["content-type"], body


async def _both(
    rig: Rig, send: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]
) -> tuple[httpx.Response, httpx.Response, bool]:
    """The fast and the full answer, and whether the fast path answered by itself."""
    before = rig.litestar.calls
    fast = await send(rig.fast)
    answered_here = rig.litestar.calls == before
    full = await send(rig.full)
    return fast, full, answered_here


async def test_a_no_change_pull_is_answered_in_front_of_litestar_with_the_same_answer(
    rig: Rig,
) -> None:
    for body in (_body(rig), _body(rig, limit=10)):

        def send(c: httpx.AsyncClient, b: dict[str, Any] = body) -> Awaitable[httpx.Response]:
            return c.post("/v1/sync/pull", headers=rig.account.headers, json=b)

        fast, full, answered_here = await _both(rig, send)
        assert answered_here
        assert _comparable(fast) == _comparable(full)
        assert fast.json()["cursor"] == rig.cursor
        assert fast.json()["changes"] == []
        assert fast.json()["server_hlc"] > ""
        assert fast.headers["x-request-id"]
        assert fast.headers["content-length"] == str(len(fast.content))


async def test_a_pull_with_something_new_goes_to_litestar_and_gets_the_change(rig: Rig) -> None:
    change = _contact(rig.account)
    await push(rig.full, rig.account, [change])
    fast, full, answered_here = await _both(
        rig, lambda c: c.post("/v1/sync/pull", headers=rig.account.headers, json=_body(rig))
    )
    assert not answered_here
    assert _comparable(fast) == _comparable(full)
    assert [c["id"] for c in fast.json()["changes"]] == [change["id"]]


BAD_REQUESTS: list[tuple[str, dict[str, str] | None, bytes | None, int]] = [
    ("no token", {}, None, 401),
    ("not a bearer token", {"Authorization": "Basic a2l0aDpraXRo"}, None, 401),
    ("a forged token", {"Authorization": "Bearer eyJhbGciOiJFZERTQSJ9.e30.AAAA"}, None, 401),
    ("not JSON", None, b"{cursor", 400),
    ("an unknown field", None, b'{"schema_version":1,"cursor":"%s","since":1}', 422),
    ("an unsupported schema version", None, b'{"schema_version":99,"cursor":"%s"}', 426),
    ("a cursor this server never issued", None, b'{"schema_version":1,"cursor":"bm9wZQ"}', 400),
    ("a limit of zero", None, b'{"schema_version":1,"cursor":"%s","limit":0}', 422),
    ("a cursor of the wrong type", None, b'{"schema_version":1,"cursor":7}', 422),
]


@pytest.mark.parametrize(("case", "headers", "raw", "status"), BAD_REQUESTS, ids=lambda v: v)
async def test_every_request_it_is_unsure_of_gets_litestars_answer(
    rig: Rig, case: str, headers: dict[str, str] | None, raw: bytes | None, status: int
) -> None:
    sent_headers = {"Content-Type": "application/json"} | (
        rig.account.headers if headers is None else headers
    )
    content = (raw or json.dumps(_body(rig)).encode()).replace(b"%s", rig.cursor.encode())
    fast, full, answered_here = await _both(
        rig, lambda c: c.post("/v1/sync/pull", headers=sent_headers, content=content)
    )
    assert not answered_here, case
    assert fast.status_code == status, (case, fast.text)
    assert _comparable(fast) == _comparable(full), case


async def test_a_body_sent_in_pieces_or_too_large_for_the_fast_path_is_still_answered(
    rig: Rig,
) -> None:
    body = json.dumps(_body(rig)).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 7):
            yield body[i : i + 7]

    r = await rig.fast.post("/v1/sync/pull", headers=rig.account.headers, content=pieces())
    assert r.status_code == 200
    assert r.json()["cursor"] == rig.cursor

    # Over the fast path's 1 KiB: JSON whitespace makes it long but no less valid.
    padded = json.dumps(_body(rig), indent=600).encode()
    assert len(padded) > 1024
    fast, full, answered_here = await _both(
        rig,
        lambda c: c.post(
            "/v1/sync/pull",
            headers=rig.account.headers | {"Content-Type": "application/json"},
            content=padded,
        ),
    )
    assert not answered_here
    assert _comparable(fast) == _comparable(full)
    assert fast.status_code == 200


async def test_a_signed_out_session_is_refused_not_answered_from_memory(rig: Rig) -> None:
    r = await rig.full.post("/v1/auth/logout", headers=rig.account.headers)
    assert r.status_code == 204, r.text
    fast, full, answered_here = await _both(
        rig, lambda c: c.post("/v1/sync/pull", headers=rig.account.headers, json=_body(rig))
    )
    assert not answered_here
    assert fast.status_code == full.status_code == 401
    assert fast.json()["code"] == full.json()["code"] == "session_revoked"


async def test_other_routes_pass_through_untouched(rig: Rig) -> None:
    fast, full, answered_here = await _both(rig, lambda c: c.get("/health/live"))
    assert not answered_here
    assert (fast.status_code, fast.json()) == (full.status_code, full.json()) == (200, fast.json())
    r = await rig.fast.get("/v1/sync/pull", headers=rig.account.headers)
    assert r.status_code == 405


async def test_a_request_it_counted_and_passed_on_is_not_counted_twice(
    server_env: dict[str, str],
) -> None:
    limit = 4
    env = server_env | {"KITH_RATELIMIT_SYNC_PER_USER": str(limit)}
    app = create_app(Settings.from_env(env))
    counted = Counted(app)
    transport = httpx.ASGITransport(app=served(app, inner=counted))
    async with _running(app), httpx.AsyncClient(transport=transport, base_url="http://k") as http:
        account = await register(http)  # registering is not a sync request

        async def pull(cursor: str | None) -> httpx.Response:
            body = {"schema_version": 1, "cursor": cursor}
            return await http.post("/v1/sync/pull", headers=account.headers, json=body)

        first = await pull(None)
        assert first.status_code == 200, first.text
        # From the start again: each of these is counted against the limit in front of the
        # app and then answered by Litestar (the cursor is behind the space).
        statuses, passed_on = [first.status_code], 0
        for _ in range(limit - 1):
            calls = counted.calls
            r = await pull(encode_cursor(0))
            statuses.append(r.status_code)
            passed_on += counted.calls - calls
        assert statuses == [200] * limit  # counted twice, the fourth would be refused
        assert passed_on == limit - 1
        r = await pull(first.json()["cursor"])
        assert r.status_code == 429, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "rate_limited"
        assert int(r.headers["retry-after"]) >= 1


async def test_a_session_revoked_unheard_is_refused_as_soon_as_a_pull_reads_data(
    rig: Rig, database_url: str
) -> None:
    """If this process never hears of a revocation (the Redis message lost), its cache
    still says "live" — enough to answer "nothing new" (the documented bound), never enough
    to hand out data: the page query confirms the session in the same round trip."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE token_families SET revoked_at = now() WHERE user_id = $1 AND device_id = $2",
            rig.account.user_id,
            rig.account.device_id,
        )
    finally:
        await conn.close()
    unchanged = await rig.fast.post("/v1/sync/pull", headers=rig.account.headers, json=_body(rig))
    assert unchanged.status_code == 200
    assert unchanged.json()["changes"] == []
    from_start = await rig.fast.post(
        "/v1/sync/pull", headers=rig.account.headers, json=_body(rig, cursor=None)
    )
    assert from_start.status_code == 401, from_start.text
    assert from_start.json()["code"] == "session_revoked"
    assert "Sam" not in from_start.text
    # And the cache has let go of it: the no-change pull is refused now too.
    again = await rig.fast.post("/v1/sync/pull", headers=rig.account.headers, json=_body(rig))
    assert again.status_code == 401

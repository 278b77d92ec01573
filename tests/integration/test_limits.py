"""Rate limits across API processes, the client address behind proxies, failing open.

Two API processes share one Redis and small limits, so a limit that holds only inside one
process fails here. Each test counts against its own client address — an
``X-Forwarded-For`` address (believed from 127.0.0.1, the configured trusted proxy) or a
loopback address of its own (127.x.y.z, not trusted) — so tests never share a counter,
not even with an earlier run inside the same window.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from tests.conftest import ApiProcess
from tests.helpers import PASSWORD, expect_problem, new_id

WINDOW_S = 4
LOGIN_PER_IP = 5
LOGIN_PER_EMAIL = 3
REGISTER_PER_IP = 3
SYNC_PER_USER = 8
MAX_BODY = 65_536


@pytest.fixture(scope="module")
def limited(api_process: Callable[..., ApiProcess]) -> Iterator[tuple[str, str]]:
    """Two API processes with small limits, trusting 127.0.0.1 as their proxy."""
    settings = {
        "KITH_RATELIMIT_WINDOW_S": str(WINDOW_S),
        "KITH_RATELIMIT_LOGIN_PER_IP": str(LOGIN_PER_IP),
        "KITH_RATELIMIT_LOGIN_PER_EMAIL": str(LOGIN_PER_EMAIL),
        "KITH_RATELIMIT_REGISTER_PER_IP": str(REGISTER_PER_IP),
        "KITH_RATELIMIT_REFRESH_PER_IP": "100",
        "KITH_RATELIMIT_SYNC_PER_USER": str(SYNC_PER_USER),
        "KITH_TRUSTED_PROXIES": "127.0.0.1",
        "KITH_MAX_BODY_BYTES": str(MAX_BODY),
    }
    a = api_process("limits-api-a", **settings)
    b = api_process("limits-api-b", **settings)
    a.wait_ready()
    b.wait_ready()
    yield a.base, b.base
    a.stop()
    b.stop()


@pytest.fixture
async def clients(limited: tuple[str, str]) -> AsyncIterator[list[httpx.AsyncClient]]:
    async with (
        httpx.AsyncClient(base_url=limited[0], timeout=10) as a,
        httpx.AsyncClient(base_url=limited[1], timeout=10) as b,
    ):
        yield [a, b]


def _forwarded() -> dict[str, str]:
    """A client address of this test's own, as a trusted proxy reports it."""
    return {"X-Forwarded-For": f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.7"}


def _loopback() -> str:
    """A loopback source address of this test's own (127.0.0.1 is the trusted proxy)."""
    return f"127.{1 + secrets.randbelow(250)}.{secrets.randbelow(256)}.{1 + secrets.randbelow(250)}"


def _login_body(email: str, password: str = PASSWORD) -> dict[str, Any]:
    device = {"id": new_id("dev"), "platform": "ios", "name": "limits"}
    return {"email": email, "password": password, "device": device}


async def _register(
    http: httpx.AsyncClient, headers: dict[str, str], email: str | None = None
) -> httpx.Response:
    body = {
        **_login_body(email or f"{new_id('lim')}@example.org"),
        "display_name": "Limits",
        "time_zone": "UTC",
    }
    return await http.post("/v1/auth/register", json=body, headers=headers)


def _expect_429(r: httpx.Response) -> int:
    expect_problem(r, 429, "rate_limited")
    retry_after = int(r.headers["retry-after"])
    assert 1 <= retry_after <= WINDOW_S, r.headers
    return retry_after


async def test_logins_from_one_address_are_refused_after_the_limit_across_two_processes(
    clients: list[httpx.AsyncClient],
) -> None:
    address = _forwarded()
    # The router treats a trailing slash as the same route: so does the counter.
    spellings = ("/v1/auth/login", "/v1/auth/login/")
    for i in range(LOGIN_PER_IP):
        # Unknown accounts, so only the per-address counter can be reached; the two
        # processes take turns, so only a shared counter stops the sixth.
        body = _login_body(f"{new_id('nobody')}@example.org")
        r = await clients[i % 2].post(spellings[i % 2], json=body, headers=address)
        expect_problem(r, 401)
    body = _login_body(f"{new_id('nobody')}@example.org")
    for path in spellings:
        _expect_429(await clients[LOGIN_PER_IP % 2].post(path, json=body, headers=address))
    # Another address is not affected.
    r = await clients[0].post("/v1/auth/login", json=body, headers=_forwarded())
    expect_problem(r, 401)


async def test_guessing_one_accounts_password_is_limited_from_any_address_and_resets(
    clients: list[httpx.AsyncClient],
) -> None:
    email = f"{new_id('victim')}@example.org"
    assert (await _register(clients[0], _forwarded(), email)).status_code == 201
    for i in range(LOGIN_PER_EMAIL):
        wrong = _login_body(email, password=f"guess-{i}")
        expect_problem(
            await clients[i % 2].post("/v1/auth/login", json=wrong, headers=_forwarded()), 401
        )
    right = _login_body(email)
    retry_after = _expect_429(
        await clients[1].post("/v1/auth/login", json=right, headers=_forwarded())
    )
    # The window ends: the right password works again (from yet another address).
    await asyncio.sleep(retry_after + 0.3)
    r = await clients[0].post("/v1/auth/login", json=right, headers=_forwarded())
    assert r.status_code == 200, r.text


async def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(
    limited: tuple[str, str],
) -> None:
    transport = httpx.AsyncHTTPTransport(local_address=_loopback())
    async with httpx.AsyncClient(base_url=limited[0], transport=transport, timeout=10) as http:
        for _ in range(LOGIN_PER_IP):
            body = _login_body(f"{new_id('nobody')}@example.org")
            # A different forwarded address every time: believed, it would dodge the limit.
            r = await http.post("/v1/auth/login", json=body, headers=_forwarded())
            expect_problem(r, 401)
        body = _login_body(f"{new_id('nobody')}@example.org")
        _expect_429(await http.post("/v1/auth/login", json=body, headers=_forwarded()))


async def test_registrations_are_limited_per_address(clients: list[httpx.AsyncClient]) -> None:
    address = _forwarded()
    for i in range(REGISTER_PER_IP):
        assert (await _register(clients[i % 2], address)).status_code == 201
    _expect_429(await _register(clients[0], address))


async def test_sync_is_limited_per_user_and_not_per_device_or_process(
    clients: list[httpx.AsyncClient],
) -> None:
    r = await _register(clients[0], _forwarded())
    ana = r.json()
    other = (await _register(clients[1], _forwarded())).json()
    pull = {"schema_version": 1, "cursor": None, "limit": 10}

    async def pull_as(user: dict[str, Any], i: int) -> httpx.Response:
        headers = {"Authorization": f"Bearer {user['access_token']}", **_forwarded()}
        return await clients[i % 2].post("/v1/sync/pull", json=pull, headers=headers)

    # The first pull reads PostgreSQL; the rest are no-change pulls, answered in front of
    # Litestar (service/http/fastpath.py) once a process knows the space: every request counts
    # once, whichever path answers it.
    first = await pull_as(ana, 0)
    assert first.status_code == 200
    pull["cursor"] = first.json()["cursor"]
    for i in range(1, SYNC_PER_USER):
        r = await pull_as(ana, i)
        assert r.status_code == 200, r.text
        assert r.json()["changes"] == []
    _expect_429(await pull_as(ana, SYNC_PER_USER))
    _expect_429(await pull_as(ana, SYNC_PER_USER + 1))
    assert (await pull_as(other, 0)).status_code == 200  # someone else is unaffected
    # A forged token naming ana does not count against her (nor get past the 401).
    forged = {"access_token": ana["access_token"][:-6] + "AAAAAA"}
    expect_problem(await pull_as(forged, 0), 401)


async def test_watermelondb_sync_spends_the_same_allowance(
    clients: list[httpx.AsyncClient],
) -> None:
    ana = (await _register(clients[0], _forwarded())).json()
    headers = {"Authorization": f"Bearer {ana['access_token']}", **_forwarded()}
    empty: dict[str, Any] = {"contacts": {"created": [], "updated": [], "deleted": []}}
    for i in range(SYNC_PER_USER):
        if i % 2:
            r = await clients[i % 2].post("/v1/watermelon/push", json=empty, headers=headers)
        else:
            r = await clients[i % 2].get(
                "/v1/watermelon/pull", params={"last_pulled_at": "null"}, headers=headers
            )
        assert r.status_code == 200, r.text
    r = await clients[0].get(
        "/v1/watermelon/pull", params={"last_pulled_at": "null"}, headers=headers
    )
    _expect_429(r)
    _expect_429(await clients[1].post("/v1/sync/pull", json={"schema_version": 1}, headers=headers))


async def test_an_oversized_body_still_gets_a_problem_413(
    clients: list[httpx.AsyncClient],
) -> None:
    ana = (await _register(clients[0], _forwarded())).json()
    r = await clients[0].post(
        "/v1/sync/push",
        content=json.dumps({"pad": "x" * MAX_BODY}).encode(),
        headers={
            "Authorization": f"Bearer {ana['access_token']}",
            "Content-Type": "application/json",
        },
    )
    expect_problem(r, 413)


async def test_with_redis_down_sign_in_and_sync_still_work(
    api_process: Callable[..., ApiProcess],
) -> None:
    """Fail open: no Redis, no limits — and no 500s."""
    with _refusing_port() as dead_port:
        server = api_process(
            "limits-api-no-redis",
            REDIS_URL=f"redis://127.0.0.1:{dead_port}/0",
            KITH_RATELIMIT_LOGIN_PER_IP="1",
            KITH_RATELIMIT_SYNC_PER_USER="1",
        ).wait_ready()
        try:
            async with httpx.AsyncClient(base_url=server.base, timeout=20) as http:
                email = f"{new_id('noredis')}@example.org"
                assert (await _register(http, {}, email)).status_code == 201
                for _ in range(3):  # over both limits: nothing counts them
                    r = await http.post("/v1/auth/login", json=_login_body(email))
                    assert r.status_code == 200, r.text
                    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
                    pull = {"schema_version": 1, "cursor": None, "limit": 10}
                    r = await http.post("/v1/sync/pull", json=pull, headers=headers)
                    assert r.status_code == 200, r.text
                ready = await http.get("/health/ready")
                assert ready.status_code == 200, ready.text
                assert ready.json() == {"status": "degraded", "postgres": "ok", "redis": "down"}
                scrape = await http.get("/metrics")  # still answers, and says what it lacks
                assert scrape.status_code == 200
                assert 'kith_metrics_source_up{source="redis"} 0' in scrape.text
        finally:
            assert server.stop() == 0
    warnings = [
        line
        for line in _json_lines(server.log_path.read_text())
        if line["logger"] == "kith.ratelimit" and line["level"] == "WARNING"
    ]
    assert len(warnings) == 1, warnings  # said once, not once per request
    assert "rate limits not enforced" in warnings[0]["message"]


@contextmanager
def _refusing_port() -> Iterator[int]:
    """A local port nothing listens on (bound, never listening) while the block runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_the_caregiver_page_sign_in_shares_the_login_limits(
    clients: list[httpx.AsyncClient],
) -> None:
    """Guessing a password through the web page is no cheaper than through the API: the
    same per-email counter, and the browser gets the sign-in page with the reason."""
    email = f"{new_id('carer')}@example.org"
    assert (await _register(clients[0], _forwarded(), email)).status_code == 201
    for i in range(LOGIN_PER_EMAIL):
        wrong = _login_body(email, password=f"guess-{i}")
        expect_problem(
            await clients[i % 2].post("/v1/auth/login", json=wrong, headers=_forwarded()), 401
        )
    web = clients[1]
    form = await web.get("/care/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    r = await web.post(
        "/care/login",
        data={"email": email, "password": PASSWORD, "csrf": csrf.group(1)},
        headers=_forwarded(),
    )
    assert r.status_code == 429
    assert r.headers["content-type"].startswith("text/html")
    assert 1 <= int(r.headers["retry-after"]) <= WINDOW_S
    assert "Too many sign-in attempts" in r.text
    assert "kith_care=" not in r.headers.get("set-cookie", "")

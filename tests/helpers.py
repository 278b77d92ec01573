"""Small helpers the integration tests share: accounts, stamps, push and pull."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from sync.client import (
    HttpxTransport,
    LocalStore,
    Record,
    Reply,
    SyncClient,
    Tokens,
    Transport,
    TransportError,
)
from sync.client import login as client_login
from sync.client import register as client_register
from sync.hlc import Clock

__all__ = [
    "Account",
    "Device",
    "FlakyTransport",
    "conflict_log",
    "expect_problem",
    "login",
    "new_device",
    "new_id",
    "pull_all",
    "push",
    "register",
    "server_records",
    "sign_in_devices",
    "stamp",
]

PASSWORD = "correct horse battery staple"


@dataclass
class Account:
    email: str
    user_id: str
    device_id: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def new_id(prefix: str = "rec") -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def stamp(device_id: str, *, offset_ms: int = 0, counter: int = 0) -> str:
    """An HLC stamp for ``device_id`` at now + ``offset_ms``."""
    return f"{time.time_ns() // 1_000_000 + offset_ms:013d}-{counter:04x}-{device_id}"


def expect_problem(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert ``r`` is an RFC 9457 problem with ``status`` (and ``code``); return its body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert isinstance(body["code"], str)
    assert body["code"], body
    if code is not None:
        assert body["code"] == code, body
    return body


async def register(
    http: httpx.AsyncClient,
    *,
    email: str | None = None,
    device_id: str | None = None,
    time_zone: str = "Europe/Lisbon",
) -> Account:
    email = email or f"{new_id('user')}@example.org"
    device_id = device_id or new_id("dev")
    r = await http.post(
        "/v1/auth/register",
        json={
            "email": email,
            "password": PASSWORD,
            "display_name": "Test Person",
            "time_zone": time_zone,
            "device": {"id": device_id, "platform": "ios", "name": "test"},
        },
    )
    assert r.status_code == 201, r.text
    body = r.json()
    return Account(email, body["user_id"], device_id, body["access_token"], body["refresh_token"])


async def login(http: httpx.AsyncClient, email: str, device_id: str) -> Account:
    r = await http.post(
        "/v1/auth/login",
        json={
            "email": email,
            "password": PASSWORD,
            "device": {"id": device_id, "platform": "android", "name": "second"},
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    return Account(email, body["user_id"], device_id, body["access_token"], body["refresh_token"])


async def push(
    http: httpx.AsyncClient,
    account: Account,
    changes: list[dict[str, Any]],
    *,
    batch_id: str | None = None,
    expect: int = 200,
) -> dict[str, Any]:
    r = await http.post(
        "/v1/sync/push",
        headers=account.headers,
        json={
            "device_id": account.device_id,
            "batch_id": batch_id or new_id("batch"),
            "schema_version": 1,
            "changes": changes,
        },
    )
    assert r.status_code == expect, r.text
    body: dict[str, Any] = r.json()
    return body


async def pull_all(
    http: httpx.AsyncClient, account: Account, cursor: str | None = None, limit: int = 1000
) -> tuple[dict[tuple[str, str], dict[str, Any]], str]:
    """Pull every page; return the latest state per (table, id) and the final cursor."""
    state: dict[tuple[str, str], dict[str, Any]] = {}
    while True:
        r = await http.post(
            "/v1/sync/pull",
            headers=account.headers,
            json={"schema_version": 1, "cursor": cursor, "limit": limit},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        for change in body["changes"]:
            state[(change["table"], change["id"])] = change
        cursor = body["cursor"]
        if not body["has_more"]:
            assert cursor is not None
            return state, cursor


# -- reference-client helpers (blocking, for tests that drive sync.client) ---------------


class FlakyTransport:
    """A phone's network around a real transport: ``offline`` (nothing arrives) or
    ``lose_next_push_response`` (the push reaches the server, its answer never comes back).
    Remembers every push body the server received, its answers, and those that were lost."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.offline = False
        self.lose_next_push_response = False
        self.delivered: list[dict[str, Any]] = []  # push bodies the server received
        self.replies: list[Reply] = []  # the server's answer to each delivered push
        self.lost: list[tuple[dict[str, Any], Reply]] = []
        # Runs once, after the next push reached the server and before its answer is read:
        # the person editing while a sync is in flight.
        self.while_in_flight: Callable[[], None] | None = None

    def post(self, path: str, body: Mapping[str, Any]) -> Reply:
        if self.offline:
            raise TransportError("offline (simulated)")
        reply = self.inner.post(path, body)
        if path == "/v1/sync/push":
            self.delivered.append(dict(body))
            self.replies.append(reply)
            if self.while_in_flight is not None:
                hook, self.while_in_flight = self.while_in_flight, None
                hook()
            if self.lose_next_push_response:
                self.lose_next_push_response = False
                self.lost.append((dict(body), reply))
                raise TransportError("response lost (simulated)")
        return reply

    def get(self, path: str, params: Mapping[str, str]) -> Reply:
        if self.offline:
            raise TransportError("offline (simulated)")
        return self.inner.get(path, params)


@dataclass
class Device:
    """One signed-in device: its client, its (flaky) network and its session."""

    client: SyncClient
    network: FlakyTransport
    tokens: Tokens
    http: HttpxTransport

    def close(self) -> None:
        self.http.close()
        self.client.store.close()


def sign_in_devices(base_url: str, count: int, *, email: str | None = None) -> list[Tokens]:
    """Register one person and sign ``count`` devices in, each with its own session."""
    email = email or f"{new_id('user')}@example.org"
    first = client_register(
        base_url,
        email=email,
        password=PASSWORD,
        device_id=new_id("dev0"),
        display_name="Test Person",
        time_zone="Europe/Lisbon",
    )
    others = [
        client_login(base_url, email=email, password=PASSWORD, device_id=new_id(f"dev{i}"))
        for i in range(1, count)
    ]
    return [first, *others]


def new_device(base_url: str, tokens: Tokens, *, clock: Clock | None = None) -> Device:
    """A reference client for a signed-in device, with an in-memory store."""
    http = HttpxTransport(base_url, tokens.access_token, timeout=30)
    network = FlakyTransport(http)
    client = SyncClient(tokens.device_id, network, LocalStore(), clock=clock)
    return Device(client, network, tokens, http)


def server_records(base_url: str, access_token: str) -> dict[tuple[str, str], Record]:
    """The space as a brand-new device would see it: a full pull from scratch, done with
    plain HTTP so that it does not depend on the client under test."""
    state: dict[tuple[str, str], Record] = {}
    cursor: str | None = None
    headers = {"Authorization": f"Bearer {access_token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
        for _ in range(10_000):
            r = http.post(
                "/v1/sync/pull", json={"schema_version": 1, "cursor": cursor, "limit": 1000}
            )
            assert r.status_code == 200, r.text
            body = r.json()
            for c in body["changes"]:
                state[(c["table"], c["id"])] = Record(
                    c["table"], c["id"], c["fields"], c["deleted"], c["hlc"]
                )
            cursor = body["cursor"]
            if not body["has_more"]:
                return state
    raise AssertionError("pull did not finish within 10,000 pages")


def conflict_log(base_url: str, access_token: str, **filters: str) -> list[dict[str, Any]]:
    """Every conflict-history entry of the space (plain HTTP, all pages)."""
    entries: list[dict[str, Any]] = []
    params = {"limit": "1000", **filters}
    headers = {"Authorization": f"Bearer {access_token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
        for _ in range(1000):
            r = http.get("/v1/sync/conflicts", params=params)
            assert r.status_code == 200, r.text
            body = r.json()
            entries.extend(body["conflicts"])
            if body["next"] is None:
                return entries
            params["after"] = body["next"]
    raise AssertionError("conflict history did not end within 1,000 pages")

"""Kith over HTTP as a device speaks it: register, log in, push batches, pull pages.

Set-up (register, log in) goes through httpx; the timed pushes and pulls through
:class:`bench.wire.Wire`, a lean keep-alive connection (see its docstring for why).

Every timed exchange is recorded byte for byte (:class:`bench.http_floor.Exchange`) so the
transport floor can replay exactly the same traffic.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from bench.http_floor import Exchange
from bench.wire import Wire
from schemas.sync import PullResponse, PushResponse
from sync.hlc import Clock

__all__ = [
    "Account",
    "login",
    "pull_all",
    "pull_decoder",
    "push_batches",
    "push_bodies",
    "push_decoder",
    "register",
    "stamps",
]

PASSWORD = "bench horse battery staple"

_encode = msgspec.json.encode
push_decoder = msgspec.json.Decoder(PushResponse)
pull_decoder = msgspec.json.Decoder(PullResponse)


@dataclass(frozen=True, slots=True)
class Account:
    email: str
    user_id: str
    device_id: str
    headers: dict[str, str]


def _device(device_id: str) -> dict[str, str]:
    return {"id": device_id, "platform": "ios", "name": "bench"}


def _account(email: str, device_id: str, r: httpx.Response, status: int) -> Account:
    if r.status_code != status:
        raise RuntimeError(f"{r.request.url.path} answered {r.status_code}: {r.text[:500]}")
    body = r.json()
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    return Account(email, body["user_id"], device_id, headers)


async def register(http: httpx.AsyncClient) -> Account:
    """A new person with one device (and so a new, empty space)."""
    email, device_id = f"bench-{secrets.token_hex(6)}@example.org", f"dev-{secrets.token_hex(6)}"
    r = await http.post(
        "/v1/auth/register",
        json={
            "email": email,
            "password": PASSWORD,
            "display_name": "Bench Person",
            "time_zone": "Europe/Lisbon",
            "device": _device(device_id),
        },
    )
    return _account(email, device_id, r, 201)


async def login(http: httpx.AsyncClient, email: str) -> Account:
    """A new device of an existing person."""
    device_id = f"dev-{secrets.token_hex(6)}"
    r = await http.post(
        "/v1/auth/login",
        json={"email": email, "password": PASSWORD, "device": _device(device_id)},
    )
    return _account(email, device_id, r, 200)


def stamps(device_id: str, n: int) -> list[str]:
    """One HLC stamp per change, as the device's clock would mint them."""
    clock = Clock(device_id)
    return [clock.now() for _ in range(n)]


def push_bodies(
    device_id: str, table: str, records: list[tuple[str, dict[str, Any], str]], batch: int
) -> list[bytes]:
    """Encoded push requests of ``batch`` changes each; ``records`` are (id, fields, hlc)."""
    return [
        _encode(
            {
                "device_id": device_id,
                "batch_id": f"batch-{secrets.token_hex(8)}",
                "schema_version": 1,
                "changes": [
                    {"table": table, "id": rid, "hlc": hlc, "fields": fields}
                    for rid, fields, hlc in records[i : i + batch]
                ],
            }
        )
        for i in range(0, len(records), batch)
    ]


async def push_batches(
    wire: Wire, account: Account, bodies: list[bytes], record: list[Exchange]
) -> float:
    """Send the batches one after another; return the seconds taken."""
    requests = [wire.request_bytes("POST", "/v1/sync/push", b, account.headers) for b in bodies]
    start = time.perf_counter()
    for body, request in zip(bodies, requests, strict=True):
        status, content = await wire.send(request)
        if status != 200:
            raise RuntimeError(f"push answered {status}: {content[:500]!r}")
        push_decoder.decode(content)
        record.append(Exchange(body, content))
    return time.perf_counter() - start


async def pull_all(
    wire: Wire, account: Account, page: int, *, max_pages: int, record: list[Exchange]
) -> tuple[float, int]:
    """Pull every page from scratch; return the seconds taken and the records received."""
    cursor: str | None = None
    records = 0
    start = time.perf_counter()
    for _ in range(max_pages):
        body = _encode({"schema_version": 1, "cursor": cursor, "limit": page})
        status, content = await wire.post("/v1/sync/pull", body, account.headers)
        if status != 200:
            raise RuntimeError(f"pull answered {status}: {content[:500]!r}")
        answer = pull_decoder.decode(content)
        record.append(Exchange(body, content))
        records += len(answer.changes)
        cursor = answer.cursor
        if not answer.has_more:
            return time.perf_counter() - start, records
    raise RuntimeError(f"pull did not finish within {max_pages} pages")

"""The transport floor: the same HTTP exchanges with no application behind them.

An ASGI app, served by Granian exactly as the API is, that answers recorded responses
verbatim. Replaying a workload's requests against it and decoding the answers as the
workload does measures what the client and the server's HTTP layer cost on their own —
the most any API could reach on this machine with this client. Protocol:

``PUT /r/{i}``   store the body as response ``i`` (set-up, not timed)
``POST /r/{i}``  read the request body, answer response ``i``
``GET /health``  200 once the worker is up
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from bench.wire import Wire

__all__ = ["Exchange", "app", "replay"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

_responses: dict[int, bytes] = {}
_JSON = [(b"content-type", b"application/json")]


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] != "http":  # lifespan and anything else: nothing to set up
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    path: str = scope["path"]
    status, body = 404, b"{}"
    if path == "/health":
        status = 200
    elif path.startswith("/r/"):
        index = int(path[3:])
        if scope["method"] == "PUT":
            _responses[index] = b"".join(chunks)
            status = 204
            body = b""
        elif index in _responses:
            status, body = 200, _responses[index]
    await send({"type": "http.response.start", "status": status, "headers": _JSON})
    await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request a workload sent and the response it got, byte for byte."""

    request: bytes
    response: bytes


async def replay(
    http: httpx.AsyncClient,
    wire: Wire,
    exchanges: list[Exchange],
    decoder: msgspec.json.Decoder[Any],
) -> float:
    """Seconds to send ``exchanges`` one after another through ``wire`` (the same lean
    client the workload used against Kith) and decode each answer; ``http`` loads the
    recorded answers into the floor server first."""
    for i, ex in enumerate(exchanges):
        (await http.put(f"/r/{i}", content=ex.response)).raise_for_status()
    requests = [
        wire.request_bytes("POST", f"/r/{i}", ex.request, {}) for i, ex in enumerate(exchanges)
    ]
    start = time.perf_counter()
    for request in requests:
        status, content = await wire.send(request)
        if status != 200:
            raise RuntimeError(f"the floor server answered {status}")
        decoder.decode(content)
    return time.perf_counter() - start

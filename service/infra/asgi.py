"""The ASGI vocabulary shared by the layers in front of Litestar (``service.infra.logs``,
``service.http.ratelimit``, ``service.http.fastpath``) and their problem answers
(``service.errors.send_problem``): generic types, and reading one request header."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["ASGIApp", "Message", "Receive", "Scope", "Send", "bearer_token", "header"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Any ASGI callable (Litestar's own signature is narrower than these generic types).
ASGIApp = Callable[..., Awaitable[None]]


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lower case, as ASGI gives names), if sent."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if that is what was sent."""
    scheme, _, token = (header(scope, b"authorization") or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None

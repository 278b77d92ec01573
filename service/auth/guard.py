"""Who is calling: the bearer token checked against a live session and device.

Handlers that need a caller declare a ``caller: Caller`` parameter; the dependency
resolves it or answers 401. Every store query is then scoped by ``caller.user_id`` or
``caller.space_id`` — never by an id taken from the request alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
from litestar import Request

from service.auth.tokens import InvalidToken, TokenIssuer
from service.errors import Unauthorized
from service.store import accounts as store

__all__ = ["Caller", "resolve_caller"]


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: str
    device_id: str
    space_id: str
    family_id: str


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="kith"'}


async def resolve_caller(request: Request[Any, Any, Any]) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send 'Authorization: Bearer <access token>'", headers=_CHALLENGE)
    issuer: TokenIssuer = request.app.state.tokens
    try:
        claims = issuer.verify_access(token.strip())
    except InvalidToken:
        raise Unauthorized(
            "the access token is invalid or expired; refresh it",
            code="invalid_token",
            headers=_CHALLENGE,
        ) from None
    pool: asyncpg.Pool = request.app.state.pool
    if not await store.family_is_active(
        pool, family_id=claims.family_id, user_id=claims.user_id, device_id=claims.device_id
    ):
        raise Unauthorized(
            "this session was signed out", code="session_revoked", headers=_CHALLENGE
        )
    return Caller(claims.user_id, claims.device_id, claims.space_id, claims.family_id)

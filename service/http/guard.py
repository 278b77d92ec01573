"""Who is calling: the bearer token checked against a live session and device.

Handlers that need a caller declare a ``caller: Caller`` parameter; the dependency
resolves it or answers 401. Every store query is then scoped by ``caller.user_id`` or
``caller.space_id`` — never by an id taken from the request alone.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar import Request

from service.accounts.sessions import Caller, SessionCache
from service.accounts.tokens import AccessClaims, InvalidToken, TokenIssuer
from service.errors import Code, NotAuthenticated
from service.store import accounts as store

__all__ = [
    "Caller",
    "PendingSession",
    "check_token",
    "resolve_caller",
    "resolve_caller_lazily",
    "resolve_caller_unconfirmed",
    "verified_session",
]


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="kith"'}


async def resolve_caller(request: Request[Any, Any, Any]) -> Caller:
    """The caller, with the token's session and device confirmed live in PostgreSQL."""
    claims = await verified_session(request, _bearer(request))
    return Caller(
        claims.user_id,
        claims.device_id,
        claims.space_id,
        claims.family_id,
        terms_version=claims.terms_version,
    )


async def resolve_caller_lazily(request: Request[Any, Any, Any]) -> Caller:
    """For ``POST /v1/sync/pull`` only: like :func:`resolve_caller`, but a session this
    process knows to be live (see ``service.accounts.sessions``) is not re-checked now. The
    pull confirms it (:class:`PendingSession`) in the query that reads its page, before
    anything read is returned; only a "nothing new" answer is given on the cache's word."""
    token = _bearer(request)
    sessions: SessionCache | None = getattr(request.app.state, "sessions", None)
    if sessions is not None:
        claims = _claims(request, token)
        if sessions.known_live(claims):
            return Caller(
                claims.user_id,
                claims.device_id,
                claims.space_id,
                claims.family_id,
                session_confirmed=False,
                terms_version=claims.terms_version,
            )
    return await resolve_caller(request)


async def resolve_caller_unconfirmed(request: Request[Any, Any, Any]) -> Caller:
    """For ``POST /v1/sync/push`` only: the valid token's caller, its session not yet
    confirmed — the push confirms it (:class:`PendingSession`) in the statement that takes
    the space's lock, before it reads or writes anything: one round trip instead of two."""
    claims = _claims(request, _bearer(request))
    return Caller(
        claims.user_id,
        claims.device_id,
        claims.space_id,
        claims.family_id,
        False,
        terms_version=claims.terms_version,
    )


class PendingSession:
    """``caller``'s session, live as far as this process's cache knows, to be confirmed in
    PostgreSQL by the query that reads for the request (``SyncService.pull`` asks along
    with the page, one round trip): :meth:`settle` with that answer refreshes the cache
    and raises 401 for a signed-out session."""

    def __init__(self, request: Request[Any, Any, Any], caller: Caller) -> None:
        self.family_id, self.user_id = caller.family_id, caller.user_id
        self.device_id = caller.device_id
        self._claims = AccessClaims(
            caller.user_id, caller.device_id, caller.space_id, caller.family_id
        )
        self._sessions: SessionCache | None = getattr(request.app.state, "sessions", None)
        self._generation = self._sessions.generation if self._sessions is not None else 0

    def settle(self, live: bool) -> None:
        if self._sessions is not None:
            self._sessions.remember(self._claims, live, self._generation)
        if not live:
            raise NotAuthenticated(
                "this session was signed out", code=Code.SESSION_REVOKED, headers=_CHALLENGE
            )


async def verified_session(request: Request[Any, Any, Any], token: str) -> AccessClaims:
    """The claims of ``token`` if it is valid and its session and device are live (checked
    in PostgreSQL); else 401."""
    claims = _claims(request, token)
    if not await _is_live(request, claims):
        raise NotAuthenticated(
            "this session was signed out", code=Code.SESSION_REVOKED, headers=_CHALLENGE
        )
    return claims


def check_token(request: Request[Any, Any, Any]) -> None:
    """Raise 401 unless the request carries a valid access token (its session is not
    looked up): for checks that must answer a missing token before a bad body."""
    _claims(request, _bearer(request))


def _bearer(request: Request[Any, Any, Any]) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("send 'Authorization: Bearer <access token>'", headers=_CHALLENGE)
    return token.strip()


def _claims(request: Request[Any, Any, Any], token: str) -> AccessClaims:
    sessions: SessionCache | None = getattr(request.app.state, "sessions", None)
    try:
        if sessions is not None:
            return sessions.claims(token)
        issuer: TokenIssuer = request.app.state.tokens
        return issuer.verify_access(token)
    except InvalidToken:
        raise NotAuthenticated(
            "the access token is invalid or expired; refresh it",
            code=Code.INVALID_TOKEN,
            headers=_CHALLENGE,
        ) from None


async def _is_live(request: Request[Any, Any, Any], claims: AccessClaims) -> bool:
    sessions: SessionCache | None = getattr(request.app.state, "sessions", None)
    if sessions is not None:
        return await sessions.confirm(claims)
    pool: asyncpg.Pool = request.app.state.pool
    return await store.family_is_active(
        pool,
        family_id=claims.family_id,
        user_id=claims.user_id,
        device_id=claims.device_id,
        space_id=claims.space_id,
    )

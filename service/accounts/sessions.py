"""A short memory of verified access tokens and live sessions, so that the no-change pull
needs no PostgreSQL round trip to authenticate either.

Two caches, both per process:

* **verified tokens** — an EdDSA verification costs about as much as the whole no-change
  pull; a token that verified once stays valid until its ``exp`` (plus the same leeway),
  so the result is kept until then. Only tokens with a valid signature are ever kept.
* **live sessions** — ``(user, device) → (family, space)`` confirmed live in PostgreSQL
  (and the space confirmed the session's own) within the
  last ``SESSION_CACHE_S``. Only ``POST /v1/sync/pull`` consults it (``FastPull`` in
  ``service/http/fastpath.py`` and ``guard.resolve_caller_lazily``), and only to answer "nothing
  new": a pull with something to return confirms the session in the same query that reads
  the page, and every other route confirms it in PostgreSQL before anything is read or
  written. Each confirmation refreshes the cache, and a "no" removes the entry.

Every revocation (logout, device removed, refresh token replayed, a new login on the
device) is applied to the revoking process's cache before that request answers, and
announced on Redis (``kith:sessions``) so every other process drops its entry when the
message arrives. The bound, as documented in docs/protocol.md: a signed-out session can at
most keep being told "nothing new" by another process until that message arrives
(milliseconds); if the revoking process could not publish it, for ``SESSION_CACHE_S``.
While this process's own subscription is down it trusts nothing it cached (it would not
hear of revocations) and confirms every session in PostgreSQL.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from service.accounts.tokens import LEEWAY_S, AccessClaims, TokenIssuer
from service.store import accounts as store

__all__ = ["SESSION_CACHE_S", "Caller", "SessionCache"]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, from a verified access token: every store query of a request is
    scoped by ``user_id`` or ``space_id``."""

    user_id: str
    device_id: str
    space_id: str
    family_id: str
    # False from ``resolve_caller_lazily`` (the session is live as far as this process's
    # cache knows) and ``resolve_caller_unconfirmed`` (not checked yet): the handler then
    # confirms it in PostgreSQL (``PendingSession``) before anything is read or written.
    session_confirmed: bool = True
    #: The privacy terms version the token says the person accepted (see ``Consent``).
    terms_version: str | None = None


SESSION_CACHE_S = 300.0  # only ever used to say "nothing new" (see above)
MAX_TOKENS = 20_000
MAX_SESSIONS = 100_000


class SessionCache:
    def __init__(
        self, pool: asyncpg.Pool[Any], issuer: TokenIssuer, *, ttl_s: float = SESSION_CACHE_S
    ) -> None:
        self._pool = pool
        self._issuer = issuer
        self._ttl_s = ttl_s
        self._tokens: dict[str, AccessClaims] = {}
        self._sessions: dict[tuple[str, str], tuple[str, str, float]] = {}
        self._generation = 0  # +1 on every invalidation: a lookup begun before is not kept
        self._trusted = False  # revocation messages can reach us (the subscription is up)

    def claims(self, token: str) -> AccessClaims:
        """The token's claims; raises ``InvalidToken`` like ``TokenIssuer.verify_access``."""
        claims = self._tokens.get(token)
        now = time.time()
        if claims is not None:
            if now < claims.expires_at + LEEWAY_S:
                return claims
            del self._tokens[token]
        claims = self._issuer.verify_access(token)
        if len(self._tokens) >= MAX_TOKENS:
            self._evict_tokens(now)
        self._tokens[token] = claims
        return claims

    def known_live(self, claims: AccessClaims) -> bool:
        """Did PostgreSQL confirm this session live within ``SESSION_CACHE_S``, with no
        revocation heard of since? (No I/O.)"""
        if not self._trusted:
            return False
        hit = self._sessions.get((claims.user_id, claims.device_id))
        return (
            hit is not None
            and hit[0] == claims.family_id
            and hit[1] == claims.space_id
            and hit[2] > time.monotonic()
        )

    async def confirm(self, claims: AccessClaims) -> bool:
        """Ask PostgreSQL whether the session and its device are live; remember a yes."""
        generation = self.generation
        active = await store.family_is_active(
            self._pool,
            family_id=claims.family_id,
            user_id=claims.user_id,
            device_id=claims.device_id,
            space_id=claims.space_id,
        )
        self.remember(claims, active, generation)
        return active

    @property
    def generation(self) -> int:
        """Read before asking PostgreSQL; pass to :meth:`remember` with the answer."""
        return self._generation

    def remember(self, claims: AccessClaims, active: bool, generation: int) -> None:
        """PostgreSQL said ``active`` of ``claims``' session (asked at ``generation``, by
        :meth:`confirm` or by a query that checked it along with other work): keep a yes,
        unless a revocation was heard of since the question was asked; forget a no."""
        key = (claims.user_id, claims.device_id)
        if not active:
            hit = self._sessions.get(key)
            if hit is not None and hit[0] == claims.family_id:
                del self._sessions[key]
            return
        if self._trusted and generation == self._generation:
            if len(self._sessions) >= MAX_SESSIONS:
                self._sessions.clear()
            self._sessions[key] = (
                claims.family_id,
                claims.space_id,
                time.monotonic() + self._ttl_s,
            )

    def invalidate(self, user_id: str, device_id: str, *, keep: str | None = None) -> None:
        """Sessions of ``(user, device)`` other than family ``keep`` were revoked."""
        self._generation += 1
        hit = self._sessions.get((user_id, device_id))
        if hit is not None and hit[0] != keep:
            del self._sessions[(user_id, device_id)]

    def trust(self, trusted: bool) -> None:
        """Cache sessions only while revocation messages can reach this process; forget
        them all whenever that changes (messages may have been missed)."""
        self._generation += 1
        self._trusted = trusted
        self._sessions.clear()

    def _evict_tokens(self, now: float) -> None:
        for token, claims in list(self._tokens.items()):
            if now >= claims.expires_at + LEEWAY_S:
                del self._tokens[token]
        if len(self._tokens) >= MAX_TOKENS:  # all still valid: forget the oldest half
            for token in list(self._tokens)[: MAX_TOKENS // 2]:
                del self._tokens[token]

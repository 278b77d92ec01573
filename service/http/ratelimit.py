"""Rate limits, counted in Redis so that every API process sees the same numbers.

* per client IP on ``register``, ``login`` (and the providers' ``apple``, ``google``)
  and ``refresh`` — checked in front of the app
  (:class:`RateLimits`) before the body is even read, so a flood costs one Redis round
  trip per request;
* per email on ``login`` (the body names it) — password guessing against one account from
  many addresses. The price: whoever knows an email can keep that account's logins refused
  for a window at a time; devices already signed in are untouched (they refresh);
* per user on ``push`` and ``pull`` (the bearer token names them) — generous: it stops a
  runaway client loop, not a person.

Each check is a fixed window: one Lua script ``INCR``\\s every counter of a request and
sets its expiry on first use, atomically, so N processes cannot race past a limit. A
refused request gets ``429`` problem+json with ``Retry-After`` (seconds until its window
ends). A fixed window lets through at most twice the limit around a window boundary; for
brute-force protection with Argon2 behind it that is fine, and it costs one key per
counter instead of a sorted set per client.

**Redis down → fail open.** Redis is an accelerator in Kith (sync works without it); if
the limiter failed closed, a Redis outage would sign nobody in and sync nothing — a
complete outage caused by a protective feature. The cost of failing open is that brute
force is bounded only by Argon2's cost while Redis is out, and that is logged (at most
once a minute per process) and counted (``kith_rate_limit_fail_open_total``). After a
failure the limiter does not try Redis again for a few seconds, so a Redis that hangs
adds no latency to every request.

**The client's address.** ``X-Forwarded-For`` is believed only when the connection comes
from a proxy listed in ``KITH_TRUSTED_PROXIES``; then the address is the right-most entry
that is not itself a trusted proxy (entries further left are whatever the client wrote).
IPv6 clients are counted per /64, the block one subscriber gets.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.utils import normalize_path
from redis.exceptions import RedisError

from service.accounts.tokens import AccessClaims, InvalidToken
from service.config import Settings
from service.errors import RateLimited
from service.http.problems import send_problem
from service.infra.asgi import ASGIApp, Receive, Scope, Send, bearer_token
from service.infra.metrics import RATE_LIMIT_OPEN, RATE_LIMITED, Metrics

__all__ = ["Check", "RateLimiter", "RateLimits", "client_ip", "parse_networks"]

log = logging.getLogger("kith.ratelimit")

# KEYS: the counters; ARGV[1]: the window in ms; ARGV[i + 1]: the limit of KEYS[i].
# Returns the longest wait (ms) among the counters over their limit, 0 if none is.
_SCRIPT = """
local window = tonumber(ARGV[1])
local wait = 0
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  local ttl = redis.call('PTTL', key)
  if n == 1 or ttl < 0 then
    redis.call('PEXPIRE', key, window)
    ttl = window
  end
  if n > tonumber(ARGV[i + 1]) and ttl > wait then
    wait = ttl
  end
end
return wait
"""
# One hash tag: every counter of a request is in the same cluster slot.
_PREFIX = "kith:{rl}:"
REDIS_TIMEOUT_S = 0.5
SKIP_AFTER_FAILURE_S = 5.0
WARN_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class Check:
    """One counter a request increments: ``rule`` (a metrics label), who, and the limit."""

    rule: str
    subject: str
    limit: int


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(entries: Sequence[str]) -> tuple[Network, ...]:
    """``KITH_TRUSTED_PROXIES`` entries (addresses or CIDR blocks) as networks."""
    return tuple(ipaddress.ip_network(e.strip(), strict=False) for e in entries if e.strip())


def _address(raw: str) -> Address | None:
    try:
        return ipaddress.ip_address(raw.strip().strip("[]"))
    except ValueError:
        return None


def _subject(address: Address) -> str:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def client_ip(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """Who the client is, for counting: the peer, or — behind a trusted proxy — the
    right-most ``X-Forwarded-For`` hop that is not a trusted proxy."""
    peer_address = _address(peer) if peer else None
    if peer_address is None:
        return peer or "unknown"
    if not trusted or not any(peer_address in n for n in trusted):
        return _subject(peer_address)
    hops = [h for value in forwarded_for for h in value.split(",") if h.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return _subject(peer_address)  # garbage a proxy would not have written
        if not any(address in n for n in trusted):
            return _subject(address)
    first = _address(hops[0]) if hops else None
    return _subject(first or peer_address)


def _email_subject(email: str) -> str:
    """Emails are hashed: Redis keys are visible to operators and in Redis' own logs."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


class RateLimiter:
    """The limits of one API process, counted in the shared Redis."""

    def __init__(
        self,
        client: aioredis.Redis,
        settings: Settings,
        metrics: Metrics,
        claims: Callable[[str], AccessClaims],
    ) -> None:
        """``claims``: a verified token's claims, raising ``InvalidToken`` otherwise — the
        session cache's (``SessionCache.claims``), so a token is verified once per process
        for the limiter, the fast path and the handlers alike."""
        self._script = client.register_script(_SCRIPT)
        self._window_ms = settings.ratelimit.window_s * 1000
        self._trusted = parse_networks(settings.server.trusted_proxies)
        self._metrics = metrics
        self._claims = claims
        self._login_per_email = settings.ratelimit.login_per_email
        self._login_per_ip = settings.ratelimit.login_per_ip
        self._per_ip = {
            "/v1/auth/login": ("login_ip", settings.ratelimit.login_per_ip),
            "/v1/auth/register": ("register_ip", settings.ratelimit.register_per_ip),
            "/v1/auth/refresh": ("refresh_ip", settings.ratelimit.refresh_per_ip),
            # a provider's sign-in spends the password login's allowance per address
            "/v1/auth/apple": ("login_ip", settings.ratelimit.login_per_ip),
            "/v1/auth/google": ("login_ip", settings.ratelimit.login_per_ip),
        }
        # WatermelonDB's sync (one GET pull, one POST push) spends the same allowance.
        self._per_user = {
            ("POST", "/v1/sync/push"): settings.ratelimit.sync_per_user,
            ("POST", "/v1/sync/pull"): settings.ratelimit.sync_per_user,
            ("POST", "/v1/watermelon/push"): settings.ratelimit.sync_per_user,
            ("GET", "/v1/watermelon/pull"): settings.ratelimit.sync_per_user,
        }
        self._skip_until = 0.0
        self._warned_at = -math.inf

    @property
    def per_user_sync_limit(self) -> int:
        """Push and pull requests a user may make per window (0: unlimited)."""
        return self._per_user[("POST", "/v1/sync/pull")]

    # -- what a request counts against ---------------------------------------------------

    async def check_request(self, scope: Scope) -> None:
        """What :class:`RateLimits` counts before the app sees a request: the per-address
        limits of the auth routes, the per-user limit of push and pull. Other requests are
        not limited."""
        method = scope["method"]
        if method not in ("POST", "GET"):
            return
        path = routed_path(scope)
        if method == "POST" and path in self._per_ip:
            rule, limit = self._per_ip[path]
            await self.hit([Check(rule, self.client_of(scope), limit)])
        elif self._per_user.get((method, path), 0) > 0:
            user = self._user_of(scope)
            if user is not None:  # no valid token: the handler answers 401 at once
                await self.hit([Check("sync_user", user, self._per_user[(method, path)])])

    async def check_login_email(self, email: str) -> None:
        """The login handler's part, once the body has named the account."""
        await self.hit([Check("login_email", _email_subject(email), self._login_per_email)])

    async def check_password_confirmation(self, user_id: str) -> None:
        """A password typed to confirm deleting an account counts against the same
        per-account allowance as sign-ins, so it is no cheaper way to guess one."""
        await self.hit(
            [Check("login_email", _email_subject(f"user:{user_id}"), self._login_per_email)]
        )

    async def check_web_sign_in(
        self, connection: ASGIConnection[Any, Any, Any, Any], email: str
    ) -> None:
        """The caregiver page's sign-in: the same counters as ``/v1/auth/login`` (per
        address and per email), so guessing a password through the page is no cheaper. It
        is checked in the handler, not the guard, so a browser gets a page, not JSON."""
        client = self.client_of(cast(Scope, connection.scope))
        await self.hit(
            [
                Check("login_ip", client, self._login_per_ip),
                Check("login_email", _email_subject(email), self._login_per_email),
            ]
        )

    def client_of(self, scope: Scope) -> str:
        client = scope.get("client")
        peer = str(client[0]) if client else None
        forwarded = [
            bytes(v).decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"
        ]
        return client_ip(peer, forwarded, self._trusted)

    def _user_of(self, scope: Scope) -> str | None:
        """The user the request's bearer token was issued to, if it is valid: the signature
        is checked (a forged ``sub`` must not spend someone else's allowance). An invalid or
        expired token is not counted; the handler answers it 401 without other work."""
        token = bearer_token(scope)
        if token is None:
            return None
        try:
            return self._claims(token).user_id
        except InvalidToken:
            return None

    # -- counting -------------------------------------------------------------------------

    async def hit(self, checks: Sequence[Check]) -> None:
        """Count one request against every check; raise 429 if any is over its limit.
        A limit of 0 means unlimited. Redis trouble lets the request through (see above)."""
        active = [c for c in checks if c.limit > 0]
        if not active:
            return
        wait_ms = await self._count(active)
        if wait_ms > 0:
            retry_after = max(1, math.ceil(wait_ms / 1000))
            for check in active:
                self._metrics.inc(RATE_LIMITED, check.rule)
            raise RateLimited(
                f"too many requests; try again in {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )

    async def _count(self, checks: Sequence[Check]) -> int:
        now = time.monotonic()
        if now < self._skip_until:
            self._metrics.inc(RATE_LIMIT_OPEN)
            return 0
        keys = [f"{_PREFIX}{c.rule}:{c.subject}" for c in checks]
        args = [self._window_ms, *(c.limit for c in checks)]
        try:
            result = await asyncio.wait_for(self._script(keys=keys, args=args), REDIS_TIMEOUT_S)
        except (RedisError, OSError, TimeoutError) as exc:
            self._fail_open(now, exc)
            return 0
        return int(result)

    def _fail_open(self, now: float, exc: BaseException) -> None:
        self._skip_until = now + SKIP_AFTER_FAILURE_S
        self._metrics.inc(RATE_LIMIT_OPEN)
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning(
                "rate limits not enforced: Redis did not answer (%s); letting requests "
                "through for now",
                type(exc).__name__,
            )


class RateLimits:
    """ASGI, in front of the app: count each request against its limits before anything
    else runs (routing, authentication, the body) and answer 429 problem+json with
    ``Retry-After`` when one is over. The limiter lives in ``state.limits`` (made by the
    app's lifespan); until it exists, requests pass uncounted."""

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self._state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limiter: RateLimiter | None = getattr(self._state, "limits", None)
        if limiter is not None and scope["type"] == "http":
            try:
                await limiter.check_request(scope)
            except RateLimited as exc:
                scope["path_template"] = routed_path(scope)  # the access line names the route
                await send_problem(send, exc)
                return
        await self.app(scope, receive, send)


def routed_path(scope: Scope) -> str:
    """The path as Litestar's router matches it (root path removed, slashes normalised):
    ``//v1/auth/login/`` reaches the login handler, so it must count as a login too."""
    path = str(scope["path"])
    if root_path := scope.get("root_path", ""):
        path = path.split(root_path, maxsplit=1)[-1]
    return normalize_path(path)

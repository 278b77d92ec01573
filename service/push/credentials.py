"""Provider tokens shared by every worker process, minted rarely and under a lock.

APNs wants one ES256 provider token per (team, key), refreshed no more than once every
20 minutes and no less than once an hour; minting one per request (or per worker, or per
restart) earns ``429 TooManyProviderTokenUpdates`` and an unusable connection. So the token
lives in ``push_credentials``: a worker that needs one reads the row, and only when the
token is older than ``reuse_for`` does it mint a new one — under ``SELECT … FOR UPDATE``,
so of several workers arriving together one mints and the others take its token. Each
process also keeps the token in memory and goes back to the row only when its copy ages.

The same class caches FCM's OAuth access token (its ``mint`` asks Google's token endpoint).

A credential the provider keeps rejecting is *disabled*: the alarm is logged and that
provider's sends wait (they are retried later, never dropped) until an operator fixes the
key — configuring a new key id makes a new row, which starts enabled.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any

import asyncpg

from service.infra.clock import WallClock, utcnow
from service.store import push as store
from service.store.db import Connection

__all__ = ["Disabled", "Minted", "SharedToken"]

log = logging.getLogger("kith.push")


class Disabled(Exception):
    """The provider rejected this credential; sends wait for an operator."""


@dataclass(frozen=True, slots=True)
class Minted:
    token: str
    expires_at: dt.datetime


@dataclass(eq=False)
class SharedToken:
    pool: asyncpg.Pool[Any]
    key: str
    mint: Callable[[dt.datetime], Awaitable[Minted]]
    _: KW_ONLY
    reuse_for: dt.timedelta
    min_interval: dt.timedelta = dt.timedelta(0)
    clock: WallClock = utcnow

    def __post_init__(self) -> None:
        self._cached: store.Credential | None = None
        self.minted = 0  # tokens this process minted (for tests and logs)

    def _fresh(self, cred: store.Credential, now: dt.datetime) -> bool:
        return now - cred.minted_at < self.reuse_for and now < cred.expires_at

    async def get(self) -> str:
        """The current token; mints (once, for all workers) when it is due."""
        now = self.clock()
        cached = self._cached
        if cached is not None and self._fresh(cached, now):
            return cached.token
        async with self.pool.acquire() as conn, conn.transaction():
            cred = await store.lock_credential(conn, self.key)
            if cred.disabled_reason:
                raise Disabled(cred.disabled_reason)
            if not cred.token or not self._fresh(cred, now):
                cred = await self._mint_locked(conn, cred, now)
        self._cached = cred
        return cred.token

    async def remint(self, rejected: str) -> str:
        """The provider said ``rejected`` has expired. Returns a newer token (another
        worker's, or one minted now); raises :class:`Disabled` if the rejected token is
        younger than ``min_interval`` — a new one would be refused too, and would count
        against the provider's refresh limit — or the credential is disabled."""
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            cred = await store.lock_credential(conn, self.key)
            if cred.disabled_reason:
                raise Disabled(cred.disabled_reason)
            if cred.token and cred.token != rejected and self._fresh(cred, now):
                self._cached = cred
                return cred.token
            if now - cred.minted_at < self.min_interval:
                reason = "provider rejected a token minted moments ago (clock or key problem)"
                await store.disable_credential(conn, self.key, reason, now)
                log.error("push credential %s disabled: %s", self.key, reason)
                raise Disabled(reason)
            cred = await self._mint_locked(conn, cred, now, force=True)
        self._cached = cred
        return cred.token

    async def disable(self, reason: str) -> None:
        """The alarm: log it loudly, and stop this app's sends until an operator acts."""
        async with self.pool.acquire() as conn:
            await store.disable_credential(conn, self.key, reason, self.clock())
        self._cached = None
        log.error("push credential %s disabled: %s — sends wait for an operator", self.key, reason)

    async def _mint_locked(
        self,
        conn: Connection,
        cred: store.Credential,
        now: dt.datetime,
        *,
        force: bool = False,
    ) -> store.Credential:
        if cred.token and not force and now - cred.minted_at < self.min_interval:
            return cred  # never refresh faster than the provider allows
        minted = await self.mint(now)
        self.minted += 1
        fresh = store.Credential(self.key, minted.token, now, minted.expires_at, None)
        await store.save_credential(conn, fresh)
        log.info("push credential %s minted", self.key)
        return fresh

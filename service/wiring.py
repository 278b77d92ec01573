"""What the API and the worker are both built on, wired once.

:func:`core` opens the connections a process needs (the PostgreSQL pool, the Redis client,
the change notifier) and names the process's own HLC node; :meth:`Core.sync_service` and
:meth:`Core.care_service` build the domain services the same way for both. The API adds its
edge (``service/app.py``), the worker its job handlers (``service/worker/main.py``).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
import redis.asyncio as aioredis

from service.care.alerts import AlertService
from service.care.service import CareService
from service.config import Settings
from service.infra.crypto import master_keys
from service.infra.outages import is_outage
from service.store.db import create_pool
from service.sync.private_text import PrivateText
from service.sync.realtime import ChangeNotifier
from service.sync.service import SeqOracle, SyncService
from sync.hlc import Clock

__all__ = ["DEFAULT_REDIS_URL", "Core", "core", "private_text", "redis_client"]

log = logging.getLogger("kith")

#: Where Redis is looked for when REDIS_URL is unset (sync works without it).
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: A Redis call that hangs must not hold up a request or a job: these fail it fast.
REDIS_TIMEOUT_S = 2

Role = Literal["api", "worker"]


def redis_client(settings: Settings) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        settings.redis_url or DEFAULT_REDIS_URL,
        socket_timeout=REDIS_TIMEOUT_S,
        socket_connect_timeout=REDIS_TIMEOUT_S,
    )


@dataclass(frozen=True, slots=True)
class Core:
    """One process's connections and clock."""

    settings: Settings
    pool: asyncpg.Pool[Any]
    redis: aioredis.Redis
    notifier: ChangeNotifier
    #: The process's own HLC node, distinct per process, so two processes never mint the
    #: same stamp for their server writes.
    clock: Clock
    #: Every person's data key for their private text, cached per process (decision 0021).
    private: PrivateText

    def sync_service(
        self,
        *,
        seqs: SeqOracle | None = None,
        evaluate_debounce_s: float | None = None,
        wake_workers: Callable[[], Awaitable[None]] | None = None,
    ) -> SyncService:
        """The sync engine, announcing and publishing every committed change."""
        return SyncService(
            self.pool,
            self.clock,
            max_skew_ms=self.settings.sync.max_clock_skew_ms,
            publish=self.notifier.publish,
            announce=self.notifier.announce,
            seqs=seqs,
            evaluate_debounce_s=evaluate_debounce_s,
            wake_workers=wake_workers,
            private=self.private,
        )

    def care_service(self, sync: SyncService) -> CareService:
        return CareService(self.pool, sync)

    def alert_service(
        self,
        sync: SyncService,
        care: CareService,
        wake_workers: Callable[[], Awaitable[None]] | None = None,
    ) -> AlertService:
        """Acknowledging and resolving alerts; ``wake_workers`` (the API's) gets their
        pushes out at once."""
        return AlertService(self.pool, sync, care, wake_workers=wake_workers)


def private_text(settings: Settings, pool: asyncpg.Pool[Any]) -> PrivateText:
    """The data keys of private text, under the configured master keys (``kith dev`` and
    the tests: a development key made once under the data directory)."""
    encryption = settings.encryption
    return PrivateText(
        pool,
        master_keys(encryption, settings.data_dir),
        cache_size=encryption.key_cache_size,
        cache_ttl_s=encryption.key_cache_ttl_s,
    )


@asynccontextmanager
async def core(settings: Settings, role: Role) -> AsyncIterator[Core]:
    """Open a process's connections; close them, in reverse, when it ends."""
    database = settings.database
    if not database.url:
        raise RuntimeError("DATABASE_URL is not set (use `kith dev` for embedded servers)")
    # The worker's concurrency comes from its jobs, not from a pool floor kept warm.
    min_size = database.pool_min if role == "api" else 1
    try:
        pool = await create_pool(database.url, min_size=min_size, max_size=database.pool_max)
    except Exception as exc:
        if role != "api" or not is_outage(exc):
            raise
        # The API starts anyway: not ready, answering 503 until PostgreSQL is back, when
        # the empty pool connects on demand (decision 0014).
        log.warning(
            "PostgreSQL unavailable at start (%s): connecting on demand", type(exc).__name__
        )
        pool = await create_pool(database.url, min_size=0, max_size=database.pool_max)
    client = redis_client(settings)
    notifier = ChangeNotifier(client)
    prefix = "srv" if role == "api" else "wrk"
    private = private_text(settings, pool)
    try:
        yield Core(
            settings, pool, client, notifier, Clock(f"{prefix}-{secrets.token_hex(4)}"), private
        )
    finally:
        await notifier.close()
        await client.aclose()
        await pool.close()

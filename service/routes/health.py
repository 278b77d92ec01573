"""HTTP: liveness and readiness probes."""

from __future__ import annotations

import asyncio

import asyncpg
import msgspec
import redis.asyncio as aioredis
from litestar import Response, get
from litestar.di import NamedDependency

__all__ = ["live", "ready"]


class Health(msgspec.Struct):
    status: str
    postgres: str = "unknown"
    redis: str = "unknown"


@get("/health/live", tags=["health"], summary="The process is up")
async def live() -> Health:
    return Health("ok")


@get("/health/ready", tags=["health"], summary="PostgreSQL and Redis answer")
async def ready(
    pool: NamedDependency[asyncpg.Pool], redis_client: NamedDependency[aioredis.Redis]
) -> Response[Health]:
    async def pg() -> str:
        try:
            await asyncio.wait_for(pool.fetchval("SELECT 1"), 2)
            return "ok"
        except Exception:
            return "down"

    async def rd() -> str:
        try:
            await asyncio.wait_for(redis_client.ping(), 2)
            return "ok"
        except Exception:
            return "down"

    p, r = await asyncio.gather(pg(), rd())
    # Redis only speeds things up (pokes); without it the API still serves correctly.
    status = "ok" if p == "ok" else "unavailable"
    return Response(Health(status, p, r), status_code=200 if p == "ok" else 503)

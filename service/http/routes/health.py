"""HTTP: liveness and readiness probes.

``/health/ready`` asks PostgreSQL and Redis at once, each with a one-second deadline, and
names each one's state (``ok``, ``timeout`` or ``down``). Only PostgreSQL decides the
status code (503 when it fails): Redis is an accelerator (pokes, rate limits and metrics
fail open without it), and a shared Redis outage must not take every API process out of
the load balancer at once. Redis trouble shows as ``"status": "degraded"`` with 200.
Requests that need PostgreSQL meanwhile get ``503 unavailable`` with ``Retry-After``
(``service/http/problems.py``), as does readiness itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import msgspec
from litestar import Response, get
from litestar.openapi.datastructures import ResponseSpec

from service.http.deps import PoolDep, RedisDep
from service.infra.outages import RETRY_AFTER_S

__all__ = ["live", "ready"]


PROBE_TIMEOUT_S = 1.0


class Health(msgspec.Struct):
    status: str
    postgres: str = "unknown"
    redis: str = "unknown"


@get("/health/live", tags=["health"], summary="The process is up")
async def live() -> Health:
    return Health("ok")


@get(
    "/health/ready",
    tags=["health"],
    summary="PostgreSQL and Redis answer",
    responses={503: ResponseSpec(Health, description="PostgreSQL does not answer")},
)
async def ready(pool: PoolDep, redis_client: RedisDep) -> Response[Health]:
    p, r = await asyncio.gather(_probe(pool.fetchval("SELECT 1")), _probe(redis_client.ping()))
    # Redis only speeds things up (pokes); without it the API still serves correctly.
    status = "unavailable" if p != "ok" else "ok" if r == "ok" else "degraded"
    if p == "ok":
        return Response(Health(status, p, r))
    return Response(
        Health(status, p, r), status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)}
    )


async def _probe(call: Awaitable[object]) -> str:
    try:
        await asyncio.wait_for(call, PROBE_TIMEOUT_S)
    except TimeoutError:
        return "timeout"
    except Exception:
        return "down"
    return "ok"

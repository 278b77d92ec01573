"""HTTP: what a handler can ask for, by name — one alias each.

Litestar injects a dependency by its parameter's name (``NamedDependency``), taken as built:
the objects are the app's own (its services, the pool), so there is nothing to validate —
and no per-request cost, and the services may be dataclasses. The aliases keep
a handler's signature to what it uses, in a line, and say once which object each name is.
The objects themselves are built by ``service/app.py`` (through ``service/wiring.py``).
"""

from __future__ import annotations

from typing import Annotated, Any, TypeAlias

import asyncpg
import redis.asyncio as aioredis
from litestar import Controller, Request
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter, SkipValidation

from service.accounts.identities import Identities
from service.accounts.recovery import Recovery
from service.accounts.service import AccountService
from service.care.alerts import AlertService
from service.care.service import CareService
from service.http.guard import Caller, resolve_caller
from service.http.ratelimit import RateLimiter
from service.lifecycle.erasure import Erasure
from service.lifecycle.export import Exporter
from service.sync.realtime import Realtime
from service.sync.service import SyncService

__all__ = [
    "AccountsDep",
    "AlertsDep",
    "AnyRequest",
    "CallerDep",
    "CareDep",
    "ErasureDep",
    "ExporterDep",
    "IdentitiesDep",
    "LimitsDep",
    "PageLimit",
    "PoolDep",
    "RealtimeDep",
    "RecoveryDep",
    "RedisDep",
    "SignedIn",
    "SyncDep",
]

AnyRequest: TypeAlias = Request[Any, Any, Any]
#: The signed-in person (``service/http/guard.py``).
CallerDep: TypeAlias = SkipValidation[NamedDependency[Caller]]
PoolDep: TypeAlias = SkipValidation[NamedDependency[asyncpg.Pool]]
RedisDep: TypeAlias = SkipValidation[NamedDependency[aioredis.Redis]]
AccountsDep: TypeAlias = SkipValidation[NamedDependency[AccountService]]
RecoveryDep: TypeAlias = SkipValidation[NamedDependency[Recovery]]
IdentitiesDep: TypeAlias = SkipValidation[NamedDependency[Identities]]
LimitsDep: TypeAlias = SkipValidation[NamedDependency[RateLimiter]]
SyncDep: TypeAlias = SkipValidation[NamedDependency[SyncService]]
RealtimeDep: TypeAlias = SkipValidation[NamedDependency[Realtime]]
CareDep: TypeAlias = SkipValidation[NamedDependency[CareService]]
AlertsDep: TypeAlias = SkipValidation[NamedDependency[AlertService]]
ErasureDep: TypeAlias = SkipValidation[NamedDependency[Erasure]]
ExporterDep: TypeAlias = SkipValidation[NamedDependency[Exporter]]


class SignedIn(Controller):
    """Routes for a signed-in person: a bearer access token, resolved to ``caller`` (a route
    may swap the resolver, as the sync routes do, but never go without one)."""

    dependencies = {"caller": Provide(resolve_caller)}
    security = [{"bearer": []}]


#: ``?limit=``, how many a page holds: 1 to 1,000 (each route picks its default).
PageLimit: TypeAlias = Annotated[int, QueryParameter(ge=1, le=1000)]

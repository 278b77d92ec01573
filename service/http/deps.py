"""HTTP: what a handler can ask for, by name — one alias each.

Litestar injects a dependency by its parameter's name (``NamedDependency``); the aliases keep
a handler's signature to what it uses, in a line, and say once which object each name is.
The objects themselves are built by ``service/app.py`` (through ``service/wiring.py``).
"""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg
import redis.asyncio as aioredis
from litestar import Controller, Request
from litestar.di import NamedDependency, Provide

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
    "PoolDep",
    "RealtimeDep",
    "RecoveryDep",
    "RedisDep",
    "SignedIn",
    "SyncDep",
]

AnyRequest: TypeAlias = Request[Any, Any, Any]
#: The signed-in person (``service/http/guard.py``).
CallerDep: TypeAlias = NamedDependency[Caller]
PoolDep: TypeAlias = NamedDependency[asyncpg.Pool]
RedisDep: TypeAlias = NamedDependency[aioredis.Redis]
AccountsDep: TypeAlias = NamedDependency[AccountService]
RecoveryDep: TypeAlias = NamedDependency[Recovery]
IdentitiesDep: TypeAlias = NamedDependency[Identities]
LimitsDep: TypeAlias = NamedDependency[RateLimiter]
SyncDep: TypeAlias = NamedDependency[SyncService]
RealtimeDep: TypeAlias = NamedDependency[Realtime]
CareDep: TypeAlias = NamedDependency[CareService]
AlertsDep: TypeAlias = NamedDependency[AlertService]
ErasureDep: TypeAlias = NamedDependency[Erasure]
ExporterDep: TypeAlias = NamedDependency[Exporter]


class SignedIn(Controller):
    """Routes for a signed-in person: a bearer access token, resolved to ``caller`` (a route
    may swap the resolver, as the sync routes do, but never go without one)."""

    dependencies = {"caller": Provide(resolve_caller)}
    security = [{"bearer": []}]

"""HTTP: sync protocol v1 (docs/protocol.md)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, QueryParameter

from schemas.common import ID_PATTERN
from schemas.problem import FieldError
from schemas.sync import ConflictsResponse, PullRequest, PullResponse, PushRequest, PushResponse
from schemas.tables import TableName
from service.errors import InvalidInput
from service.http.guard import (
    Caller,
    PendingSession,
    resolve_caller,
    resolve_caller_lazily,
    resolve_caller_unconfirmed,
)
from service.sync.service import SyncService

__all__ = ["SyncController"]

CallerDep = NamedDependency[Caller]
SyncDep = NamedDependency[SyncService]


class SyncController(Controller):
    path = "/v1/sync"
    tags = ["sync"]
    dependencies = {"caller": Provide(resolve_caller)}
    security = [{"bearer": []}]

    @post(
        "/push",
        status_code=200,
        summary="Send local changes (idempotent per batch_id)",
        dependencies={"caller": Provide(resolve_caller_unconfirmed)},
    )
    async def push(
        self, request: Request[Any, Any, Any], caller: CallerDep, data: JSONBody[PushRequest]
    ) -> PushResponse:
        # The service from the state, as in ``pull``: a second injected dependency would
        # make Litestar resolve them in an anyio task group (~5 % of a sync's CPU).
        request.app.state.consent.check(caller.terms_version)  # 403 consent_required
        sync: SyncService = request.app.state.sync
        return await sync.push(caller, data, session=PendingSession(request, caller))

    @post(
        "/pull",
        status_code=200,
        summary="Fetch changes after a cursor, one page",
        dependencies={"caller": Provide(resolve_caller_lazily)},
    )
    async def pull(
        self, request: Request[Any, Any, Any], caller: CallerDep, data: JSONBody[PullRequest]
    ) -> PullResponse:
        # The most frequent request of all, usually answered from memory: the service is
        # taken from the state rather than injected, because Litestar resolves two or more
        # dependencies in an anyio task group — which costs more than the whole answer.
        request.app.state.consent.check(caller.terms_version)  # 403 consent_required
        sync: SyncService = request.app.state.sync
        # The session may only be known live from this process's cache: enough to say
        # "nothing new", but confirmed in PostgreSQL before anything read is returned.
        pending = None if caller.session_confirmed else PendingSession(request, caller)
        return await sync.pull(caller, data, session=pending)

    @get("/conflicts", summary="Values that lost a merge, kept 30 days for their owner")
    async def conflicts(
        self,
        caller: CallerDep,
        sync: SyncDep,
        since: Annotated[
            dt.datetime | None,
            QueryParameter(description="RFC 3339 with offset; default 30 days ago"),
        ] = None,
        after: Annotated[
            str | None, QueryParameter(description="`next` from the previous page")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 200,
        table: Annotated[TableName | None, QueryParameter(description="one table")] = None,
        record_id: Annotated[
            str | None, QueryParameter(name="id", pattern=ID_PATTERN, description="one record")
        ] = None,
    ) -> ConflictsResponse:
        if since is not None and since.tzinfo is None:
            message = "needs a UTC offset, e.g. 2026-11-01T00:00:00Z"
            raise InvalidInput(f"since: {message}", errors=[FieldError("since", message)])
        start = since or dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
        return await sync.conflicts(
            caller, since=start, after=after, limit=limit, table=table, record_id=record_id
        )

"""HTTP: sync protocol v1 (docs/protocol.md)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec
from litestar import get, post
from litestar.di import Provide
from litestar.openapi.spec import Example
from litestar.params import JSONBody, QueryParameter, SkipValidation

from schemas.common import ID_PATTERN, described
from schemas.problem import FieldError
from schemas.sync import ConflictsResponse, PullRequest, PullResponse, PushRequest, PushResponse
from schemas.tables import EVENT_TIME_MIN, TableName
from service.errors import Code, InvalidInput
from service.http.deps import AnyRequest, CallerDep, PageLimit, SignedIn, SyncDep
from service.http.guard import (
    PendingSession,
    resolve_caller_lazily,
    resolve_caller_unconfirmed,
)
from service.http.openapi import operation
from service.http.strict_json import typed_body
from service.sync.service import SyncService

__all__ = ["SyncController"]


class SyncController(SignedIn):
    path = "/v1/sync"
    tags = ["sync"]

    @operation(
        post,
        "/push",
        "Send local changes (idempotent per batch_id)",
        Code.DEVICE_MISMATCH,
        Code.READ_ONLY_TABLE,
        Code.BATCH_ID_REUSED,
        Code.CONSENT_REQUIRED,
        dependencies={"caller": Provide(resolve_caller_unconfirmed)},
    )
    async def push(
        self, request: AnyRequest, caller: CallerDep, data: SkipValidation[JSONBody[PushRequest]]
    ) -> PushResponse:
        # ``data`` documents the body; its value is the one decoded strictly before this
        # handler (service/http/strict_json.py), so a large batch is not converted twice.
        body = typed_body(request, PushRequest)
        # The service from the state, as in ``pull``: a second injected dependency would
        # make Litestar resolve them in an anyio task group (~5 % of a sync's CPU).
        request.app.state.consent.check(caller.terms_version)  # 403 consent_required
        sync: SyncService = request.app.state.sync
        return await sync.push(caller, body, session=PendingSession(request, caller))

    @operation(
        post,
        "/pull",
        "Fetch changes after a cursor, one page",
        Code.INVALID_CURSOR,
        Code.CONSENT_REQUIRED,
        dependencies={"caller": Provide(resolve_caller_lazily)},
    )
    async def pull(
        self, request: AnyRequest, caller: CallerDep, data: JSONBody[PullRequest]
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

    @operation(
        get,
        "/conflicts",
        "Values that lost a merge, kept 30 days for their owner",
        Code.INVALID_CURSOR,
    )
    async def conflicts(
        self,
        caller: CallerDep,
        sync: SyncDep,
        since: Annotated[
            str | None,
            QueryParameter(
                description="RFC 3339 with offset, from 1900-01-01T00:00:00Z; default 30 days ago",
                format="date-time",
                pattern=_SINCE_PATTERN,
                examples=[Example(value="2026-11-01T00:00:00Z")],
            ),
        ] = None,
        after: Annotated[
            str | None, QueryParameter(description="`next` from the previous page")
        ] = None,
        limit: PageLimit = 200,
        table: Annotated[TableName | None, QueryParameter(description="one table")] = None,
        record_id: Annotated[
            str | None, QueryParameter(name="id", pattern=ID_PATTERN, description="one record")
        ] = None,
    ) -> ConflictsResponse:
        start = (
            _rfc3339("since", since)
            if since is not None
            else dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
        )
        return await sync.conflicts(
            caller, since=start, after=after, limit=limit, table=table, record_id=record_id
        )


_Instant = Annotated[dt.datetime, msgspec.Meta(tz=True)]
#: The document's pattern for ``since``: years 1901 to 9999, so a generated or typed value
#: the schema allows is never refused (1900 left out: an offset could put it before 1900).
_SINCE_PATTERN = described(
    r"^(19[0-9][1-9]|19[1-9]0|[2-9][0-9]{3})-",
    "an RFC 3339 time with its offset, from 1900, as 2026-11-01T00:00:00Z",
)


def _rfc3339(name: str, value: str) -> dt.datetime:
    """A query parameter documented as RFC 3339 with an offset, parsed as exactly that: no
    numbers read as Unix times, no dates without a time, nothing before 1900 (an instant
    like 0001-01-01T00:00:00+14:00 is before year 1 in UTC and cannot be queried)."""
    try:
        parsed = msgspec.convert(value, _Instant)
    except msgspec.ValidationError:
        message = "must be RFC 3339 with a UTC offset, e.g. 2026-11-01T00:00:00Z"
        raise InvalidInput(f"{name}: {message}", errors=[FieldError(name, message)]) from None
    if parsed < EVENT_TIME_MIN:
        message = "must be 1900-01-01T00:00:00Z or later"
        raise InvalidInput(f"{name}: {message}", errors=[FieldError(name, message)])
    return parsed

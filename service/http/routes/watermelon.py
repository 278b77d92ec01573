"""HTTP: WatermelonDB's sync protocol (``GET /v1/watermelon/pull``, ``POST …/push``).

The app's ``pullChanges``/``pushChanges`` call these with Kith's access token; the logic
is ``service/sync/watermelon.py`` and the guide ``docs/watermelondb.md``.
"""

from __future__ import annotations

from typing import Annotated

from litestar import get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter
from litestar.response import Stream

from schemas.watermelon import WatermelonPullResponse, WatermelonPushResponse
from service.errors import Code
from service.http.deps import AnyRequest, CallerDep, SignedIn
from service.http.openapi import operation, problems
from service.sync.watermelon import WatermelonAdapter, plan_pull

__all__ = ["WatermelonController"]


class WatermelonController(SignedIn):
    path = "/v1/watermelon"
    tags = ["watermelondb"]

    @operation(
        get,
        "/pull",
        "WatermelonDB pullChanges: every change since lastPulledAt, one response",
        responses={
            200: ResponseSpec(
                WatermelonPullResponse, description="the changes, streamed as one JSON object"
            ),
            **problems(Code.BAD_REQUEST, Code.CONSENT_REQUIRED),
        },
        description=(
            "Answers `{changes, timestamp}` for `synchronize()` (use `sendCreatedAsUpdated: "
            "true`): live records as `updated`, deleted ones as `deleted`, streamed. "
            "`timestamp` is the space's sequence + 1. A reset answers the whole state with "
            '`experimentalStrategy: "replacement"`. See docs/watermelondb.md.'
        ),
    )
    async def pull(
        self,
        request: AnyRequest,
        caller: CallerDep,
        last_pulled_at: Annotated[
            str | None,
            QueryParameter(description="`timestamp` of the last pull; `null` or absent at first"),
        ] = None,
        schema_version: Annotated[
            int | None, QueryParameter(description="the app's schema version (informative)")
        ] = None,
        migration: Annotated[
            str | None,
            QueryParameter(description="synchronize()'s `migration` as JSON (tables sent whole)"),
        ] = None,
        tables: Annotated[
            str | None, QueryParameter(description="comma-separated tables the app declares")
        ] = None,
        columns: Annotated[
            str | None,
            QueryParameter(description="comma-separated `table.column` the app declares"),
        ] = None,
    ) -> Stream:
        request.app.state.consent.check(caller.terms_version)  # 403 consent_required
        plan = plan_pull(last_pulled_at, migration, tables, columns)  # 400s before streaming
        adapter: WatermelonAdapter = request.app.state.watermelon
        return Stream(adapter.pull(caller, plan), media_type="application/json")

    @operation(
        post,
        "/push",
        "WatermelonDB pushChanges: apply local changes (a retry is applied once)",
        Code.BAD_REQUEST,
        Code.READ_ONLY_TABLE,
        Code.CONSENT_REQUIRED,
        description="The body is `{changes, lastPulledAt}` or the bare changes object "
        "(`{table: {created, updated, deleted}}`, raw records with `_status`/`_changed`). "
        "Created rows are written whole, updated rows only their `_changed` columns, "
        "stamped with `updated_at` and the token's device. A bad row is a 4xx naming "
        "`table.section[id].column`, and nothing is written. See docs/watermelondb.md.",
    )
    async def push(self, request: AnyRequest, caller: CallerDep) -> WatermelonPushResponse:
        request.app.state.consent.check(caller.terms_version)  # 403 consent_required
        adapter: WatermelonAdapter = request.app.state.watermelon
        return await adapter.push(caller, await request.body())

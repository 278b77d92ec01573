"""HTTP: the caller's nudges — what was sent, what waits and why — and button feedback."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from litestar import get, post
from litestar.params import JSONBody, Parameter, QueryParameter

from schemas.common import described
from schemas.nudges import FeedbackRequest, FeedbackResponse, NudgeOut, NudgesResponse
from service.errors import Code, NotFound
from service.http.deps import CallerDep, PoolDep, SignedIn, SyncDep
from service.http.openapi import operation
from service.nudges.budget import Budget
from service.store import nudges as store
from service.store import sync as sync_store

__all__ = ["NudgeController"]

SNOOZE = dt.timedelta(days=7)
NudgeId = Parameter(
    pattern=described(r"^[A-Za-z0-9._:-]{1,200}$(?!\n)", "a nudge id from the nudge list"),
    description="A nudge id of the caller's",
)

#: ``?limit=`` of the nudge list: 1 to 500.
NudgeLimit = Annotated[int, QueryParameter(ge=1, le=500)]


class NudgeController(SignedIn):
    path = "/v1/nudges"
    tags = ["nudges"]

    @operation(get, "/", "My nudges, newest first: sent, waiting, merged, skipped — and why")
    async def list_nudges(
        self, caller: CallerDep, pool: PoolDep, limit: NudgeLimit = 100
    ) -> NudgesResponse:
        rows = await store.list_nudges(pool, caller.space_id, limit)
        return NudgesResponse([NudgeOut(**r) for r in rows])

    @operation(post, "/{nudge_id:str}/feedback", "A nudge's button was pressed", Code.NOT_FOUND)
    async def feedback(
        self,
        caller: CallerDep,
        pool: PoolDep,
        sync: SyncDep,
        data: JSONBody[FeedbackRequest],
        nudge_id: str = NudgeId,
    ) -> FeedbackResponse:
        now = dt.datetime.now(dt.UTC)
        async with pool.acquire() as conn:
            found = await store.record_feedback(conn, caller.space_id, nudge_id, data.action, now)
            settings = await sync_store.settings_of(conn, caller.space_id)
        if found is None:
            raise NotFound("no nudge of yours has this id")
        contact_id, insight_id = found
        snoozed_until: dt.date | None = None
        if data.action == "snooze" and contact_id:
            # Through the merge, with the server's clock: every device gets it on its next
            # pull, and the planner skips the contact until then.
            today = now.astimezone(Budget.from_settings(settings).zone).date()
            snoozed_until = today + SNOOZE
            await sync.server_write(
                caller.space_id,
                "contacts",
                contact_id,
                {"snoozed_until": snoozed_until.isoformat()},
            )
        elif data.action in {"plan", "already_saw"}:
            await sync.server_write(caller.space_id, "insights", insight_id, {"status": "acted"})
        return FeedbackResponse(nudge_id, data.action, snoozed_until)

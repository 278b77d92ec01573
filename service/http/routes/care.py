"""HTTP: caregiver sharing — both sides (docs/protocol.md, "Caregivers")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import delete, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.handlers import HTTPRouteHandler
from litestar.params import JSONBody, Parameter, SkipValidation

from schemas.care import (
    ALERT_ID_PATTERN,
    AcceptRequest,
    AlertAction,
    AuditEntry,
    AuditResponse,
    CaregiverAlertOut,
    CaregiverOut,
    CaregiversResponse,
    InvitationOut,
    InvitationRequest,
    MyAlertOut,
    MyAlertsResponse,
    PeopleResponse,
    PersonOut,
    ScopesRequest,
    SummaryResponse,
)
from schemas.common import described
from service.care.alerts import Channel
from service.errors import Code
from service.http.deps import AlertsDep, CallerDep, CareDep, PageLimit, SignedIn
from service.http.openapi import operation, problems
from service.store.care import Link

__all__ = ["CareController"]

LinkId = Parameter(
    pattern=described(r"^cl[0-9a-f]{16}$(?!\n)", "a care link id: cl and 16 hex digits"),
    description="A care link id",
)
AlertIdParam = Parameter(
    pattern=ALERT_ID_PATTERN, description="An alert id: help:<check-in id> or missed:<local date>"
)


ActionBody = JSONBody[AlertAction | None]


@dataclass(frozen=True, slots=True)
class AlertPath:
    """The alert a caregiver acts on: ``/people/{link_id}/alerts/{alert_id}``."""

    link_id: str
    alert_id: str


def _their_alert(link_id: str = LinkId, alert_id: str = AlertIdParam) -> AlertPath:
    return AlertPath(link_id, alert_id)


_THEIR_ALERT = {"alert": Provide(_their_alert, sync_to_thread=False)}
TheirAlert = SkipValidation[NamedDependency[AlertPath]]

_MY_ERRORS = problems(Code.ALERT_NOT_FOUND)


def _on_link(
    method: Callable[..., HTTPRouteHandler], path: str, summary: str, *, status_code: int = 200
) -> HTTPRouteHandler:
    """A route on one care link (``path`` holds ``{link_id}``): 404 when the link is not
    the caller's, so no one can probe another person's links."""
    return operation(method, path, summary, Code.NOT_FOUND, status_code=status_code)


def _on_alert(action: str, summary: str, *errors: Code, description: str) -> HTTPRouteHandler:
    """A caregiver's action on an alert of someone they care for:
    ``POST /people/{link_id}/alerts/{alert_id}/{action}``; 404 when the link is not theirs."""
    return operation(
        post,
        f"/people/{{link_id:str}}/alerts/{{alert_id:str}}/{action}",
        summary,
        Code.ALERTS_NOT_SHARED,
        Code.NOT_FOUND,
        Code.ALERT_NOT_FOUND,
        *errors,
        dependencies=_THEIR_ALERT,
        description=description,
    )


def _via(data: AlertAction | None) -> Channel:
    """Where a caregiver acted from: the push's button, or the app."""
    return "push" if data is not None and data.via == "push" else "api"


def _caregiver_alert(entry: dict[str, Any]) -> CaregiverAlertOut:
    return msgspec.convert(entry, CaregiverAlertOut)


def _my_alert(fields: dict[str, Any]) -> MyAlertOut:
    return msgspec.convert(fields, MyAlertOut)


def _caregiver_out(link: Link) -> CaregiverOut:
    return CaregiverOut(link.id, link.caregiver_name, link.scopes, link.state, link.created_at)  # type: ignore[arg-type]


def _person_out(link: Link) -> PersonOut:
    return PersonOut(link.id, link.label, link.scopes, link.state, link.summary_id)  # type: ignore[arg-type]


class CareController(SignedIn):
    path = "/v1/care"
    tags = ["caregivers"]

    # -- the older adult's side

    @operation(post, "/invitations", "Invite a caregiver (code valid 72 h, once)", status_code=201)
    async def invite(
        self, caller: CallerDep, care: CareDep, data: JSONBody[InvitationRequest]
    ) -> InvitationOut:
        code, expires_at = await care.invite(caller.space_id, caller.user_id, data.scopes)
        return InvitationOut(code, expires_at)

    @operation(get, "/caregivers", "My caregivers and what each may see")
    async def caregivers(self, caller: CallerDep, care: CareDep) -> CaregiversResponse:
        return CaregiversResponse(
            [_caregiver_out(x) for x in await care.caregivers(caller.space_id)]
        )

    @_on_link(put, "/caregivers/{link_id:str}/scopes", "Choose what a caregiver may see")
    async def set_scopes(
        self, caller: CallerDep, care: CareDep, data: JSONBody[ScopesRequest], link_id: str = LinkId
    ) -> CaregiverOut:
        return _caregiver_out(await care.set_scopes(caller.space_id, link_id, data.scopes))

    @_on_link(post, "/caregivers/{link_id:str}/pause", "Pause sharing")
    async def pause(self, caller: CallerDep, care: CareDep, link_id: str = LinkId) -> CaregiverOut:
        return _caregiver_out(await care.pause(caller.space_id, link_id))

    @_on_link(post, "/caregivers/{link_id:str}/resume", "Resume sharing")
    async def resume(self, caller: CallerDep, care: CareDep, link_id: str = LinkId) -> CaregiverOut:
        return _caregiver_out(await care.resume(caller.space_id, link_id))

    @_on_link(delete, "/caregivers/{link_id:str}", "Revoke a caregiver", status_code=204)
    async def revoke(self, caller: CallerDep, care: CareDep, link_id: str = LinkId) -> None:
        await care.revoke(caller.space_id, link_id)

    @operation(get, "/audit", "Who looked at my summary, and when")
    async def audit(
        self, caller: CallerDep, care: CareDep, limit: PageLimit = 200
    ) -> AuditResponse:
        rows = await care.audit(caller.space_id, limit)
        return AuditResponse(
            [
                AuditEntry(
                    r.link_id,
                    r.caregiver_name,
                    r.channel,  # type: ignore[arg-type]
                    r.viewed_at,
                    r.action,  # type: ignore[arg-type]
                    r.alert_id,
                )
                for r in rows
            ]
        )

    @operation(get, "/alerts", "My alerts: who saw them, whether they are resolved")
    async def my_alerts(self, caller: CallerDep, alerts: AlertsDep) -> MyAlertsResponse:
        return MyAlertsResponse([_my_alert(a) for a in await alerts.of_person(caller.space_id)])

    @operation(
        post,
        "/alerts/{alert_id:str}/resolve",
        "All is well now: resolve my alert (ends its escalation)",
        responses=_MY_ERRORS,
    )
    async def resolve_mine(
        self, caller: CallerDep, alerts: AlertsDep, alert_id: str = AlertIdParam
    ) -> MyAlertOut:
        return _my_alert(await alerts.resolve_for_person(caller.space_id, caller.user_id, alert_id))

    # -- the caregiver's side

    @operation(
        post,
        "/invitations/accept",
        "Accept an invitation to care",
        Code.INVITATION_INVALID,
        Code.OWN_INVITATION,
        Code.ALREADY_LINKED,
        status_code=201,
    )
    async def accept(
        self, caller: CallerDep, care: CareDep, data: JSONBody[AcceptRequest]
    ) -> PersonOut:
        link = await care.accept(caller.user_id, caller.space_id, data.code, data.label)
        return _person_out(link)

    @operation(get, "/people", "The people I care for")
    async def people(self, caller: CallerDep, care: CareDep) -> PeopleResponse:
        return PeopleResponse([_person_out(x) for x in await care.people(caller.user_id)])

    @_on_link(get, "/people/{link_id:str}/summary", "Their summary now (audited)")
    async def summary(
        self, caller: CallerDep, care: CareDep, link_id: str = LinkId
    ) -> SummaryResponse:
        link, summary, at = await care.summary_for(caller.user_id, link_id, "api")
        return SummaryResponse(link.id, link.label, link.scopes, summary, at)  # type: ignore[arg-type]

    @_on_link(delete, "/people/{link_id:str}", "Stop caring for someone", status_code=204)
    async def leave(self, caller: CallerDep, care: CareDep, link_id: str = LinkId) -> None:
        await care.leave(caller.user_id, link_id)

    @_on_alert(
        "acknowledge",
        "I'm on it: acknowledge their alert (idempotent; the first one wins)",
        Code.ALERT_RESOLVED,
        description='The body is optional: `{"via": "push"}` when the push\'s button '
        "was tapped (recorded in the person's audit), else `app`.",
    )
    async def acknowledge(
        self, caller: CallerDep, alerts: AlertsDep, alert: TheirAlert, data: ActionBody = None
    ) -> CaregiverAlertOut:
        entry = await alerts.acknowledge(caller.user_id, alert.link_id, alert.alert_id, _via(data))
        return _caregiver_alert(entry)

    @_on_alert(
        "resolve",
        "Resolve their alert (ends its escalation; idempotent)",
        description="The body is optional, as for acknowledge.",
    )
    async def resolve(
        self, caller: CallerDep, alerts: AlertsDep, alert: TheirAlert, data: ActionBody = None
    ) -> CaregiverAlertOut:
        return _caregiver_alert(
            await alerts.resolve_for_caregiver(
                caller.user_id, alert.link_id, alert.alert_id, _via(data)
            )
        )

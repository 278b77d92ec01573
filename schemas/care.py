"""Caregiver sharing on the wire."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from schemas.common import described

__all__ = [
    "ALERT_ID_PATTERN",
    "AcceptRequest",
    "AlertAction",
    "AlertId",
    "AuditEntry",
    "AuditResponse",
    "CaregiverAlertOut",
    "CaregiverOut",
    "CaregiversResponse",
    "InvitationOut",
    "InvitationRequest",
    "MyAlertOut",
    "MyAlertsResponse",
    "PeopleResponse",
    "PersonOut",
    "Scope",
    "ScopesRequest",
    "SummaryResponse",
]

#: check_ins: today's status, last check-in time and mood · contact_trend: weekly in-person
#: vs remote counts, days since the last in-person meeting · alerts: missed check-in,
#: need-help, isolation risk. Reflections, contact names and notes are never shared.
Scope = Literal["check_ins", "contact_trend", "alerts"]
Scopes = Annotated[list[Scope], Meta(max_length=3)]


class InvitationRequest(Struct, forbid_unknown_fields=True):
    scopes: Scopes = []


class InvitationOut(Struct):
    code: str  # e.g. "K7QM-3XPA": single use
    expires_at: dt.datetime


class AcceptRequest(Struct, forbid_unknown_fields=True):
    code: Annotated[
        str,
        Meta(
            min_length=4,
            max_length=32,
            pattern=described(r"^[A-Za-z0-9 -]+$(?!\n)", "the invitation code, as K7QM-3XPA"),
        ),
    ]
    #: What you call them ("Mum"); defaults to their display name.
    label: Annotated[str, Meta(min_length=1, max_length=80)] | None = None


class ScopesRequest(Struct, forbid_unknown_fields=True):
    scopes: Scopes


class CaregiverOut(Struct):
    """One of my caregivers (I am the older adult)."""

    link_id: str
    caregiver_name: str
    scopes: list[Scope]
    state: Literal["active", "paused"]
    since: dt.datetime


class CaregiversResponse(Struct):
    caregivers: list[CaregiverOut]


class PersonOut(Struct):
    """Someone I care for."""

    link_id: str
    label: str
    scopes: list[Scope]
    state: Literal["active", "paused"]
    summary_id: str  # the care_summaries row in my space (while active)


class PeopleResponse(Struct):
    people: list[PersonOut]


class SummaryResponse(Struct):
    link_id: str
    label: str
    scopes: list[Scope]
    summary: dict[str, Any]
    computed_at: dt.datetime


class AuditEntry(Struct):
    """A caregiver looked (``viewed``), or someone acted on an alert. ``link_id`` is None
    (and ``caregiver_name`` is the person's own name) for the person's own resolution."""

    link_id: str | None
    caregiver_name: str
    channel: Literal["api", "web", "push"]
    viewed_at: dt.datetime  # when it happened
    action: Literal["viewed", "acknowledged", "resolved"] = "viewed"
    alert_id: str | None = None


class AuditResponse(Struct):
    views: list[AuditEntry]


# -- alerts: acknowledge, resolve (decision 0018) ----------------------------------------

#: ``help:<check-in id>`` (an "I need help" check-in) or ``missed:<local date>``: in a body,
#: in the API's paths and on the caregiver page's form.
ALERT_ID_PATTERN = described(
    r"^(help:[A-Za-z0-9_-]{8,64}|missed:[0-9]{4}-[0-9]{2}-[0-9]{2})$(?!\n)",
    "help:<check-in id> or missed:<YYYY-MM-DD>",
)
AlertId = Annotated[
    str, Meta(pattern=ALERT_ID_PATTERN, examples=["help:k-01HZX3Q9", "missed:2026-03-29"])
]
AlertKind = Literal["need_help", "missed_check_in"]
AlertStatus = Literal["open", "acknowledged", "no_response", "resolved"]


class AlertAction(Struct, forbid_unknown_fields=True):
    """How the caregiver acted: in the app (``app``, the default) or with the push's
    button (``push``) — recorded in the person's audit."""

    via: Literal["app", "push"] = "app"


class CaregiverAlertOut(Struct):
    """One alert as a caregiver sees it (also each entry of a summary's ``alerts``)."""

    alert_id: str
    kind: AlertKind
    priority: Literal["normal", "high"]
    raised_at: dt.datetime
    status: AlertStatus
    acknowledged_by: str | None  # the first caregiver's name: "Carol is on it"
    acknowledged_by_me: bool
    acknowledged_at: dt.datetime | None
    also_acknowledged_by: list[str]
    no_response_at: dt.datetime | None  # the ladder ended with nobody answering
    resolved_at: dt.datetime | None
    resolved_by: Literal["person", "caregiver", "check_in"] | None
    resolved_by_name: str | None  # the caregiver's name when one resolved it


class MyAcknowledgement(Struct):
    by: str
    at: dt.datetime


class MyAlertOut(Struct):
    """One of my alerts, as my ``alerts`` records hold it (only names and times of the
    caregivers who answered)."""

    alert_id: str
    kind: AlertKind
    raised_at: dt.datetime
    status: AlertStatus
    acknowledged_by: str | None
    acknowledged_at: dt.datetime | None
    acknowledgements: list[MyAcknowledgement]
    no_response_at: dt.datetime | None
    resolved_at: dt.datetime | None
    resolved_by: str | None  # "you", "check_in" or the caregiver's name
    message: str  # "Carol saw your request at 05:03"


class MyAlertsResponse(Struct):
    alerts: list[MyAlertOut]

"""Caregiver sharing on the wire."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

__all__ = [
    "AcceptRequest",
    "AuditEntry",
    "AuditResponse",
    "CaregiverOut",
    "CaregiversResponse",
    "InvitationOut",
    "InvitationRequest",
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
    code: Annotated[str, Meta(min_length=4, max_length=32, pattern=r"^[A-Za-z0-9 -]+$(?!\n)")]
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
    link_id: str
    caregiver_name: str
    channel: Literal["api", "web"]
    viewed_at: dt.datetime


class AuditResponse(Struct):
    views: list[AuditEntry]

"""Wire types of the account's lifecycle: deleting it and exporting everything in it."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

from schemas.auth import Email, IdentityOut, OneTimeCode, TermsVersion
from schemas.nudges import NudgeRequest
from schemas.sync import ConflictEntry

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "AccountExport",
    "AccountOut",
    "ConsentRequest",
    "ConsentResponse",
    "DeleteAccountRequest",
    "DeletionStarted",
    "EmailChangeConfirm",
    "EmailChangeRequest",
    "EmailChanged",
    "ExportAccount",
    "ExportConflict",
    "ExportConsent",
    "ExportDevice",
    "ExportLink",
    "ExportNudge",
    "ExportRecord",
    "ExportView",
]


class AccountOut(Struct):
    """The signed-in person's account: who they are and every way they can sign in."""

    user_id: str
    email: str | None
    display_name: str
    time_zone: str
    #: False for an account made with Apple or Google that never set a password: deleting
    #: it needs a sign-in within five minutes, and the web deletion page cannot be used.
    has_password: bool
    identities: list[IdentityOut]


class DeleteAccountRequest(Struct, forbid_unknown_fields=True):
    """The password confirms an irreversible act; it may be left out only within five
    minutes of a sign-in on this device (``reauthentication_required`` otherwise)."""

    password: Annotated[str, Meta(min_length=1, max_length=1024)] | None = None


class ConsentRequest(Struct, forbid_unknown_fields=True):
    """Accept the privacy terms ``terms_version`` (the current one) and consent to the
    processing of wellbeing data; both are recorded with the time."""

    terms_version: TermsVersion
    wellbeing_consent: bool


class ConsentResponse(Struct):
    """What was recorded, and an access token that carries it (sync accepts it at once;
    the refresh token stays the same)."""

    terms_version: str
    accepted_at: dt.datetime
    access_token: str
    expires_in: int
    token_type: str = "Bearer"  # noqa: S105 - a scheme name, not a secret


class EmailChangeRequest(Struct, forbid_unknown_fields=True):
    """A code is mailed to ``new_email``; the password confirms it is the person asking."""

    new_email: Email
    password: Annotated[str, Meta(min_length=1, max_length=1024)]


class EmailChangeConfirm(Struct, forbid_unknown_fields=True):
    code: OneTimeCode


class EmailChanged(Struct):
    email: str


class DeletionStarted(Struct):
    """Every device is signed out already; the rest is erased within seconds, by a job that
    finishes even if a worker stops half way."""

    state: Literal["erasing"] = "erasing"


# -- the export: one JSON document, streamed (docs/protocol.md "Export") --------------------

EXPORT_FORMAT = "kith-export"
EXPORT_VERSION = 1


class ExportConsent(Struct):
    terms_version: str | None
    terms_accepted_at: dt.datetime | None
    wellbeing_consent_at: dt.datetime | None


class ExportAccount(Struct):
    user_id: str
    email: str | None  # null: signed up with Apple, which sent no email
    display_name: str
    time_zone: str
    created_at: dt.datetime
    consent: ExportConsent


class ExportDevice(Struct):
    id: str
    platform: str
    name: str
    created_at: dt.datetime
    last_seen_at: dt.datetime | None
    signed_out_at: dt.datetime | None
    push_provider: str | None


class ExportRecord(Struct):
    """A synced record as the server holds it (a tombstone has ``fields: {}``)."""

    id: str
    fields: msgspec.Raw
    deleted: bool
    hlc: str
    created_at: dt.datetime
    updated_at: dt.datetime


class ExportConflict(ConflictEntry):
    """A value that lost a merge or was overwritten (the conflict history): the same entry
    ``GET /v1/sync/conflicts`` answers."""


class ExportNudge(NudgeRequest, frozen=True):
    """A nudge the rules asked for, and what became of it: ``state`` (pending, sent,
    merged, skipped, cancelled) with its ``reason``, the words pushed, the feedback."""

    state: str
    reason: str | None
    merged_into: str | None
    created_at: dt.datetime
    decided_at: dt.datetime | None
    sent_at: dt.datetime | None
    push_title: str | None
    push_body: str | None
    feedback: str | None
    feedback_at: dt.datetime | None


class ExportLink(Struct):
    """A caregiver link: ``my_caregiver`` (someone looks out for me) or ``i_care_for``."""

    id: str
    role: Literal["my_caregiver", "i_care_for"]
    label: str
    scopes: list[str]
    state: str
    created_at: dt.datetime
    updated_at: dt.datetime


class ExportView(Struct):
    """A caregiver looked at my summary, or someone acknowledged or resolved one of my
    alerts (``caregiver_name`` is empty for a caregiver whose own account was deleted
    since; ``link_id`` is null when I resolved it myself)."""

    link_id: str | None
    caregiver_name: str
    channel: str
    viewed_at: dt.datetime  # when it happened
    action: str = "viewed"  # viewed | acknowledged | resolved
    alert_id: str | None = None


class AccountExport(Struct):
    """The whole document ``GET /v1/account/export`` streams, in this key order. Insights
    are ``records.insights`` (with their explanation and evidence); caregivers' summaries
    shared with me are ``records.care_summaries``."""

    format: Literal["kith-export"]
    version: int
    exported_at: dt.datetime
    account: ExportAccount
    devices: list[ExportDevice]
    identities: list[IdentityOut]
    records: dict[str, list[ExportRecord]]
    conflicts: list[ExportConflict]
    nudges: list[ExportNudge]
    caregiver_links: list[ExportLink]
    summary_views: list[ExportView]

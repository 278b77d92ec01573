"""Nudges on the wire: the phone's action-button feedback and the person's nudge history."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from msgspec import Struct

__all__ = [
    "FeedbackAction",
    "FeedbackRequest",
    "FeedbackResponse",
    "NudgeOut",
    "NudgeRequest",
    "NudgesResponse",
]

#: The push's buttons: Plan it · Already saw them · Snooze a week.
FeedbackAction = Literal["plan", "already_saw", "snooze"]


class NudgeRequest(Struct, frozen=True):
    """What the rules asked to push about an insight: the words, before the budget decides
    (the worker's plan; a person's export carries it with what became of it)."""

    id: str
    insight_id: str
    contact_id: str | None
    rule: str
    level: str
    title: str
    body: str


class FeedbackRequest(Struct, forbid_unknown_fields=True):
    action: FeedbackAction


class FeedbackResponse(Struct):
    nudge_id: str
    action: FeedbackAction
    #: "snooze": the contact's new ``snoozed_until`` (already written and synced).
    snoozed_until: dt.date | None = None


class NudgeOut(Struct):
    id: str
    insight_id: str
    contact_id: str | None
    rule: str
    level: str
    #: pending (waits for a slot in the budget) · sent · merged (carried by the nudge in
    #: ``merged_into``) · skipped (``reason``: snoozed, nudges_off, no_push_address) ·
    #: cancelled (``reason``: insight_closed, contact_gone)
    state: Literal["pending", "sent", "merged", "skipped", "cancelled"]
    reason: str | None
    merged_into: str | None
    title: str
    body: str
    created_at: dt.datetime
    sent_at: dt.datetime | None
    feedback: FeedbackAction | None
    feedback_at: dt.datetime | None


class NudgesResponse(Struct):
    nudges: list[NudgeOut]

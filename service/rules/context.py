"""One evaluation's view of a history: every tie's meetings and remote contact in local days.

Built once per ``evaluate`` call and shared by every rule, so each interaction's time zone
conversion happens once. Days are the person's own calendar days (their settings'
``time_zone``): a meeting at 23:30 in Lisbon counts on that Lisbon day, whatever UTC says.
Interactions later than ``now`` (a planned meetup logged ahead) have not happened yet and
are left out.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from msgspec import Struct

from service.rules.catalog import Catalog
from service.rules.history import Contact, History, PersonSettings, Reflection

__all__ = ["Context", "Tie", "Touch", "build_context", "count_between"]


class Touch(Struct, frozen=True, gc=False):
    """One remote interaction with a tie."""

    at: dt.datetime
    day: dt.date
    kind: str


class Tie(Struct, frozen=True, gc=False):
    """One contact as the rules see it."""

    contact: Contact
    meetings: tuple[dt.date, ...]  # distinct local days with an in-person meeting, ascending
    last_meeting_at: dt.datetime | None
    remote: tuple[Touch, ...]  # remote interactions, in event order
    days: tuple[dt.date, ...]  # distinct local days with any interaction, ascending

    def remote_since_last_meeting(self) -> list[Touch]:
        last = self.last_meeting_at
        return [t for t in self.remote if last is None or t.at > last]


@dataclass(frozen=True, slots=True)
class Context:
    now: dt.datetime
    today: dt.date
    settings: PersonSettings
    catalog: Catalog
    ties: Mapping[str, Tie]  # every contact, archived and snoozed included (for counts)
    eligible: tuple[Tie, ...]  # ties that may trigger: not archived, not snoozed; by id
    reflections: tuple[Reflection, ...]


def count_between(days: tuple[dt.date, ...], after: dt.date, through: dt.date) -> int:
    """How many of the sorted ``days`` fall in the half-open range (after, through]."""
    return bisect.bisect_right(days, through) - bisect.bisect_right(days, after)


def build_context(
    history: History, now: dt.datetime, settings: PersonSettings, catalog: Catalog
) -> Context:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    zone = settings.zone
    today = now.astimezone(zone).date()
    # Per contact: (meeting days, days with any interaction, remote touches).
    per: dict[str, tuple[set[dt.date], set[dt.date], list[Touch]]] = {
        cid: (set(), set(), []) for cid in history.contacts
    }
    last_meeting: dict[str, dt.datetime] = {}
    for interaction in history.interactions:  # in event order
        at = interaction.occurred_at
        if at > now:
            break
        day = at.astimezone(zone).date()
        in_person = interaction.kind == "in_person"
        touch = None if in_person else Touch(at, day, interaction.kind)
        for cid in interaction.contact_ids:
            slot = per.get(cid)
            if slot is None:
                continue  # a contact deleted (or not yet synced): soft reference
            slot[1].add(day)
            if touch is None:
                slot[0].add(day)
                last_meeting[cid] = at
            else:
                slot[2].append(touch)
    ties = {
        cid: Tie(
            contact,
            tuple(sorted(per[cid][0])),
            last_meeting.get(cid),
            tuple(per[cid][2]),
            tuple(sorted(per[cid][1])),
        )
        for cid, contact in history.contacts.items()
    }
    eligible = tuple(
        ties[cid]
        for cid in sorted(ties)
        if not ties[cid].contact.archived and not ties[cid].contact.snoozed(today)
    )
    return Context(
        now=now,
        today=today,
        settings=settings,
        catalog=catalog,
        ties=MappingProxyType(ties),
        eligible=eligible,
        reflections=tuple(r for r in history.reflections if r.occurred_at <= now),
    )

"""One evaluation's view of a history: every tie's meetings and remote contact in local days.

Built once per ``evaluate`` call and shared by every rule, so each interaction's time zone
conversion happens once. Days are the person's own calendar days (their settings'
``time_zone``): a meeting at 23:30 in Lisbon counts on that Lisbon day, whatever UTC says.
Interactions later than ``now`` (a planned meetup logged ahead) have not happened yet and
are left out.

It also holds the person-level view every tie rule consults first (``person.py``: days the
person was away from everyone) and the group meetups (three or more contacts at once), so
that a weekly group that stops is recognised as one ending, not as five fading friends.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from msgspec import Struct

from service.rules.history import Contact, History, PersonSettings, Reflection
from service.rules.person import PersonView, person_view

if TYPE_CHECKING:
    from service.rules.catalog import Catalog

__all__ = ["GROUP_SIZE", "Context", "Note", "Tie", "Touch", "build_context", "count_between"]

#: An in-person interaction with at least this many contacts is a group meetup.
GROUP_SIZE = 3


class Touch(Struct, frozen=True, gc=False):
    """One remote interaction with a tie."""

    at: dt.datetime
    day: dt.date
    kind: str


class Note(Struct, frozen=True, gc=False):
    """What the person noted about one one-to-one meeting in person (only if anything)."""

    day: dt.date
    quality: int | None  # 1-5
    initiated_by: str | None  # "me", "them", "mutual"


class Tie(Struct, frozen=True, gc=False):
    """One contact as the rules see it."""

    contact: Contact
    meetings: tuple[dt.date, ...]  # distinct local days with an in-person meeting, ascending
    last_meeting_at: dt.datetime | None
    remote: tuple[Touch, ...]  # remote interactions, in event order
    days: tuple[dt.date, ...]  # distinct local days with any interaction, ascending
    group_days: tuple[dt.date, ...] = ()  # meeting days that were group meetups
    notes: tuple[Note, ...] = ()  # one-to-one meetings the person noted, in event order

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
    person: PersonView
    groups: tuple[tuple[dt.date, frozenset[str]], ...]  # group meetups, in day order
    #: Per-evaluation memo for judgements several rules share (``overdue.assess``).
    memo: dict[str, object] = field(default_factory=dict)

    def start_of_silence(self, tie: Tie) -> dt.date:
        """The last meeting, or the end of a snooze since then: a snooze is a pause asked for."""
        last = tie.meetings[-1]
        until = tie.contact.snoozed_until
        return until if until is not None and until > last else last

    def group_stopped(self, tie: Tie) -> bool:
        """They met at a group meetup, and the group has not met without them since.

        Then the group's silence (it ended, or paused for the summer) is not this
        friendship's: the tie is judged by its meetings outside the group alone. If the
        group goes on meeting without them, the whole silence is theirs again.
        """
        if not tie.group_days:
            return False
        cid = tie.contact.id
        since = self.today - dt.timedelta(days=self.catalog.person.lookback_days)
        seen: dict[str, int] = {}
        for day, members in self.groups:
            if day >= since and cid in members:
                for other in members - {cid}:
                    seen[other] = seen.get(other, 0) + 1
        regulars = {c for c, n in seen.items() if n >= 2}
        last = tie.group_days[-1]
        without = sum(
            1 for day, members in self.groups
            if day > last and cid not in members and len(members & regulars) >= 2
        )  # fmt: skip
        return without < self.catalog.person.group_meets_without


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
    group_days: dict[str, set[dt.date]] = {}
    groups: list[tuple[dt.date, frozenset[str]]] = []
    met_anyone: set[dt.date] = set()
    last_meeting: dict[str, dt.datetime] = {}
    notes: dict[str, list[Note]] = {}
    for interaction in history.interactions:  # in event order
        at = interaction.occurred_at
        if at > now:
            break
        day = at.astimezone(zone).date()
        in_person = interaction.kind == "in_person"
        touch = None if in_person else Touch(at, day, interaction.kind)
        noted = (
            Note(day, interaction.quality, interaction.initiated_by)
            if in_person
            and len(interaction.contact_ids) < GROUP_SIZE
            and (interaction.quality is not None or interaction.initiated_by is not None)
            else None
        )
        if in_person:
            met_anyone.add(day)
            if len(interaction.contact_ids) >= GROUP_SIZE:
                members = frozenset(c for c in interaction.contact_ids if c in per)
                groups.append((day, members))
                for cid in members:
                    group_days.setdefault(cid, set()).add(day)
        for cid in interaction.contact_ids:
            slot = per.get(cid)
            if slot is None:
                continue  # a contact deleted (or not yet synced): soft reference
            slot[1].add(day)
            if touch is None:
                slot[0].add(day)
                last_meeting[cid] = at
                if noted is not None:
                    notes.setdefault(cid, []).append(noted)
            else:
                slot[2].append(touch)
    ties = {
        cid: Tie(
            contact,
            tuple(sorted(per[cid][0])),
            last_meeting.get(cid),
            tuple(per[cid][2]),
            tuple(sorted(per[cid][1])),
            tuple(sorted(group_days.get(cid, ()))),
            tuple(notes.get(cid, ())),
        )
        for cid, contact in history.contacts.items()
    }
    spec = catalog.person
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
        person=person_view(
            sorted(met_anyone),
            today,
            lookback_days=spec.lookback_days,
            away_factor=spec.away_factor,
            min_away_days=spec.min_away_days,
            max_discount=spec.max_away_discount_days,
            people_met=sum(
                1
                for t in ties.values()
                if t.meetings and (today - t.meetings[-1]).days <= spec.lookback_days
            ),
            min_people=spec.min_people,
        ),
        groups=tuple(groups),
    )

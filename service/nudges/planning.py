"""Which pending nudge goes out, what becomes of the others, and what the push says.

Pure: the planner job (``service/nudges/jobs.py``) reads the person's pending nudge
requests and their contacts, calls :func:`decide`, and writes the outcome. Every request
ends in a state a person or an operator can see (``GET /v1/nudges``) — sent, merged into a
sent one, skipped (snoozed, nudges off) or cancelled (the insight closed, the contact went)
— or stays pending for the next slot. None is dropped silently.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from service.store.nudges import Pending

__all__ = ["Decision", "Pending", "Tie", "compose", "decide", "humanize_days"]

#: Most urgent first: a tie about to go dormant outranks one that is merely slipping.
_URGENCY = {"dormant": 5, "at_risk": 4, "suggest": 3, "notice": 2, "slipping": 1}
#: A request that has waited this long rides along with the next nudge that is sent.
MAX_WAIT = dt.timedelta(days=7)
DIGEST_NAMES = 3


@dataclass(frozen=True, slots=True)
class Tie:
    """What the nudge text and the checks need to know about one contact right now."""

    name: str
    live: bool  # exists, not deleted, not archived
    snoozed_until: dt.date | None
    last_met_at: dt.datetime | None  # the latest in-person interaction, if any


@dataclass(slots=True)
class Decision:
    send: Pending | None = None
    merged: list[tuple[Pending, str, str]] = field(default_factory=list)  # (request, why, into)
    skipped: list[tuple[Pending, str]] = field(default_factory=list)
    cancelled: list[tuple[Pending, str]] = field(default_factory=list)
    waiting: list[Pending] = field(default_factory=list)

    def merged_names(self, ties: Mapping[str, Tie]) -> list[str]:
        return [
            ties[p.contact_id].name
            for p, why, _ in self.merged
            if why == "digest" and p.contact_id and p.contact_id in ties
        ]


def _rank(p: Pending) -> tuple[int, float]:
    return (-_URGENCY.get(p.level, 0), p.created_at.timestamp())


def decide(
    pending: Sequence[Pending],
    ties: Mapping[str, Tie],
    open_insights: set[str],
    *,
    now: dt.datetime,
    today: dt.date,
    enabled: bool,
    may_send: bool,
    digest: bool,
) -> Decision:
    """What to do with ``pending`` at ``now``.

    ``open_insights``: insights still open or seen (not resolved, dismissed or acted on).
    ``may_send``: the budget has a slot now. ``digest``: the person prefers one combined
    nudge to a queue.
    """
    out = Decision()
    live: list[Pending] = []
    for p in pending:
        tie = ties.get(p.contact_id) if p.contact_id else None
        if p.insight_id not in open_insights:
            out.cancelled.append((p, "insight_closed"))
        elif p.contact_id and (tie is None or not tie.live):
            out.cancelled.append((p, "contact_gone"))
        elif not enabled:
            out.skipped.append((p, "nudges_off"))
        elif tie is not None and tie.snoozed_until is not None and tie.snoozed_until >= today:
            out.skipped.append((p, "snoozed"))
        else:
            live.append(p)
    # One nudge per contact: an escalation supersedes the request it escalates.
    best: dict[str, Pending] = {}
    for p in sorted(live, key=_rank):
        key = p.contact_id or p.insight_id
        if key in best:
            out.merged.append((p, "superseded", best[key].id))
        else:
            best[key] = p
    ranked = sorted(best.values(), key=_rank)
    if not ranked:
        return out
    if not may_send:
        out.waiting = ranked
        return out
    out.send, rest = ranked[0], ranked[1:]
    for p in rest:
        if digest or now - p.created_at >= MAX_WAIT:
            out.merged.append((p, "digest", out.send.id))
        else:
            out.waiting.append(p)
    return out


def humanize_days(days: int) -> str:
    """'9 days', '3 weeks', '4 months', 'over a year' — how a friend would say it."""
    if days < 14:
        return f"{days} day{'s' if days != 1 else ''}"
    if days < 60:
        return f"{round(days / 7)} weeks"
    if days < 365:
        return f"{round(days / 30.44)} months"
    return "over a year"


def compose(
    lead: Pending, tie: Tie | None, also: Sequence[str], *, now: dt.datetime, local_weekday: int
) -> tuple[str, str]:
    """The push's title and body: specific (who, how long) and actionable (what to do).

    ``local_weekday``: 0 = Monday, in the person's zone — early in the week suggests the
    weekend; from Friday on, the days ahead.
    """
    if tie is None:  # a nudge about the person themselves, not one contact
        return lead.title, lead.body
    when = "this weekend" if local_weekday < 4 else "in the next few days"
    name = tie.name
    if tie.last_met_at is not None:
        days = max((now - tie.last_met_at).days, 1)
        body = (
            f"It's been {humanize_days(days)} since you and {name} met in person — coffee {when}?"
        )
    else:
        body = f"You and {name} haven't met in person in a while — how about a coffee {when}?"
    if also:
        shown = ", ".join(also[:DIGEST_NAMES])
        more = len(also) - DIGEST_NAMES
        body += f" Also on your list: {shown}" + (f" and {more} more." if more > 0 else ".")
    return f"Time to see {name}?", body

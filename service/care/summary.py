"""What a caregiver may see about the person they care for — computed, pure.

Only counts, times and statuses: the inputs are check-ins (status, mood, time), the kinds
and times of interactions, the person's open alerts and whether an isolation-risk insight
is open. Contact names, notes, reflections and check-in notes are not even inputs, so no
scope can leak them. Each scope adds exactly one key to the summary:

* ``check_ins`` — today's status (the person's own calendar day), the last check-in's time
  and mood, the deadline, and whether today's check-in is overdue;
* ``contact_trend`` — the last 12 weeks (Monday-based, local) of in-person vs remote
  interactions, days since the last in-person meeting, and whether in-person contact is
  declining (the last 4 weeks at most half the 4-week average of the 8 before);
* ``alerts`` — open missed-check-in / need-help alerts (who is on it, whether nobody
  answered), those resolved in the last day (and by whom), and the isolation-risk flag.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable, Sequence
from typing import Any

from service.nudges.budget import wall_time
from service.store.care import Alert, CheckIn, Touch

__all__ = [
    "SCOPES",
    "Alert",
    "CheckIn",
    "Touch",
    "alert_entry",
    "build_summary",
    "declining",
    "weekly_counts",
]

SCOPES = ("check_ins", "contact_trend", "alerts")
WEEKS = 12


def _week_start(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def weekly_counts(
    touches: Iterable[Touch], today: dt.date, zone: zoneinfo.ZoneInfo
) -> list[dict[str, Any]]:
    """The last WEEKS local weeks, oldest first, this week included."""
    this_week = _week_start(today)
    starts = [this_week - dt.timedelta(weeks=WEEKS - 1 - i) for i in range(WEEKS)]
    index = {s: i for i, s in enumerate(starts)}
    rows: list[dict[str, Any]] = [
        {"week_start": s.isoformat(), "in_person": 0, "remote": 0} for s in starts
    ]
    for t in touches:
        i = index.get(_week_start(t.at.astimezone(zone).date()))
        if i is not None:
            rows[i]["in_person" if t.in_person else "remote"] += 1
    return rows


def declining(weeks: Sequence[dict[str, Any]]) -> bool:
    """In-person meetings in the last 4 weeks at most half the 4-week average before."""
    recent = sum(w["in_person"] for w in weeks[-4:])
    before = sum(w["in_person"] for w in weeks[-12:-4]) / 2
    return bool(before >= 2 and recent <= before / 2)


def check_in_due(
    day: dt.date, deadline: dt.time | None, grace_min: int, zone: zoneinfo.ZoneInfo
) -> dt.datetime | None:
    """When a day's missing check-in becomes an alert (deadline + grace), or None."""
    if deadline is None:
        return None
    return wall_time(day, deadline, zone) + dt.timedelta(minutes=grace_min)


def build_summary(
    scopes: Iterable[str],
    *,
    now: dt.datetime,
    zone: zoneinfo.ZoneInfo,
    check_ins: Sequence[CheckIn],
    touches: Sequence[Touch],
    deadline: dt.time | None,
    grace_min: int,
    alerts: Sequence[Alert],
    isolation_risk: bool,
    viewer: str | None = None,
) -> dict[str, Any]:
    """The granted scopes' sections; ``viewer`` is the reading caregiver's link id (their
    own acknowledgement reads "you are on it")."""
    granted = set(scopes)
    today = now.astimezone(zone).date()
    out: dict[str, Any] = {}
    if "check_ins" in granted:
        past = sorted((c for c in check_ins if c.at <= now), key=lambda c: c.at)
        todays = [c for c in past if c.at.astimezone(zone).date() == today]
        last = past[-1] if past else None
        due = check_in_due(today, deadline, grace_min, zone)
        out["check_ins"] = {
            "today": todays[-1].status if todays else None,
            "last_check_in_at": last.at.isoformat() if last else None,
            "last_mood": last.mood if last else None,
            "deadline": deadline.strftime("%H:%M") if deadline else None,
            "overdue": bool(due is not None and not todays and now >= due),
        }
    if "contact_trend" in granted:
        weeks = weekly_counts(touches, today, zone)
        met = [t.at for t in touches if t.in_person and t.at <= now]
        out["contact_trend"] = {
            "weeks": weeks,
            "days_since_in_person": (today - max(met).astimezone(zone).date()).days
            if met
            else None,
            "declining": declining(weeks),
        }
    if "alerts" in granted:
        ordered = sorted(alerts, key=lambda a: a.raised_at)
        out["alerts"] = {
            "open": [alert_entry(a, viewer) for a in ordered if not a.resolved],
            "resolved": [alert_entry(a, viewer) for a in ordered if a.resolved],
            "isolation_risk": isolation_risk,
        }
    return out


def _iso(at: dt.datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def alert_entry(a: Alert, viewer: str | None) -> dict[str, Any]:
    """One alert as a caregiver sees it: who is on it (their fellow caregivers' names —
    "Carol is on it"), whether nobody answered, and how it ended."""
    first = a.first
    if a.resolved_by in {"person", "check_in"}:
        resolved_by: str | None = a.resolved_by
    else:
        resolved_by = "caregiver" if a.resolved_by else None
    return {
        "alert_id": a.id,
        "kind": a.kind,
        "priority": a.priority,
        "raised_at": a.raised_at.isoformat(),
        "status": a.status,
        "acknowledged_by": first.name if first else None,
        "acknowledged_by_me": bool(first and viewer and first.link_id == viewer),
        "acknowledged_at": _iso(a.acknowledged_at),
        "also_acknowledged_by": [k.name for k in a.acknowledgements if k is not first],
        "no_response_at": _iso(a.no_response_at),
        "resolved_at": _iso(a.resolved_at or a.cleared_at),
        "resolved_by": resolved_by,
        "resolved_by_name": a.resolved_by_name,
    }

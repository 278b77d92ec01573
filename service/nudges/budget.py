"""The nudge budget: when, if at all, the next nudge may reach a person.

Pure functions of the person's synced ``settings``, the nudges already sent, and ``now``.
Everything is reasoned in the person's own wall-clock time (their ``time_zone``), so quiet
hours and the preferred time stay put across a DST change: 18:00 is 18:00 in both March and
November, whatever that is in UTC.

* at most one nudge per local calendar day, and ``max_nudges_per_week`` in any 7
  consecutive local days
  (default 3: 2 to 5 pushes a week already make 43% of users turn notifications off — design
  brief §6);
* delivered at ``preferred_nudge_time`` (or, if the worker was busy or down, up to
  :data:`LATE_WINDOW` after it — a nudge at 18:40 beats one tomorrow); never inside quiet
  hours; a preferred time inside quiet hours moves to the end of the quiet hours;
* ``nudges_enabled: false`` or a weekly maximum of 0 means none at all.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.tables import zone_names

__all__ = ["LATE_WINDOW", "Budget", "in_quiet_hours", "next_slot", "wall_time"]

LATE_WINDOW = dt.timedelta(hours=2)
_UTC = dt.UTC


def _time(value: Any, default: str) -> dt.time:
    text = value if isinstance(value, str) else default
    hour, minute = text.split(":")
    return dt.time(int(hour), int(minute))


def _zone(name: Any) -> zoneinfo.ZoneInfo:
    # Only real zone names: a row stored before the edge refused ``localtime`` must not
    # follow whatever zone this server happens to run in.
    return zoneinfo.ZoneInfo(name if name in zone_names() else "UTC")


@dataclass(frozen=True, slots=True)
class Budget:
    zone: zoneinfo.ZoneInfo
    enabled: bool = True
    per_week: int = 3
    quiet_start: dt.time = dt.time(21, 0)
    quiet_end: dt.time = dt.time(8, 0)
    preferred: dt.time = dt.time(18, 0)
    digest: bool = False

    @classmethod
    def from_settings(cls, fields: Mapping[str, Any] | None) -> Budget:
        """From the ``settings`` row's fields; missing fields take the schema defaults."""
        f = fields or {}
        per_week = f.get("max_nudges_per_week")
        return cls(
            zone=_zone(f.get("time_zone")),
            enabled=f.get("nudges_enabled") is not False,
            per_week=per_week if isinstance(per_week, int) else 3,
            quiet_start=_time(f.get("quiet_hours_start"), "21:00"),
            quiet_end=_time(f.get("quiet_hours_end"), "08:00"),
            preferred=_time(f.get("preferred_nudge_time"), "18:00"),
            digest=f.get("nudge_digest") is True,
        )

    @property
    def allows_any(self) -> bool:
        return self.enabled and self.per_week > 0


def wall_time(day: dt.date, at: dt.time, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """The instant (UTC) when the clock on the wall in ``zone`` shows ``day`` ``at``.

    In the spring-forward gap (02:30 that never happens) this is the same instant as the
    skipped time read with the old offset, i.e. 03:30 new time; in the autumn overlap it is
    the first 01:30. Both are what a person's own alarm clock app does.
    """
    return dt.datetime.combine(day, at, tzinfo=zone).astimezone(_UTC)


def in_quiet_hours(local: dt.time, start: dt.time, end: dt.time) -> bool:
    """Whether wall time ``local`` is inside [start, end), which may wrap midnight."""
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def _slot(day: dt.date, budget: Budget) -> dt.datetime:
    """The day's delivery time: the preferred time, or the end of quiet hours if the
    preferred time falls inside them."""
    if not in_quiet_hours(budget.preferred, budget.quiet_start, budget.quiet_end):
        return wall_time(day, budget.preferred, budget.zone)
    end_day = day if budget.quiet_end > budget.preferred else day + dt.timedelta(days=1)
    return wall_time(end_day, budget.quiet_end, budget.zone)


def next_slot(now: dt.datetime, budget: Budget, sent: Sequence[dt.datetime]) -> dt.datetime | None:
    """The earliest instant ≥ ``now`` at which a nudge may be sent, or None if the person
    wants none. ``sent`` holds when earlier nudges went out (the last 7 days suffice)."""
    if not budget.allows_any:
        return None
    zone = budget.zone
    sent_dates = [s.astimezone(zone).date() for s in sent]
    sent_days = set(sent_dates)
    today = now.astimezone(zone).date()
    # A full week of days always reaches a day whose 7-day window has room again.
    for offset in range(-1, 9):
        slot = _slot(today + dt.timedelta(days=offset), budget)
        if slot + LATE_WINDOW <= now:
            continue
        at = max(slot, now)
        local = at.astimezone(zone)
        if in_quiet_hours(local.time(), budget.quiet_start, budget.quiet_end):
            continue
        if local.date() in sent_days:
            continue
        week_start = local.date() - dt.timedelta(days=6)
        if sum(1 for d in sent_dates if week_start <= d <= local.date()) >= budget.per_week:
            continue
        return at
    return None

"""The nudge budget: one a day, a few a week, at the person's hour, never in quiet hours —
in their own wall-clock time, across DST changes."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from hypothesis import given, settings
from hypothesis import strategies as st

from service.nudges.budget import Budget, in_quiet_hours, next_slot

UTC = dt.UTC
NY = zoneinfo.ZoneInfo("America/New_York")


def at(zone: zoneinfo.ZoneInfo, text: str) -> dt.datetime:
    """A wall-clock time in ``zone`` as a UTC instant."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=zone).astimezone(UTC)


def budget(**fields: object) -> Budget:
    return Budget.from_settings({"time_zone": "America/New_York", **fields})


def local(instant: dt.datetime | None, zone: zoneinfo.ZoneInfo = NY) -> str:
    assert instant is not None
    return instant.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def test_the_nudge_waits_for_the_preferred_time() -> None:
    assert local(next_slot(at(NY, "2026-11-23 09:00"), budget(), [])) == "2026-11-23 18:00"


def test_a_late_worker_still_sends_soon_after_the_preferred_time_but_not_hours_later() -> None:
    assert local(next_slot(at(NY, "2026-11-23 18:40"), budget(), [])) == "2026-11-23 18:40"
    assert local(next_slot(at(NY, "2026-11-23 20:30"), budget(), [])) == "2026-11-24 18:00"


def test_one_nudge_a_day() -> None:
    sent = [at(NY, "2026-11-23 18:00")]
    assert local(next_slot(at(NY, "2026-11-23 18:05"), budget(), sent)) == "2026-11-24 18:00"


def test_the_weekly_maximum_counts_any_seven_days_in_a_row() -> None:
    sent = [at(NY, f"2026-11-{d} 18:00") for d in (23, 24, 25)]  # Mon, Tue, Wed
    slot = next_slot(at(NY, "2026-11-25 19:00"), budget(max_nudges_per_week=3), sent)
    assert local(slot) == "2026-11-30 18:00"  # Monday's nudge has left the window
    slot = next_slot(at(NY, "2026-11-25 19:00"), budget(max_nudges_per_week=5), sent)
    assert local(slot) == "2026-11-26 18:00"


def test_a_preferred_time_inside_quiet_hours_moves_to_their_end() -> None:
    b = budget(preferred_nudge_time="07:00", quiet_hours_start="21:00", quiet_hours_end="08:00")
    assert local(next_slot(at(NY, "2026-11-23 05:00"), b, [])) == "2026-11-23 08:00"
    b = budget(preferred_nudge_time="23:30", quiet_hours_start="22:00", quiet_hours_end="07:30")
    assert local(next_slot(at(NY, "2026-11-23 12:00"), b, [])) == "2026-11-24 07:30"


def test_nudges_off_or_a_weekly_maximum_of_zero_means_none() -> None:
    assert next_slot(at(NY, "2026-11-23 09:00"), budget(nudges_enabled=False), []) is None
    assert next_slot(at(NY, "2026-11-23 09:00"), budget(max_nudges_per_week=0), []) is None


def test_the_preferred_hour_stays_put_in_local_time_across_dst() -> None:
    """New York springs forward on 2026-03-08: 18:00 is 23:00 UTC before, 22:00 after."""
    b = budget()
    sent: list[dt.datetime] = []
    now = at(NY, "2026-03-06 09:00")
    slots = []
    for _ in range(4):
        slot = next_slot(now, b, sent)
        assert slot is not None
        slots.append(slot)
        sent.append(slot)
        now = slot + dt.timedelta(minutes=5)
    assert [local(s) for s in slots] == [
        "2026-03-06 18:00",
        "2026-03-07 18:00",
        "2026-03-08 18:00",
        "2026-03-13 18:00",  # 3 a week: the window frees on the 13th
    ]
    assert [s.strftime("%H:%M") for s in slots] == ["23:00", "23:00", "22:00", "22:00"]


def test_quiet_hours_hold_on_the_nights_the_clocks_change() -> None:
    """Quiet 01:00-03:00 with a preferred 02:30: on spring-forward night 02:30 never
    happens; the nudge comes at 03:00 local, not in the hour the clock skipped."""
    b = budget(preferred_nudge_time="02:30", quiet_hours_start="01:00", quiet_hours_end="03:00")
    slot = next_slot(at(NY, "2026-03-08 00:10"), b, [])
    assert local(slot) == "2026-03-08 03:00"
    assert slot is not None
    assert slot.strftime("%H:%M") == "07:00"
    # Autumn: 01:00-02:00 happens twice; both are quiet, the nudge still comes at 03:00.
    slot = next_slot(at(NY, "2026-11-01 00:10"), b, [])
    assert local(slot) == "2026-11-01 03:00"
    assert slot is not None
    assert slot.strftime("%H:%M") == "08:00"


ZONES = ["America/New_York", "Europe/Lisbon", "Australia/Lord_Howe", "Asia/Kathmandu", "UTC"]
times = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 30]))


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    start=st.datetimes(dt.datetime(2026, 1, 1), dt.datetime(2027, 12, 31)),
    preferred=times,
    quiet=st.tuples(times, times),
    per_week=st.integers(1, 7),
    gaps_h=st.lists(st.integers(1, 60), max_size=6),
)
def test_a_slot_never_breaks_the_budget(
    zone: str,
    start: dt.datetime,
    preferred: str,
    quiet: tuple[str, str],
    per_week: int,
    gaps_h: list[int],
) -> None:
    b = Budget.from_settings(
        {
            "time_zone": zone,
            "preferred_nudge_time": preferred,
            "quiet_hours_start": quiet[0],
            "quiet_hours_end": quiet[1],
            "max_nudges_per_week": per_week,
        }
    )
    now = start.replace(tzinfo=UTC)
    sent: list[dt.datetime] = []
    for gap in gaps_h:
        slot = next_slot(now, b, sent)
        if slot is None:
            break
        assert slot >= now
        wall = slot.astimezone(b.zone)
        assert not in_quiet_hours(wall.time(), b.quiet_start, b.quiet_end)
        assert wall.date() not in {s.astimezone(b.zone).date() for s in sent}
        week = {wall.date() - dt.timedelta(days=n) for n in range(7)}
        assert sum(1 for s in sent if s.astimezone(b.zone).date() in week) < per_week
        sent.append(slot)
        now = slot + dt.timedelta(hours=gap)

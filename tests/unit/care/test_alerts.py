"""What the person reads about their alert, and the ladder's settings (decision 0018)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from service.care.alerts import alert_collapse_id, person_fields, record_id
from service.care.ladder import rung_at
from service.care.summary import alert_entry
from service.config import CareSettings, Settings, SettingsError
from service.store.care_alerts import Acknowledgement, AlertState

LISBON = ZoneInfo("Europe/Lisbon")
RAISED = dt.datetime(2026, 7, 1, 4, 0, tzinfo=dt.UTC)  # 05:00 in Lisbon (summer time)


def alert(**changes: object) -> AlertState:
    base: dict[str, object] = {
        "space_id": "sp-1",
        "id": "help:k-0123456789",
        "kind": "need_help",
        "priority": "high",
        "raised_at": RAISED,
        "cleared_at": None,
        "acknowledged_at": None,
        "acknowledged_link_id": None,
        "resolved_at": None,
        "resolved_by": None,
        "resolved_by_name": None,
        "ladder_step": 0,
        "no_response_at": None,
    }
    base.update(changes)
    return AlertState(**base)  # type: ignore[arg-type]


CAROL = Acknowledgement("cl-carol", "Carol", "push", RAISED + dt.timedelta(minutes=3))
DAN = Acknowledgement("cl-dan", "Dan", "api", RAISED + dt.timedelta(minutes=4))


def test_the_person_reads_who_saw_it_and_when_in_their_own_time() -> None:
    seen = alert(
        acknowledged_at=CAROL.at, acknowledged_link_id="cl-carol", acknowledgements=(CAROL, DAN)
    )
    fields = person_fields(seen, LISBON)
    assert fields["status"] == "acknowledged"
    assert fields["message"] == "Carol saw your request at 05:03"
    assert [a["by"] for a in fields["acknowledgements"]] == ["Carol", "Dan"]
    assert "cl-carol" not in str(fields)  # a name and a time, nothing else of them


@pytest.mark.parametrize(
    ("changes", "status", "opening"),
    [
        ({}, "open", "Your request for help went to your caregivers at 05:00"),
        ({"no_response_at": RAISED}, "no_response", "Nobody has answered yet."),
        (
            {"cleared_at": RAISED, "resolved_at": RAISED, "resolved_by": "person"},
            "resolved",
            "You said all is well at 05:00.",
        ),
        (
            {"cleared_at": RAISED, "resolved_by": "cl-dan", "resolved_by_name": "Dan"},
            "resolved",
            "Dan marked it resolved at 05:00.",
        ),
    ],
)
def test_each_state_has_its_sentence(changes: dict[str, object], status: str, opening: str) -> None:
    fields = person_fields(alert(**changes), LISBON)
    assert fields["status"] == status
    assert fields["message"].startswith(opening)


def test_caregivers_read_who_is_on_it_and_whether_it_is_them() -> None:
    seen = alert(
        acknowledged_at=CAROL.at, acknowledged_link_id="cl-carol", acknowledgements=(CAROL, DAN)
    )
    for viewer, mine in (("cl-carol", True), ("cl-dan", False)):
        entry = alert_entry(seen, viewer)
        assert (entry["acknowledged_by"], entry["acknowledged_by_me"]) == ("Carol", mine)
        assert entry["also_acknowledged_by"] == ["Dan"]


def test_ids_fit_what_apns_and_sync_accept() -> None:
    long_alert = "help:" + "k" * 64
    space = "0123456789abcdef0123456789abcdef"  # a space id: 32 hex characters
    collapse = alert_collapse_id(space, long_alert)
    assert len(collapse.encode()) <= 64
    assert collapse.startswith(f"care-{space}-")  # erasing the person finds it by this
    assert 8 <= len(record_id(long_alert)) <= 64
    assert record_id(long_alert) == record_id(long_alert)


def test_the_ladder_defaults_and_its_order() -> None:
    settings = Settings.from_env({}).care
    assert [rung_at(settings, RAISED, s) - RAISED for s in (1, 2, 3)] == [
        dt.timedelta(minutes=5),
        dt.timedelta(minutes=10),
        dt.timedelta(minutes=20),
    ]
    quick = Settings.from_env({"KITH_HELP_REPEAT_AFTER_S": "2", "KITH_HELP_EVERYONE_AFTER_S": "4"})
    assert (quick.care.help_repeat_after_s, quick.care.help_everyone_after_s) == (2, 4)
    with pytest.raises(SettingsError, match="climb in that order"):
        CareSettings(help_repeat_after_s=600, help_everyone_after_s=300)

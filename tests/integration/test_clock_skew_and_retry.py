"""Two ways a phone can misbehave without meaning to, over the real API.

* Its clock is a year fast. Without the server's clamp, every edit it ever made would beat
  every later edit from a correct phone; with it, the later edit wins.
* Its network drops the answer to a push. The app retries the same batch, and the server
  must apply it once: one sequence number, one conflict entry, the same answer.
"""

from __future__ import annotations

import time

import pytest

from sync.client import TransportError
from sync.hlc import Clock, parse
from tests.helpers import conflict_log, new_device, server_records, sign_in_devices

YEAR_MS = 365 * 24 * 60 * 60 * 1000
MAX_SKEW_MS = 5 * 60 * 1000


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def test_a_phone_a_year_fast_cannot_beat_a_later_edit_from_a_correct_phone(
    live_server: str,
) -> None:
    ana_tokens, fast_tokens = sign_in_devices(live_server, 2)
    ana = new_device(live_server, ana_tokens)
    fast = new_device(
        live_server, fast_tokens, clock=Clock(fast_tokens.device_id, lambda: _wall_ms() + YEAR_MS)
    )
    try:
        cid = ana.client.create("contacts", {"display_name": "Sam", "notes": "original"})
        ana.client.sync()
        fast.client.sync()

        fast.client.update("contacts", cid, {"notes": "from the fast phone"})
        report = fast.client.sync()
        assert report.clock_skew_ms > YEAR_MS - 60_000
        stored = server_records(live_server, ana_tokens.access_token)[("contacts", cid)]
        assert stored.fields["notes"] == "from the fast phone"
        written = parse(stored.hlc)
        assert written.ms < _wall_ms() + MAX_SKEW_MS  # clamped to the server's time...
        assert written.node == fast_tokens.device_id  # ...but still credited to its author

        ana.client.sync()
        ana.client.update("contacts", cid, {"notes": "later, from Ana"})
        assert ana.client.sync().superseded == []
        fast.client.sync()

        for device in (ana, fast):
            record = device.client.get("contacts", cid)
            assert record is not None
            assert record.fields["notes"] == "later, from Ana"
        stored = server_records(live_server, ana_tokens.access_token)[("contacts", cid)]
        assert stored.fields["notes"] == "later, from Ana"
        lost = conflict_log(live_server, ana_tokens.access_token, id=cid)
        assert [(c["field"], c["value"], c["reason"]) for c in lost] == [
            ("notes", "original", "overwritten"),
            ("notes", "from the fast phone", "overwritten"),
        ]
    finally:
        ana.close()
        fast.close()


def test_a_push_whose_answer_was_lost_is_retried_and_applied_once(live_server: str) -> None:
    ana_tokens, ben_tokens = sign_in_devices(live_server, 2)
    ana = new_device(live_server, ana_tokens)
    ben = new_device(live_server, ben_tokens)
    try:
        cid = ana.client.create("contacts", {"display_name": "Sam", "notes": "from Ana"})
        ana.client.sync()
        ben.client.sync()

        # Ben's edit overwrites Ana's value: one conflict entry. Its answer never arrives.
        ben.client.update("contacts", cid, {"notes": "from Ben"})
        ben.network.lose_next_push_response = True
        with pytest.raises(TransportError):
            ben.client.sync()
        record = ben.client.get("contacts", cid)
        assert record is not None
        assert record.fields["notes"] == "from Ben"  # still shown while unacknowledged

        ben.client.sync()
        (lost_body, lost_reply), retry_body = ben.network.lost[0], ben.network.delivered[1]
        assert retry_body == lost_body  # same batch_id, same changes
        assert ben.network.replies[1].body == lost_reply.body  # the stored answer, verbatim
        assert ben.client.store.pending_changes() == []

        # The retry used no sequence number: the next push gets the very next one.
        ana.client.update("contacts", cid, {"display_name": "Samuel"})
        after = ana.network.replies
        ana.client.sync()
        assert after[-1].body["seq"] == lost_reply.body["seq"] + 1

        lost = conflict_log(live_server, ana_tokens.access_token, id=cid)
        assert [(c["field"], c["value"], c["reason"]) for c in lost] == [
            ("notes", "from Ana", "overwritten")
        ]
        state = server_records(live_server, ana_tokens.access_token)
        assert state[("contacts", cid)].fields["notes"] == "from Ben"
        record = ana.client.get("contacts", cid)
        assert record is not None
        assert record.fields["notes"] == "from Ben"
    finally:
        ana.close()
        ben.close()


def test_a_retried_push_does_not_undo_a_newer_edit_pulled_in_the_meantime(
    live_server: str,
) -> None:
    ana_tokens, ben_tokens = sign_in_devices(live_server, 2)
    ana = new_device(live_server, ana_tokens)
    ben = new_device(live_server, ben_tokens)
    try:
        ana.client.sync()
        ben.client.sync()
        ana.client.update("settings", "settings", {"quiet_hours_start": "22:00"})
        ana.network.lose_next_push_response = True
        with pytest.raises(TransportError):
            ana.client.sync()
        # Ben changes the same setting later; Ana's phone hears of it and pulls before
        # it gets round to retrying. The retry's stored answer says "accepted" — true
        # when it was first applied, stale now.
        ben.client.update("settings", "settings", {"quiet_hours_start": "23:30"})
        ben.client.sync()
        ana.client.pull()
        ana.client.sync()

        setting = ana.client.get("settings", "settings")
        assert setting is not None
        assert setting.fields["quiet_hours_start"] == "23:30"
        server = server_records(live_server, ana_tokens.access_token)
        assert {(r.table, r.id): r for r in ana.client.store.server_records()} == server
    finally:
        ana.close()
        ben.close()

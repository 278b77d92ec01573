"""Three phones of one person, driven at random by Hypothesis against the real API.

The phones create, edit and delete contacts, interactions, reflections and the shared
settings record; they go offline and online, sync, and sometimes lose the answer to a
push. What the person must be able to rely on:

* while a phone has not synced, it shows its own edits (or the record as deleted);
* a push whose answer was lost is retried with the same batch and the same answer;
* once every phone has synced twice, all phones hold exactly what the server holds;
* no write is silently lost: every value a phone last wrote to a field reached the
  server and is still there, or its record is deleted, or it is in the conflict history.

Edited values are unique within a run, so "it is still there" cannot hold by accident.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from sync.client import TransportError
from tests.helpers import (
    Device,
    conflict_log,
    new_device,
    server_records,
    sign_in_devices,
)

DEVICES = 3
TABLES = ("contacts", "interactions", "reflections")
KINDS = ("in_person", "video", "call", "text")

# Fields the phones edit, each with a value unique to the write number ``n``.
EDITS: dict[str, tuple[tuple[str, Callable[[int], Any]], ...]] = {
    "contacts": (("notes", lambda n: f"note {n}"), ("tags", lambda n: [f"tag-{n}"])),
    "interactions": (("note", lambda n: f"talked {n}"), ("duration_min", lambda n: n)),
    "reflections": (("body", lambda n: f"today {n}"),),
    "settings": (("quiet_hours_start", lambda n: f"{n // 60 % 24:02d}:{n % 60:02d}"),),
}

devices = st.integers(0, DEVICES - 1)
picks = st.integers(0, 1 << 16)

Key = tuple[str, str, str]  # (table, id, field)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class PhonesOfOnePerson(RuleBasedStateMachine):
    base_url: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        self.phones: list[Device] = [
            new_device(self.base_url, tokens) for tokens in sign_in_devices(self.base_url, DEVICES)
        ]
        self.n = 0
        # Per phone: the value it last wrote to each field ...
        self.last_write: list[dict[Key, Any]] = [{} for _ in range(DEVICES)]
        # ... and those of them not yet acknowledged by a successful sync.
        self.unsynced: list[dict[Key, Any]] = [{} for _ in range(DEVICES)]
        # A phone whose push answer was lost: what the retry must send, and get back.
        self.awaiting_retry: list[tuple[dict[str, Any], Any] | None] = [None] * DEVICES

    def _next(self) -> int:
        self.n += 1
        return self.n

    def _remember(self, d: int, table: str, rid: str, fields: dict[str, Any]) -> None:
        for name, value in fields.items():
            self.last_write[d][(table, rid, name)] = value
            self.unsynced[d][(table, rid, name)] = value

    def _live(self, d: int, table: str, pick: int) -> str | None:
        records = self.phones[d].client.all(table)
        return records[pick % len(records)].id if records else None

    def _new_fields(self, d: int, table: str, pick: int, second: int) -> dict[str, Any] | None:
        n = self._next()
        if table == "contacts":
            return {"display_name": f"Person {n}", "notes": f"note {n}", "circle": "close"}
        if table == "reflections":
            return {"occurred_at": f"2025-04-{1 + n % 28:02d}T21:00:00Z", "body": f"today {n}"}
        contact = self._live(d, "contacts", pick)
        if contact is None:
            return None
        return {
            "contact_ids": sorted({contact, self._live(d, "contacts", second) or contact}),
            "kind": KINDS[n % len(KINDS)],
            "occurred_at": f"2025-03-{1 + n % 28:02d}T10:00:00Z",
            "note": f"talked {n}",
        }

    @initialize()
    def everyone_starts_with_the_same_few_records(self) -> None:
        """A person's phones usually share most records: seed a few, so edits collide."""
        for table in ("contacts", "contacts", "interactions", "reflections"):
            self.create(0, table, 0, 1, autosync=False)
        for phone in self.phones:
            phone.client.sync()
        self.unsynced[0].clear()

    # -- edits --------------------------------------------------------------------------
    # ``autosync``: the app syncs right after the edit (when online), as real apps do; the
    # server's realtime event then makes the other online phones pull.

    @rule(
        d=devices, table=st.sampled_from(TABLES), pick=picks, second=picks, autosync=st.booleans()
    )
    def create(self, d: int, table: str, pick: int, second: int, autosync: bool) -> None:
        fields = self._new_fields(d, table, pick, second)
        if fields is not None:
            self._remember(d, table, self.phones[d].client.create(table, fields), fields)
            self._maybe_sync(d, autosync)

    @rule(
        d=devices,
        table=st.sampled_from((*TABLES, "settings")),
        pick=picks,
        which=picks,
        autosync=st.booleans(),
    )
    def edit(self, d: int, table: str, pick: int, which: int, autosync: bool) -> None:
        rid = self._live(d, table, pick)
        if rid is None:
            return
        name, make = EDITS[table][which % len(EDITS[table])]
        fields = {name: make(self._next())}
        self.phones[d].client.update(table, rid, fields)
        self._remember(d, table, rid, fields)
        self._maybe_sync(d, autosync)

    @rule(d=devices, which=picks, autosync=st.booleans())
    def edit_settings(self, d: int, which: int, autosync: bool) -> None:
        """The one record every phone shares: the likeliest place for two edits to meet."""
        self.edit(d, "settings", 0, which, autosync)

    @rule(d=devices, table=st.sampled_from(TABLES), pick=picks, dice=st.integers(0, 3))
    def delete(self, d: int, table: str, pick: int, dice: int) -> None:
        rid = self._live(d, table, pick)
        if rid is None or dice != 0:  # deletes are rarer than edits (and end the story)
            return
        self.phones[d].client.delete(table, rid)
        # Queued edits of a deleted record are dropped by design; the delete covers them.
        for writes in (self.last_write[d], self.unsynced[d]):
            for key in [k for k in writes if k[:2] == (table, rid)]:
                del writes[key]
        self._maybe_sync(d, True)

    @rule(d=devices, pick=picks, which=picks)
    def edit_while_a_push_is_in_flight(self, d: int, pick: int, which: int) -> None:
        """The person edits the shared settings while the phone's push is on the wire."""
        phone = self.phones[d]
        if phone.network.offline or not phone.client.store.pending_changes():
            return
        phone.network.while_in_flight = lambda: self.edit(d, "settings", pick, which, False)
        self.sync(d, poke=False)
        assert phone.network.while_in_flight is None

    def _maybe_sync(self, d: int, autosync: bool) -> None:
        if autosync and not self.phones[d].network.offline:
            self.sync(d, poke=True)

    # -- network ------------------------------------------------------------------------

    @rule(d=devices, dice=st.integers(0, 2))
    def toggle_network(self, d: int, dice: int) -> None:
        """Back online at once; offline one time in three (phones are mostly online)."""
        network = self.phones[d].network
        network.offline = not network.offline and dice == 0

    @rule(d=devices, poke=st.booleans())
    def sync(self, d: int, poke: bool) -> None:
        """Sync one phone; with ``poke``, the server's realtime event then makes every other
        online phone pull (they push only when they sync themselves)."""
        phone = self.phones[d]
        delivered_before = len(phone.network.delivered)
        if phone.network.offline:
            with pytest.raises(TransportError):
                phone.client.sync()
            assert len(phone.network.delivered) == delivered_before
            return
        phone.client.sync()
        retry = self.awaiting_retry[d]
        if retry is not None:
            body, answer = retry
            assert phone.network.delivered[delivered_before] == body  # same batch, same id
            assert phone.network.replies[delivered_before].body == answer  # applied once
            self.awaiting_retry[d] = None
        # Acknowledged edits are the server's now; one typed while the push was in flight
        # may still be queued (and must still be on screen).
        queued = {
            (c.table, c.id, name): _canon(value)
            for c in phone.client.store.pending_changes()
            for name, value in c.fields.items()
        }
        self.unsynced[d] = {k: v for k, v in self.unsynced[d].items() if queued.get(k) == _canon(v)}
        if poke:
            for other in range(DEVICES):
                if other != d and not self.phones[other].network.offline:
                    self.pull_only(other)

    @rule(d=devices)
    def pull_only(self, d: int) -> None:
        """What the app does when the server pokes it about a change: pull, not push."""
        phone = self.phones[d]
        if phone.network.offline:
            with pytest.raises(TransportError):
                phone.client.pull()
        else:
            phone.client.pull()

    @rule(d=devices)
    def sync_and_lose_the_push_answer(self, d: int) -> None:
        """The push reaches the server; its answer is lost on the way back."""
        phone = self.phones[d]
        if phone.network.offline or not phone.client.store.pending_changes():
            return
        phone.network.lose_next_push_response = True
        with pytest.raises(TransportError):
            phone.client.sync()
        lost_body, lost_reply = phone.network.lost[-1]
        assert lost_reply.status == 200
        earlier = self.awaiting_retry[d]
        if earlier is not None:  # lost twice: still the same batch, the same answer
            assert (lost_body, lost_reply.body) == earlier
        self.awaiting_retry[d] = (lost_body, lost_reply.body)

    # -- what the person sees at every step ----------------------------------------------

    @invariant()
    def each_phone_shows_its_own_unsynced_edits(self) -> None:
        for d, writes in enumerate(self.unsynced):
            for (table, rid, name), value in writes.items():
                record = self.phones[d].client.store.view(table, rid)
                assert record is not None
                if not record.deleted:
                    assert _canon(record.fields[name]) == _canon(value), (table, rid, name)

    # -- and once everyone has synced ---------------------------------------------------

    def teardown(self) -> None:
        try:
            self._check_convergence()
        finally:
            for phone in self.phones:
                phone.close()

    def _check_convergence(self) -> None:
        for phone in self.phones:
            phone.network.offline = False
        for _ in range(2):
            for phone in self.phones:
                phone.client.sync()
        token = self.phones[0].tokens.access_token
        server = server_records(self.base_url, token)
        for phone in self.phones:
            assert phone.client.store.pending_changes() == []
            assert phone.client.store.in_flight() is None
            on_phone = {(r.table, r.id): r for r in phone.client.store.server_records()}
            differ = {
                key: (on_phone.get(key), server.get(key))
                for key in on_phone.keys() | server.keys()
                if on_phone.get(key) != server.get(key)
            }
            assert differ == {}, f"{phone.tokens.device_id} (phone, server): {differ}"
        history = {
            (c["table"], c["id"], c["field"], _canon(c["value"]))
            for c in conflict_log(self.base_url, token)
        }
        for d, writes in enumerate(self.last_write):
            sent = {
                (c["table"], c["id"], name, _canon(value))
                for body in self.phones[d].network.delivered
                for c in body["changes"]
                for name, value in c.get("fields", {}).items()
            }
            for (table, rid, name), value in writes.items():
                write = (table, rid, name, _canon(value))
                assert write in sent, f"phone {d} never sent {write}"
                record = server[(table, rid)]
                assert (
                    record.deleted
                    or _canon(record.fields[name]) == _canon(value)
                    or write in history
                ), f"phone {d}'s write {write} was lost: server has {record}"


def test_phones_of_one_person_converge_and_lose_no_write(live_server: str) -> None:
    PhonesOfOnePerson.base_url = live_server
    run_state_machine_as_test(
        PhonesOfOnePerson,
        settings=settings(
            max_examples=20,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )

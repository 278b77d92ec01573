"""The reference client's local behaviour, against a scripted fake server (no network).

What a person would notice: an edit shows at once and survives a failed sync; a retry
after a lost response does not apply twice; an edit made while a sync is in flight is not
forgotten; a value that lost on the server gives way to the winner; a full resync removes
what the server no longer has but never a change still waiting to be sent.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from sync.client import (
    Backoff,
    LocalStore,
    NotAuthenticated,
    RecordNotFound,
    Rejected,
    Reply,
    RetryLater,
    SyncClient,
    TransportError,
    UpgradeRequired,
)
from sync.hlc import format_hlc, parse


def _server_hlc(offset_ms: int = 0) -> str:
    return format_hlc(time.time_ns() // 1_000_000 + offset_ms, 0, "server")


class FakeServer:
    """A scripted :class:`~sync.client.Transport`: it records every request, accepts every
    push (minus the fields listed in ``superseded``) and serves ``pages`` to pulls."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.pages: list[dict[str, Any]] = []
        self.superseded: list[dict[str, str]] = []
        self.server_hlc = _server_hlc()
        self.offline = False  # requests never arrive
        self.lose_next_response = False  # the request arrives, its answer does not
        self.status = 200
        self.problem: dict[str, Any] = {}
        self.during_push: Callable[[], None] | None = None
        self.unavailable = 0  # answer this many requests 503 (database down) first
        self.retry_after_s: float | None = 2.0

    @property
    def pushes(self) -> list[dict[str, Any]]:
        return [body for path, body in self.requests if path == "/v1/sync/push"]

    def post(self, path: str, body: Mapping[str, Any]) -> Reply:
        if self.offline:
            raise TransportError("offline")
        self.requests.append((path, copy.deepcopy(dict(body))))
        if self.unavailable:
            self.unavailable -= 1
            return Reply(503, {"code": "unavailable"}, self.retry_after_s)
        if self.status != 200:
            return Reply(self.status, self.problem)
        if path == "/v1/sync/push":
            if self.during_push is not None:
                self.during_push()
                self.during_push = None
            reply = {
                "batch_id": body["batch_id"],
                "accepted": len(body["changes"]),
                "superseded": self.superseded,
                "seq": len(self.requests),
                "server_hlc": self.server_hlc,
                "clock_skew_ms": 0,
            }
        else:
            page = self.pages.pop(0) if self.pages else {}
            reply = {
                "changes": [],
                "cursor": body["cursor"] or "c0",
                "has_more": False,
                "reset": False,
                "server_hlc": self.server_hlc,
                **page,
            }
        if self.lose_next_response:
            self.lose_next_response = False
            raise TransportError("the answer was lost")
        return Reply(200, reply)

    def get(self, path: str, params: Mapping[str, str]) -> Reply:
        raise AssertionError("not used here")


def _row(
    rid: str, fields: dict[str, Any], *, table: str = "contacts", deleted: bool = False
) -> dict[str, Any]:
    return {"table": table, "id": rid, "fields": fields, "deleted": deleted, "hlc": _server_hlc()}


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def client(server: FakeServer, waits: list[float]) -> SyncClient:
    backoff = Backoff(sleep=waits.append, rng=random.Random(7))  # waits recorded, not slept
    return SyncClient("phone-ana-01", server, LocalStore(), backoff=backoff)


def test_editing_a_field_twice_sends_only_the_latest_value(
    client: SyncClient, server: FakeServer
) -> None:
    cid = client.create("contacts", {"display_name": "Sam", "notes": "met at work"})
    client.update("contacts", cid, {"notes": "met at Ana's party"})
    client.update("contacts", cid, {"notes": "met at Ana's party, 2019"})

    record = client.get("contacts", cid)
    assert record is not None
    assert record.fields == {"display_name": "Sam", "notes": "met at Ana's party, 2019"}
    queued = client.store.pending_changes()
    assert [c.fields for c in queued] == [
        {"display_name": "Sam"},
        {"notes": "met at Ana's party, 2019"},
    ]
    assert queued[0].hlc < queued[1].hlc

    report = client.sync()
    (push,) = server.pushes
    assert [c["fields"] for c in push["changes"]] == [c.fields for c in queued]
    assert report.pushed == 2
    assert client.store.pending_changes() == []
    # Accepted values are now the server's: still shown, with no pull needed.
    assert client.get("contacts", cid) == record


def test_deleting_replaces_queued_edits_with_one_delete(
    client: SyncClient, server: FakeServer
) -> None:
    cid = client.create("contacts", {"display_name": "Sam"})
    client.update("contacts", cid, {"notes": "x"})
    client.delete("contacts", cid)

    assert client.get("contacts", cid) is None
    assert client.all("contacts") == []
    client.sync()
    assert server.pushes[0]["changes"] == [
        {
            "table": "contacts",
            "id": cid,
            "hlc": server.pushes[0]["changes"][0]["hlc"],
            "deleted": True,
        }
    ]
    with pytest.raises(RecordNotFound):
        client.update("contacts", cid, {"notes": "too late"})


def test_batches_hold_at_most_500_changes_each_with_its_own_id(
    client: SyncClient, server: FakeServer
) -> None:
    for i in range(1200):
        client.create("contacts", {"display_name": f"Person {i}"})
    report = client.sync()
    sizes = [len(p["changes"]) for p in server.pushes]
    assert sizes == [500, 500, 200]
    assert len({p["batch_id"] for p in server.pushes}) == 3
    assert report.batches == [p["batch_id"] for p in server.pushes]
    assert len(client.all("contacts")) == 1200


def test_a_records_changes_never_straddle_two_batches(server: FakeServer) -> None:
    client = SyncClient("phone-ana-01", server, LocalStore(), batch_size=3)
    ids = [client.create("contacts", {"display_name": f"P{i}"}) for i in range(3)]
    for cid in ids:
        client.update("contacts", cid, {"notes": "later"})  # a second change per record
    client.sync()
    batches = [[c["id"] for c in p["changes"]] for p in server.pushes]
    assert batches == [[ids[0], ids[0]], [ids[1], ids[1]], [ids[2], ids[2]]]


def test_a_lost_response_is_retried_with_the_same_batch_after_a_restart(
    server: FakeServer, tmp_path: Path
) -> None:
    path = tmp_path / "phone.sqlite3"
    first = SyncClient("phone-ana-01", server, LocalStore(path))
    cid = first.create("contacts", {"display_name": "Sam"})
    server.lose_next_response = True
    with pytest.raises(TransportError):
        first.sync()
    first.update("contacts", cid, {"notes": "edited after the failure"})
    first.store.close()

    # The app restarts: a new client on the same database.
    again = SyncClient("phone-ana-01", server, LocalStore(path))
    again.sync()
    lost, retry, follow_up = server.pushes
    assert retry == lost  # same batch_id, same changes, byte for byte
    assert follow_up["batch_id"] != lost["batch_id"]
    assert [c["fields"] for c in follow_up["changes"]] == [{"notes": "edited after the failure"}]
    assert again.store.pending_changes() == []
    assert again.store.in_flight() is None


def test_offline_sync_keeps_everything_and_later_sends_the_frozen_batch(
    client: SyncClient, server: FakeServer
) -> None:
    cid = client.create("contacts", {"display_name": "Sam"})
    server.offline = True
    for _ in range(2):
        with pytest.raises(TransportError):
            client.sync()
    frozen = client.store.in_flight()
    assert frozen is not None
    assert client.get("contacts", cid) is not None
    assert len(client.store.pending_changes()) == 1

    server.offline = False
    client.sync()
    assert [p["batch_id"] for p in server.pushes] == [frozen.batch_id]
    assert client.store.pending_changes() == []


def test_an_edit_made_while_the_push_is_in_flight_is_not_forgotten(
    client: SyncClient, server: FakeServer
) -> None:
    cid = client.create("contacts", {"display_name": "Sam", "notes": "first"})
    server.during_push = lambda: client.update("contacts", cid, {"notes": "typed meanwhile"})
    client.sync()

    first, second = server.pushes  # the late edit rides in a batch of its own
    assert first["changes"][0]["fields"] == {"display_name": "Sam", "notes": "first"}
    assert [c["fields"] for c in second["changes"]] == [{"notes": "typed meanwhile"}]
    record = client.get("contacts", cid)
    assert record is not None
    assert record.fields["notes"] == "typed meanwhile"
    assert client.store.pending_changes() == []


def test_acknowledging_a_batch_drops_only_the_values_it_carried() -> None:
    store = LocalStore()
    store.write("contacts", "contact-sam1", {"display_name": "Sam", "notes": "a"}, "h1")
    batch = store.freeze("batch-0001", 500)
    assert batch is not None
    store.write("contacts", "contact-sam1", {"notes": "b"}, "h2")  # while in flight
    assert store.freeze("batch-0002", 500) == batch  # one batch in flight at a time

    store.complete(batch, superseded=[])
    assert [(c.hlc, c.fields) for c in store.pending_changes()] == [("h2", {"notes": "b"})]
    assert store.in_flight() is None
    record = store.view("contacts", "contact-sam1")
    assert record is not None
    assert record.fields == {"display_name": "Sam", "notes": "b"}


def test_a_pull_keeps_local_values_still_waiting_to_be_sent(
    client: SyncClient, server: FakeServer
) -> None:
    server.pages = [{"changes": [_row("contact-sam1", {"display_name": "Sam", "notes": ""})]}]
    client.sync()
    client.update("contacts", "contact-sam1", {"notes": "mine"})
    server.offline = True
    with pytest.raises(TransportError):
        client.push()
    server.offline = False
    server.pages = [
        {"changes": [_row("contact-sam1", {"display_name": "Samuel", "notes": "theirs"})]}
    ]
    client.pull()

    record = client.get("contacts", "contact-sam1")
    assert record is not None
    assert record.fields == {"display_name": "Samuel", "notes": "mine"}


def test_a_value_that_lost_on_the_server_gives_way_to_the_winner(
    client: SyncClient, server: FakeServer
) -> None:
    server.pages = [{"changes": [_row("contact-sam1", {"display_name": "Sam", "notes": "a"})]}]
    client.sync()
    server.pages = [{"changes": [_row("contact-sam1", {"display_name": "Sam", "notes": "b"})]}]
    client.update("contacts", "contact-sam1", {"notes": "mine, but older"})
    server.offline = True
    with pytest.raises(TransportError):
        client.push()
    server.offline = False
    client.pull()  # the winner arrives while our value is still queued
    server.superseded = [
        {"table": "contacts", "id": "contact-sam1", "field": "notes", "reason": "older"}
    ]
    report = client.sync()

    assert [s.field for s in report.superseded] == ["notes"]
    record = client.get("contacts", "contact-sam1")
    assert record is not None
    assert record.fields["notes"] == "b"


def test_a_pulled_tombstone_hides_the_record_and_queued_edits_still_go_out(
    client: SyncClient, server: FakeServer
) -> None:
    server.pages = [{"changes": [_row("contact-sam1", {"display_name": "Sam"})]}]
    client.sync()
    client.update("contacts", "contact-sam1", {"notes": "written offline"})
    server.offline = True
    with pytest.raises(TransportError):
        client.push()
    server.offline = False
    server.pages = [{"changes": [_row("contact-sam1", {}, deleted=True)]}]
    client.pull()
    assert client.get("contacts", "contact-sam1") is None

    # The queued edit is still sent, so the server files it in the conflict history.
    server.superseded = [
        {"table": "contacts", "id": "contact-sam1", "field": "notes", "reason": "deleted"}
    ]
    client.sync()
    assert server.pushes[-1]["changes"][0]["fields"] == {"notes": "written offline"}
    assert client.get("contacts", "contact-sam1") is None
    assert client.store.pending_changes() == []


def test_a_reset_drops_what_the_server_no_longer_has_but_keeps_queued_records(
    client: SyncClient, server: FakeServer
) -> None:
    server.pages = [
        {
            "changes": [
                _row(f"contact-{n}", {"display_name": n}) for n in ("anna", "bert", "cleo")
            ],
            "cursor": "c3",
        }
    ]
    client.sync()
    client.update("contacts", "contact-cleo", {"notes": "not yet sent"})
    local_only = client.create("contacts", {"display_name": "Dana"})
    server.offline = True
    with pytest.raises(TransportError):
        client.push()
    server.offline = False
    server.pages = [
        {
            "changes": [_row("contact-anna", {"display_name": "anna"})],
            "cursor": "c9",
            "has_more": True,
            "reset": True,
        },
        {"changes": [], "cursor": "c10"},
    ]
    report = client.pull()

    assert report.reset
    assert report.dropped == 1
    assert {r.id for r in client.all("contacts")} == {"contact-anna", "contact-cleo", local_only}
    assert client.store.cursor() == "c10"
    pulls = [body for path, body in server.requests if path == "/v1/sync/pull"]
    assert [p["cursor"] for p in pulls[-2:]] == ["c3", "c9"]


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, NotAuthenticated), (422, Rejected), (426, UpgradeRequired), (503, RetryLater)],
)
def test_an_error_status_raises_its_own_type_and_keeps_the_queue(
    client: SyncClient, server: FakeServer, status: int, error: type[Exception]
) -> None:
    cid = client.create("contacts", {"display_name": "Sam"})
    server.status = status
    server.problem = {"code": "some_code", "detail": "what went wrong", "errors": []}
    with pytest.raises(error, match="some_code"):
        client.sync()
    assert client.get("contacts", cid) is not None
    assert len(client.store.pending_changes()) == 1


def test_a_503_is_retried_after_retry_after_with_the_same_batch(
    client: SyncClient, server: FakeServer, waits: list[float]
) -> None:
    """The server's database is down for three requests: the client waits at least what
    the server asked each time, retries the same batch (applied once), and the sync
    completes without the app doing anything."""
    cid = client.create("contacts", {"display_name": "Sam"})
    server.unavailable = 3
    report = client.sync()
    assert report.pushed == 1
    assert len({p["batch_id"] for p in server.pushes}) == 1
    assert len(server.pushes) == 4  # three 503s, then the one that was applied
    assert len(waits) == 3
    assert all(w >= 2.0 for w in waits)
    assert client.store.pending_changes() == []
    assert client.get("contacts", cid) is not None


def test_a_long_outage_raises_retry_later_and_keeps_the_queue(
    client: SyncClient, server: FakeServer, waits: list[float]
) -> None:
    client.create("contacts", {"display_name": "Sam"})
    server.unavailable, server.retry_after_s = 100, None
    with pytest.raises(RetryLater) as caught:
        client.sync()
    assert caught.value.code == "unavailable"
    assert len(waits) == client.backoff.attempts - 1
    assert max(waits) <= client.backoff.cap_s  # jittered, capped
    assert len(client.store.pending_changes()) == 1


def test_the_clock_follows_the_server_and_survives_a_restart(
    server: FakeServer, tmp_path: Path
) -> None:
    path = tmp_path / "phone.sqlite3"
    client = SyncClient("phone-ana-01", server, LocalStore(path))
    server.server_hlc = _server_hlc(offset_ms=60_000)  # the server's clock is a minute ahead
    client.create("contacts", {"display_name": "Sam"})
    client.sync()
    cid = client.create("contacts", {"display_name": "Kim"})
    (after,) = [c for c in client.store.pending_changes() if c.id == cid]
    assert after.hlc > server.server_hlc
    client.store.close()

    restarted = SyncClient("phone-ana-01", server, LocalStore(path))
    restarted.create("contacts", {"display_name": "Lou"})
    newest = max(c.hlc for c in restarted.store.pending_changes())
    assert newest > after.hlc
    assert parse(newest).node == "phone-ana-01"


def test_editing_a_record_this_device_does_not_have_is_refused(client: SyncClient) -> None:
    with pytest.raises(RecordNotFound):
        client.update("contacts", "contact-nobody", {"notes": "?"})
    with pytest.raises(RecordNotFound):
        client.delete("contacts", "contact-nobody")
    with pytest.raises(ValueError, match="at least one field"):
        client.create("contacts", {})


def test_a_retried_batchs_stale_answer_does_not_undo_a_value_pulled_meanwhile(
    client: SyncClient, server: FakeServer
) -> None:
    server.pages = [{"changes": [_row("contact-sam1", {"display_name": "Sam", "notes": ""})]}]
    client.sync()
    client.update("contacts", "contact-sam1", {"notes": "mine"})
    server.lose_next_response = True
    with pytest.raises(TransportError):
        client.push()
    # Another phone's newer value arrives before the retry; the retry's stored answer
    # still says "accepted", as it was when first applied.
    server.pages = [{"changes": [_row("contact-sam1", {"display_name": "Sam", "notes": "newer"})]}]
    client.pull()
    client.sync()

    record = client.get("contacts", "contact-sam1")
    assert record is not None
    assert record.fields["notes"] == "newer"


def test_a_rejected_batch_stays_until_the_app_discards_it(
    client: SyncClient, server: FakeServer
) -> None:
    cid = client.create("contacts", {"display_name": "Sam"})
    server.status = 422
    server.problem = {"code": "invalid_field", "detail": "changes[0].fields.tags: too many"}
    for _ in range(2):
        with pytest.raises(Rejected):
            client.sync()
    first, second = server.pushes
    assert first == second  # never silently dropped: the same batch, again

    client.update("contacts", cid, {"notes": "typed after the rejection"})
    discarded = client.discard_rejected_batch()
    assert discarded is not None
    assert discarded.batch_id == first["batch_id"]
    assert [c.fields for c in client.store.pending_changes()] == [
        {"notes": "typed after the rejection"}
    ]
    server.status = 200
    client.sync()
    assert server.pushes[-1]["batch_id"] != first["batch_id"]

"""The reference sync client: how a phone app should talk to Kith, in code that runs.

Local edits are stamped with the device's hybrid logical clock and queued; the person
sees them at once. :meth:`SyncClient.sync` then

1. **pushes** the queue in frozen batches of at most 500 changes. A batch keeps its
   ``batch_id`` until the server acknowledges it, so a retry after a lost response is
   applied once. On success only the values the batch carried are dropped from the
   queue; a field edited again meanwhile has a newer HLC and stays queued.
2. **pulls** every page after the saved cursor. The server's state replaces the local
   one, except for what is still queued here (it will be pushed next time). A response
   with ``reset: true`` means the cursor was too old: the pull starts over from the
   beginning and, once complete, local records the server did not return are dropped
   (queued ones are kept).

A ``503 unavailable`` (the server's database or Redis is down) or a ``429`` is retried in
place by :class:`Backoff`: after the ``Retry-After`` the server sent, or an exponential,
jittered wait if longer, a few times, before :class:`~sync.client.errors.RetryLater` is
raised. A retried push carries the same ``batch_id``, so it is applied once.

Every response's ``server_hlc`` (and every pulled record's stamp) is folded into the
clock, so an edit made after seeing a change orders after it. The clock, cursor and
queue live in the :class:`~sync.client.store.LocalStore`, so an app restart resumes
exactly where it stopped. Errors are :mod:`sync.client.errors`; none of them loses work.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sync.client.errors import RecordNotFound, error_for_status
from sync.client.store import Batch, LocalStore, Record
from sync.client.transport import Reply, Transport
from sync.hlc import Clock

__all__ = [
    "MAX_BATCH",
    "SCHEMA_VERSION",
    "Backoff",
    "Conflict",
    "Superseded",
    "SyncClient",
    "SyncReport",
]

SCHEMA_VERSION = 1
MAX_BATCH = 500  # changes per push; the server accepts up to 1000
PAGE_SIZE = 500
MAX_PAGES_PER_PULL = 10_000  # a bound, not a limit anyone should reach (5M records)


#: The statuses a request is retried on in place: the server was fine with the request but
#: could not serve it now, and said when to come back (``Retry-After``).
RETRY_STATUSES = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class Backoff:
    """How :class:`SyncClient` retries a 503 or 429: up to ``attempts`` tries in all, each
    wait the server's ``Retry-After`` or a full-jitter exponential wait (``base_s`` doubling,
    at most ``cap_s``), whichever is longer."""

    attempts: int = 6
    base_s: float = 0.5
    cap_s: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def wait_s(self, attempt: int, retry_after_s: float | None) -> float:
        jitter = self.rng.uniform(0, min(self.cap_s, self.base_s * 2**attempt))
        return max(retry_after_s or 0.0, jitter)


@dataclass(frozen=True, slots=True)
class Superseded:
    """A pushed value that lost; the server keeps it in the conflict history."""

    table: str
    id: str
    field: str
    reason: str  # "older" or "deleted"


@dataclass(frozen=True, slots=True)
class Conflict:
    """An entry of the conflict history: a value that lost a merge, recoverable for 30 days."""

    table: str
    id: str
    field: str
    value: Any
    hlc: str
    winner_hlc: str
    reason: str  # "older", "deleted" or "overwritten"
    recorded_at: str


@dataclass(slots=True)
class SyncReport:
    """What one :meth:`SyncClient.sync` did."""

    batches: list[str] = field(default_factory=list)  # batch ids acknowledged
    pushed: int = 0  # changes the server applied
    superseded: list[Superseded] = field(default_factory=list)
    clock_skew_ms: int = 0  # how far ahead the server found this device's clock
    pulled: int = 0  # records received
    reset: bool = False  # the server asked for a full resync
    dropped: int = 0  # local records removed by a full resync


class SyncClient:
    """One device's replica of its person's space. Reads and edits are local; ``sync``
    exchanges changes with the server. Safe to edit from one thread while another syncs;
    run one ``sync`` at a time."""

    def __init__(
        self,
        device_id: str,
        transport: Transport,
        store: LocalStore,
        *,
        clock: Clock | None = None,
        batch_size: int = MAX_BATCH,
        page_size: int = PAGE_SIZE,
        backoff: Backoff | None = None,
    ) -> None:
        self.device_id = device_id
        self.backoff = backoff or Backoff()
        self.transport = transport
        self.store = store
        self.clock = clock or Clock(device_id)
        # Clock is not thread-safe, and a stamp must reach the queue in the order it was
        # issued; edits and clock updates take this lock (never held during I/O).
        self._clock_lock = threading.Lock()
        if (saved := store.clock()) is not None:
            self.clock.restore(saved)  # never issue a stamp older than one issued before
        self.batch_size = batch_size
        self.page_size = page_size

    # -- local reads and edits ----------------------------------------------------------

    def get(self, table: str, record_id: str) -> Record | None:
        """A live record as the person sees it, or ``None`` (unknown or deleted)."""
        record = self.store.view(table, record_id)
        return None if record is None or record.deleted else record

    def all(self, table: str) -> list[Record]:
        """Every live record of ``table``, ordered by id."""
        return self.store.view_all(table)

    def create(self, table: str, fields: Mapping[str, Any], *, record_id: str | None = None) -> str:
        """Create a record (with at least its table's required fields); return its id."""
        record_id = record_id or uuid.uuid4().hex
        self._write(table, record_id, fields)
        return record_id

    def update(self, table: str, record_id: str, fields: Mapping[str, Any]) -> None:
        """Change some fields of a record this device has."""
        if self.get(table, record_id) is None:
            raise RecordNotFound(f"{table}/{record_id} is not on this device (or is deleted)")
        self._write(table, record_id, fields)

    def delete(self, table: str, record_id: str) -> None:
        """Delete a record. Final: no later edit, here or elsewhere, brings it back."""
        if self.get(table, record_id) is None:
            raise RecordNotFound(f"{table}/{record_id} is not on this device (or is deleted)")
        with self._clock_lock:
            self.store.delete(table, record_id, self.clock.now())

    def _write(self, table: str, record_id: str, fields: Mapping[str, Any]) -> None:
        if not fields:
            raise ValueError("an edit must change at least one field")
        with self._clock_lock:
            self.store.write(table, record_id, dict(fields), self.clock.now())

    # -- sync ---------------------------------------------------------------------------

    def sync(self) -> SyncReport:
        """Push everything queued, then pull everything new."""
        report = SyncReport()
        self.push(report)
        self.pull(report)
        return report

    def push(self, report: SyncReport | None = None) -> SyncReport:
        """Send the queue, one frozen batch at a time. A batch left in flight by an earlier
        failure goes first, unchanged."""
        report = report if report is not None else SyncReport()
        # Bound: the batches queued now, plus one left in flight. Edits made while this
        # runs may ride along or wait for the next sync.
        budget = len(self.store.pending_changes()) // max(self.batch_size, 1) + 2
        for _ in range(budget):
            batch = self.store.freeze(uuid.uuid4().hex, self.batch_size)
            if batch is None:
                break
            self._push_batch(batch, report)
        return report

    def _push_batch(self, batch: Batch, report: SyncReport) -> None:
        body = self._post(
            "/v1/sync/push",
            {
                "device_id": self.device_id,
                "batch_id": batch.batch_id,
                "schema_version": SCHEMA_VERSION,
                "changes": [c.to_wire() for c in batch.changes],
            },
        )
        lost = [
            Superseded(s["table"], s["id"], s["field"], s["reason"]) for s in body["superseded"]
        ]
        self.store.complete(batch, [(s.table, s.id, s.field, s.reason) for s in lost])
        self._receive([body["server_hlc"]])
        report.batches.append(batch.batch_id)
        report.pushed += int(body["accepted"])
        report.superseded.extend(lost)
        report.clock_skew_ms = max(report.clock_skew_ms, int(body["clock_skew_ms"]))

    def pull(self, report: SyncReport | None = None) -> SyncReport:
        """Fetch every page after the saved cursor and store it under the queue."""
        report = report if report is not None else SyncReport()
        cursor = self.store.cursor()
        resetting = False
        seen: set[tuple[str, str]] = set()
        for _ in range(MAX_PAGES_PER_PULL):
            page = self._post(
                "/v1/sync/pull",
                {"schema_version": SCHEMA_VERSION, "cursor": cursor, "limit": self.page_size},
            )
            if page["reset"]:
                # Our cursor predates a purged tombstone, so the server restarted the pull
                # from cursor null: this page is the first of a full resync. Until it
                # completes, keep the old cursor saved, so a crash half-way repeats the
                # resync instead of skipping the clean-up of records deleted meanwhile.
                resetting, report.reset = True, True
                seen.clear()
            records = [
                Record(c["table"], c["id"], c["fields"], c["deleted"], c["hlc"])
                for c in page["changes"]
            ]
            self.store.apply_pulled(records, None if resetting else page["cursor"])
            self._receive([page["server_hlc"], *(r.hlc for r in records)])
            seen.update((r.table, r.id) for r in records)
            report.pulled += len(records)
            cursor = page["cursor"]
            if not page["has_more"]:
                if resetting:
                    report.dropped = self.store.finish_reset(seen, page["cursor"])
                break
        return report

    def discard_rejected_batch(self) -> Batch | None:
        """Give up on the batch in flight (after :class:`~sync.client.errors.Rejected`:
        the server will never accept it as sent) and drop the queued values it carried.
        Returns it, so the app can tell the person what could not be saved."""
        return self.store.discard_in_flight()

    # -- conflict history ---------------------------------------------------------------

    def conflicts(
        self, *, table: str | None = None, record_id: str | None = None, max_pages: int = 100
    ) -> Iterator[Conflict]:
        """The values that lost a merge in the last 30 days (optionally of one record)."""
        params: dict[str, str] = {"limit": "1000"}
        if table is not None:
            params["table"] = table
        if record_id is not None:
            params["id"] = record_id
        for _ in range(max_pages):
            body = self._get("/v1/sync/conflicts", params)
            for c in body["conflicts"]:
                yield Conflict(
                    c["table"],
                    c["id"],
                    c["field"],
                    c["value"],
                    c["hlc"],
                    c["winner_hlc"],
                    c["reason"],
                    c["recorded_at"],
                )
            if body["next"] is None:
                return
            params["after"] = body["next"]

    # -- plumbing -----------------------------------------------------------------------

    def _receive(self, stamps: list[str]) -> None:
        with self._clock_lock:
            for stamp in stamps:
                if stamp:  # a record only ever given server defaults carries no stamp
                    self.clock.receive(stamp)
            self.store.save_clock(str(self.clock.last))

    def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._answer(lambda: self.transport.post(path, body))

    def _get(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        return self._answer(lambda: self.transport.get(path, params))

    def _answer(self, send: Callable[[], Reply]) -> dict[str, Any]:
        """Send, retrying in place while the server says it is unavailable (503) or busy
        (429); then :func:`_ok` of the answer."""
        reply = send()
        for attempt in range(max(self.backoff.attempts, 1) - 1):
            if reply.status not in RETRY_STATUSES:
                break
            self.backoff.sleep(self.backoff.wait_s(attempt, reply.retry_after_s))
            reply = send()
        return _ok(reply)


def _ok(reply: Reply) -> dict[str, Any]:
    """The body of a 200 answer; any other status raises its error (``errors.py``)."""
    if reply.status != 200:
        raise error_for_status(reply.status, reply.body, reply.retry_after_s)
    result: dict[str, Any] = reply.body
    return result

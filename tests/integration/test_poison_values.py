"""Poison values: an event time the edge refuses, and rows already stored out of range
that must never break a read, a worker job, or a caregiver's alert (issue 18, items 1-2).

The audit's case: an interaction or check-in at ``0001-01-01T00:00:00+14:00`` (before year
1 in UTC) or ``9999-12-31T23:59:59-12:00`` (year 10000 in UTC) was accepted with 200; the
caregiver's summary and page then answered 500 and the worker's jobs failed on every retry,
so a later "need help" check-in raised an alert the caregiver never saw.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import asyncpg
import httpx
import pytest

from service.care.escalation import Escalation
from service.care.service import CareService
from service.insights import jobs as evaluation
from service.insights.service import InsightEvaluator
from service.jobs import Job, Kind
from service.store import nudges as nudge_store
from service.sync.service import SyncService
from service.worker.runner import Worker, WorkerConfig
from sync.hlc import Clock
from tests.conftest import ROOT
from tests.helpers import Account, expect_problem, new_id, push, register, stamp
from tests.integration.push_support import apns_token, set_push_token
from tests.integration.test_care import check_in, linked
from tests.integration.test_care_page import sign_in

POISON_TIMES = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00")


def _change(who: Account, table: str, at: str) -> dict[str, Any]:
    fields: dict[str, Any] = {"occurred_at": at}
    if table == "interactions":
        fields |= {"contact_ids": [new_id("c")], "kind": "in_person"}
    elif table == "check_ins":
        fields["status"] = "need_help"
    return {"table": table, "id": new_id("p"), "hlc": stamp(who.device_id), "fields": fields}


@pytest.mark.parametrize("table", ["interactions", "check_ins", "reflections"])
@pytest.mark.parametrize(
    "at",
    [
        *POISON_TIMES,
        "1899-12-31T23:59:59Z",
        "1900-01-01T00:00:00+01:00",  # 1899 in UTC
        "__tomorrow__",
    ],
)
async def test_an_event_time_out_of_range_is_refused_naming_the_field(
    http: httpx.AsyncClient, db: asyncpg.Connection, table: str, at: str
) -> None:
    if at == "__tomorrow__":
        at = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    who = await register(http)
    r = await http.post(
        "/v1/sync/push",
        headers=who.headers,
        json={
            "device_id": who.device_id,
            "batch_id": new_id("b"),
            "schema_version": 1,
            "changes": [_change(who, table, at)],
        },
    )
    body = expect_problem(r, 422, "invalid_field")
    assert body["errors"][0]["field"] == "changes[0].fields.occurred_at", body
    assert "1900-01-01" in body["errors"][0]["message"], body
    space = await db.fetchval("SELECT id FROM spaces WHERE owner_id = $1", who.user_id)
    assert await db.fetchval(f"SELECT count(*) FROM {table} WHERE space_id = $1", space) == 0


async def test_the_ends_of_the_range_are_accepted(http: httpx.AsyncClient) -> None:
    who = await register(http)
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)).isoformat()
    changes = [
        _change(who, table, at)
        for table in ("interactions", "check_ins", "reflections")
        for at in ("1900-01-01T00:00:00Z", "1900-01-01T00:00:00-05:00", soon)
    ]
    assert (await push(http, who, changes))["accepted"] == len(changes)


async def _poison(
    db: asyncpg.Connection | asyncpg.Pool[Any], space: str, table: str, at: str
) -> None:
    """Store a row the edge would now refuse, as an older server accepted it."""
    fields: dict[str, Any] = {"occurred_at": at}
    if table == "interactions":
        fields |= {"contact_ids": ["c-poison-1"], "kind": "in_person", "note": ""}
    elif table == "check_ins":
        fields |= {"status": "ok", "note": ""}
    await db.execute(
        f"""
        WITH s AS (UPDATE spaces SET seq = seq + 1 WHERE id = $1 RETURNING seq)
        INSERT INTO {table} (space_id, id, fields, clocks, hlc, seq)
        SELECT $1, $2, $3::jsonb, '{{}}'::jsonb, $4, s.seq FROM s
        """,
        space,
        new_id("poison"),
        json.dumps(fields),
        f"{int(dt.datetime.now(dt.UTC).timestamp() * 1000):013d}-0000-poisoner",
    )


async def test_stored_poison_never_breaks_a_read_a_job_or_a_help_alert(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool[Any],
    live_server: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mum, carer, link_id = await linked(http, ["check_ins", "contact_trend", "alerts"])
    space = str(await pool.fetchval("SELECT id FROM spaces WHERE owner_id = $1", mum.user_id))
    friend = {"display_name": "Poisoned tie", "circle": "inner"}
    await push(
        http,
        mum,
        [{"table": "contacts", "id": "c-poison-1", "hlc": stamp(mum.device_id), "fields": friend}],
    )
    for table in ("interactions", "check_ins", "reflections"):
        for at in POISON_TIMES:
            await _poison(pool, space, table, at)

    # The caregiver's summary (API) and page still answer, with the readable rows.
    r = await http.get(f"/v1/care/people/{link_id}/summary", headers=carer.headers)
    assert r.status_code == 200, r.text
    summary = r.json()["summary"]
    assert summary["check_ins"]["today"] == "ok"  # the real check-in of today
    assert sum(w["in_person"] for w in summary["contact_trend"]["weeks"]) == 2
    web = await sign_in(live_server, carer)
    try:
        page = await web.get(f"/care/{link_id}")
        assert page.status_code == 200, page.text
        assert 'id="check-ins"' in page.text
    finally:
        await web.aclose()

    # What was left out is logged by the server, without the values themselves.
    log = (ROOT / "test-output" / "api-server.log").read_text()
    assert "care summary: left out" in log
    assert not any(t in log for t in POISON_TIMES)

    # The nudge planner reads when each tie was last met: the poison is no meeting.
    ties = await nudge_store.load_ties(pool, space, ["c-poison-1"], dt.datetime.now(dt.UTC))
    assert ties["c-poison-1"].last_met_at is None

    # The worker's jobs for this person complete: the rules and the caregiver follow-up.
    clock = Clock("wrk-poison")
    handlers = evaluation.make_handlers(
        pool, InsightEvaluator(pool, clock), morning_hour=7, chunk=250
    )
    await handlers[Kind.EVALUATE](Job(0, Kind.EVALUATE, space, {}, 1))
    await handlers[Kind.EVALUATE_BATCH](
        Job(0, Kind.EVALUATE_BATCH, None, {"space_ids": [space]}, 1)
    )
    sync = SyncService(pool, clock, max_skew_ms=300_000)
    escalation = Escalation(pool, CareService(pool, sync))
    await set_push_token(http, carer, {"provider": "apns", "token": apns_token()})
    carer_space = await pool.fetchval("SELECT id FROM spaces WHERE owner_id = $1", carer.user_id)
    try:
        # A real "need help" now: the alert reaches the caregiver's summary, and a push to
        # their phone is queued.
        await push(http, mum, [check_in(mum, dt.datetime.now(dt.UTC), "need_help")])
        await escalation.check_in(Job(0, Kind.CARE_CHECK_IN, space, {}, 1))
        r = await http.get(f"/v1/care/people/{link_id}/summary", headers=carer.headers)
        assert r.status_code == 200, r.text
        kinds = [a["kind"] for a in r.json()["summary"]["alerts"]["open"]]
        assert kinds == ["need_help"]
        titles = await pool.fetch(
            "SELECT payload->>'title' AS title FROM jobs WHERE kind = $1 AND space_id = $2",
            Kind.CARE_PUSH,
            carer_space,
        )
        assert [t["title"] for t in titles] == ["Mum asked for help"]
    finally:
        await pool.execute(
            "DELETE FROM jobs WHERE space_id = ANY($1::text[])", [space, carer_space]
        )


class _Fragile(InsightEvaluator):
    """The real evaluator, but one person's history trips it (whatever the cause)."""

    def plan(self, raw: Any, now: dt.datetime) -> Any:
        if any('"Trip"' in text for text in raw.contacts.values()):
            raise OverflowError("date value out of range")
        return super().plan(raw, now)


async def _work_off(pool: asyncpg.Pool[Any], handlers: dict[str, Any], job_id: int) -> None:
    """Run a real worker until job ``job_id`` is finished (deleted) or dead."""
    worker = Worker(pool, handlers, WorkerConfig(poll_interval_s=0.05, concurrency=4))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        async with asyncio.timeout(20):
            while await pool.fetchval(
                "SELECT count(*) FROM jobs WHERE id = $1 AND state <> 'dead'", job_id
            ):
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task


async def test_one_persons_failure_never_fails_a_sweep_chunk_and_says_why(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any], database_url: str
) -> None:
    from service.cli import report_lines
    from tests.integration.push_support import fading_friend, make_person

    people = [await make_person(http, pool) for _ in range(3)]
    for person, name in zip(people, ("Sam", "Trip", "Ana"), strict=True):
        await fading_friend(http, person, name)
    spaces = [p.space_id for p in people]
    await pool.execute("DELETE FROM jobs WHERE space_id = ANY($1::text[])", spaces)
    poisoned = spaces[1]
    handlers = evaluation.make_handlers(
        pool, _Fragile(pool, Clock("wrk-fragile")), morning_hour=7, chunk=250
    )
    try:
        batch = await pool.fetchval(
            "INSERT INTO jobs (kind, payload) VALUES ($1, $2::jsonb) RETURNING id",
            Kind.EVALUATE_BATCH,
            json.dumps({"space_ids": spaces}),
        )
        await _work_off(pool, handlers, batch)
        # The chunk finished; the others' insights are written, the failed person's are not.
        assert await pool.fetchval("SELECT count(*) FROM jobs WHERE id = $1", batch) == 0
        written = {
            r["space_id"]: r["n"]
            for r in await pool.fetch(
                "SELECT space_id, count(*) AS n FROM insights WHERE space_id = ANY($1::text[])"
                " GROUP BY space_id",
                spaces,
            )
        }
        assert written.get(spaces[0]), written
        assert written.get(spaces[2]), written
        assert poisoned not in written
        # The failed person got a job of their own; when it can never succeed it
        # dead-letters, and `kith report` says why (type and place, no personal data).
        own = await pool.fetchrow(
            "SELECT id, space_id FROM jobs WHERE kind = $1 AND space_id = ANY($2::text[])",
            Kind.EVALUATE,
            spaces,
        )
        assert own is not None
        assert own["space_id"] == poisoned
        await pool.execute("UPDATE jobs SET max_attempts = 1 WHERE id = $1", own["id"])
        await _work_off(pool, handlers, own["id"])
        lines = await report_lines(database_url, 90)
        [line] = [x for x in lines if f"dead #{own['id']} " in x]
        assert " evaluate after " in line, line
        assert "attempts: OverflowError in tests/integration/test_poison_values.py:" in line
        assert line.endswith(" (plan)"), line
        assert "date value" not in line  # the type and the place, never the message
    finally:
        await pool.execute(
            "DELETE FROM jobs WHERE space_id = ANY($1::text[]) OR kind = $2",
            spaces,
            Kind.EVALUATE_BATCH,
        )

"""Caregivers: consent the older adult controls, a summary that shows exactly what was
granted (never names, notes or reflections), revocation that reaches the caregiver's
phone, an audit trail, and check-in escalation on the older adult's own clock."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx

from service.care.escalation import Escalation
from service.care.jobs import CarePushJobs
from service.care.service import CareService
from service.jobs import Job, Kind
from service.push.factory import build_providers
from service.sync.service import SyncService
from sync.hlc import Clock
from tests.helpers import Account, expect_problem, new_id, pull_all, push, register, stamp
from tests.integration.push_support import Fakes, apns_token, drain, set_push_token

LISBON = ZoneInfo("Europe/Lisbon")
SECRETS = ("Secret Sam Name", "private contact note XYZ", "my private reflection ABC", "chk note")
ALL_SCOPES = ("check_ins", "contact_trend", "alerts")


async def older_adult_with_a_life(http: httpx.AsyncClient) -> Account:
    """Someone with a contact, meetings, a reflection and a check-in — and private words
    in each that must never reach a caregiver."""
    mum = await register(http, time_zone="Europe/Lisbon")
    sam = new_id("c")
    now = dt.datetime.now(dt.UTC)
    changes: list[dict[str, Any]] = [
        {
            "table": "contacts",
            "id": sam,
            "hlc": stamp(mum.device_id),
            "fields": {"display_name": SECRETS[0], "notes": SECRETS[1], "circle": "inner"},
        },
        {
            "table": "reflections",
            "id": new_id("r"),
            "hlc": stamp(mum.device_id),
            "fields": {"occurred_at": now.isoformat(), "body": SECRETS[2], "mood": 2},
        },
        {
            "table": "check_ins",
            "id": new_id("k"),
            "hlc": stamp(mum.device_id),
            "fields": {
                "occurred_at": now.isoformat(),
                "status": "ok",
                "mood": 4,
                "note": SECRETS[3],
            },
        },
    ]
    for days, kind in ((3, "in_person"), (10, "call"), (17, "in_person")):
        changes.append(
            {
                "table": "interactions",
                "id": new_id("i"),
                "hlc": stamp(mum.device_id),
                "fields": {
                    "contact_ids": [sam],
                    "kind": kind,
                    "occurred_at": (now - dt.timedelta(days=days)).isoformat(),
                    "note": SECRETS[1],
                },
            }
        )
    await push(http, mum, changes)
    return mum


async def invite(http: httpx.AsyncClient, who: Account, scopes: list[str] | None = None) -> str:
    r = await http.post("/v1/care/invitations", headers=who.headers, json={"scopes": scopes or []})
    assert r.status_code == 201, r.text
    code: str = r.json()["code"]
    return code


async def accept(
    http: httpx.AsyncClient, who: Account, code: str, label: str = "Mum"
) -> dict[str, Any]:
    r = await http.post(
        "/v1/care/invitations/accept", headers=who.headers, json={"code": code, "label": label}
    )
    assert r.status_code == 201, r.text
    person: dict[str, Any] = r.json()
    return person


async def linked(http: httpx.AsyncClient, scopes: list[str]) -> tuple[Account, Account, str]:
    mum = await older_adult_with_a_life(http)
    carer = await register(http, time_zone="Europe/London")
    person = await accept(http, carer, await invite(http, mum, scopes))
    return mum, carer, person["link_id"]


async def summary_rows(http: httpx.AsyncClient, carer: Account) -> list[dict[str, Any]]:
    records, _ = await pull_all(http, carer)
    return [r for (table, _), r in records.items() if table == "care_summaries"]


def no_secrets(*docs: Any) -> None:
    text = json.dumps(docs)
    for secret in SECRETS:
        assert secret not in text


# -- consent and scopes --------------------------------------------------------------------


async def test_each_scope_combination_shows_exactly_what_was_granted(
    http: httpx.AsyncClient,
) -> None:
    mum, carer, link_id = await linked(http, [])
    for n in range(len(ALL_SCOPES) + 1):
        for combo in itertools.combinations(ALL_SCOPES, n):
            r = await http.put(
                f"/v1/care/caregivers/{link_id}/scopes",
                headers=mum.headers,
                json={"scopes": list(combo)},
            )
            assert r.status_code == 200, r.text
            assert r.json()["scopes"] == list(combo)
            r = await http.get(f"/v1/care/people/{link_id}/summary", headers=carer.headers)
            assert r.status_code == 200, r.text
            api = r.json()
            assert set(api["summary"]) == set(combo)
            [row] = [x for x in await summary_rows(http, carer) if not x.get("deleted")]
            assert set(row["fields"]["summary"]) == set(combo)
            assert row["fields"]["display_name"] == "Mum"
            no_secrets(api, row)
    # With everything granted, the numbers are the older adult's own.
    summary = api["summary"]
    assert summary["check_ins"]["today"] in {"ok", None}  # "today" is Lisbon's today
    assert summary["check_ins"]["last_mood"] == 4
    assert summary["contact_trend"]["days_since_in_person"] in {3, 4}
    weeks = summary["contact_trend"]["weeks"]
    assert len(weeks) == 12
    assert sum(w["in_person"] for w in weeks) == 2
    assert sum(w["remote"] for w in weeks) == 1
    assert summary["alerts"] == {"open": [], "resolved": [], "isolation_risk": False}


async def test_an_invitation_is_single_use_personal_and_expires(
    http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    mum = await register(http)
    code = await invite(http, mum)
    r = await http.post("/v1/care/invitations/accept", headers=mum.headers, json={"code": code})
    expect_problem(r, 409, "own_invitation")
    carer = await register(http)
    await accept(http, carer, code.lower().replace("-", " "))  # read aloud, typed loosely
    other = await register(http)
    r = await http.post("/v1/care/invitations/accept", headers=other.headers, json={"code": code})
    expect_problem(r, 404, "invitation_invalid")
    late = await invite(http, mum)
    await db.execute("UPDATE care_invitations SET expires_at = now() - interval '1 minute'")
    r = await http.post("/v1/care/invitations/accept", headers=other.headers, json={"code": late})
    expect_problem(r, 404, "invitation_invalid")
    r = await http.post(
        "/v1/care/invitations/accept", headers=other.headers, json={"code": "x" * 40}
    )
    problem = expect_problem(r, 422)
    assert [e["field"] for e in problem["errors"]] == ["code"]


async def test_only_the_older_adult_controls_the_link(http: httpx.AsyncClient) -> None:
    mum, carer, link_id = await linked(http, ["check_ins"])
    stranger = await register(http)
    for who in (carer, stranger):
        r = await http.put(
            f"/v1/care/caregivers/{link_id}/scopes",
            headers=who.headers,
            json={"scopes": list(ALL_SCOPES)},
        )
        expect_problem(r, 404)
        r = await http.delete(f"/v1/care/caregivers/{link_id}", headers=who.headers)
        expect_problem(r, 404)
    r = await http.get(f"/v1/care/people/{link_id}/summary", headers=stranger.headers)
    expect_problem(r, 404)
    r = await http.get("/v1/care/people", headers=carer.headers)
    assert [p["label"] for p in r.json()["people"]] == ["Mum"]
    r = await http.get("/v1/care/caregivers", headers=mum.headers)
    [cg] = r.json()["caregivers"]
    assert (cg["link_id"], cg["scopes"], cg["state"]) == (link_id, ["check_ins"], "active")


async def test_pause_resume_and_revoke_reach_the_caregivers_phone_at_once(
    http: httpx.AsyncClient,
) -> None:
    mum, carer, link_id = await linked(http, ["check_ins"])
    [row] = await summary_rows(http, carer)
    r = await http.post(f"/v1/care/caregivers/{link_id}/pause", headers=mum.headers)
    assert r.json()["state"] == "paused"
    [gone] = await summary_rows(http, carer)
    assert (gone["id"], gone["deleted"]) == (row["id"], True)
    assert "summary" not in (gone.get("fields") or {})  # a tombstone keeps no content
    r = await http.get(f"/v1/care/people/{link_id}/summary", headers=carer.headers)
    expect_problem(r, 404)

    await http.post(f"/v1/care/caregivers/{link_id}/resume", headers=mum.headers)
    live = [x for x in await summary_rows(http, carer) if not x["deleted"]]
    assert len(live) == 1
    assert live[0]["id"] != row["id"]  # a new row: deletes are final

    started = time.monotonic()
    r = await http.delete(f"/v1/care/caregivers/{link_id}", headers=mum.headers)
    assert r.status_code == 204
    rows = await summary_rows(http, carer)
    assert all(x["deleted"] for x in rows)
    assert time.monotonic() - started < 1.0
    r = await http.get(f"/v1/care/people/{link_id}/summary", headers=carer.headers)
    expect_problem(r, 404)
    r = await http.get("/v1/care/people", headers=carer.headers)
    assert r.json()["people"] == []


async def test_the_older_adult_sees_who_looked_and_when(http: httpx.AsyncClient) -> None:
    mum, carer, link_id = await linked(http, ["check_ins"])
    for _ in range(2):
        r = await http.get(f"/v1/care/people/{link_id}/summary", headers=carer.headers)
        assert r.status_code == 200
    r = await http.get("/v1/care/audit", headers=mum.headers)
    views = r.json()["views"]
    assert [(v["link_id"], v["channel"]) for v in views] == [(link_id, "api")] * 2
    assert views[0]["caregiver_name"] == "Test Person"
    r = await http.get("/v1/care/audit", headers=carer.headers)
    assert r.json()["views"] == []  # the caregiver's own audit: nobody looked at theirs


# -- escalation on a fake clock across a DST change ------------------------------------------


async def test_check_in_escalation_across_the_spring_dst_change(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool[Any],
    fakes: Fakes,
    database_url: str,
) -> None:
    """Lisbon moves to summer time at 01:00 UTC on 2026-03-29. Mum's check-in is due at
    10:00 local (09:00 UTC that day, 10:00 UTC the day before) with 30 minutes' grace."""
    mum, carer, link_id = await linked(http, ["check_ins", "alerts"])
    phone, carer_phone = apns_token(), apns_token()
    await set_push_token(http, mum, {"provider": "apns", "token": phone})
    await set_push_token(http, carer, {"provider": "apns", "token": carer_phone})
    await push(
        http,
        mum,
        [
            {
                "table": "settings",
                "id": "settings",
                "hlc": stamp(mum.device_id),
                "fields": {"check_in_deadline": "10:00", "check_in_grace_min": 30},
            }
        ],
    )
    space = str(await pool.fetchval("SELECT id FROM spaces WHERE owner_id = $1", mum.user_id))
    # Met people weekly two to three months back, nobody in the last month: declining.
    clock = fakes.clock
    clock.now = dt.datetime(2026, 3, 28, 20, 0, tzinfo=dt.UTC)
    sam = new_id("c")
    await push(
        http,
        mum,
        [
            {
                "table": "contacts",
                "id": sam,
                "hlc": stamp(mum.device_id),
                "fields": {"display_name": "S"},
            },
            *(
                {
                    "table": "interactions",
                    "id": new_id("i"),
                    "hlc": stamp(mum.device_id),
                    "fields": {
                        "contact_ids": [sam],
                        "kind": "in_person",
                        "occurred_at": (clock.now - dt.timedelta(weeks=w)).isoformat(),
                    },
                }
                for w in range(5, 12)
            ),
        ],
    )
    sync = SyncService(pool, Clock("wrk-care-test"), max_skew_ms=300_000)
    escalation = Escalation(pool, CareService(pool, sync, clock), clock)
    providers = build_providers(fakes.settings(database_url), pool, clock)
    senders = CarePushJobs(pool, providers).handlers()

    async def next_tick() -> tuple[dt.datetime, dict[str, Any]]:
        row = await pool.fetchrow(
            "SELECT payload::text, run_at - now() AS wait FROM jobs "
            "WHERE kind = $1 AND space_id = $2",
            Kind.CHECKIN_TICK,
            space,
        )
        assert row is not None
        return clock.now + row["wait"], json.loads(row["payload"])

    async def run_tick() -> None:
        at, payload = await next_tick()
        clock.now = at
        await escalation.tick(Job(0, Kind.CHECKIN_TICK, space, payload, 1))
        await drain(pool, senders, [space, carer_space])

    carer_space = str(
        await pool.fetchval("SELECT id FROM spaces WHERE owner_id = $1", carer.user_id)
    )
    try:
        await pool.execute("DELETE FROM jobs WHERE space_id = $1", space)
        await escalation.schedule(space)
        at, payload = await next_tick()
        assert payload == {"event": "remind_before", "date": "2026-03-29"}
        assert abs((at - dt.datetime(2026, 3, 29, 8, 0, tzinfo=dt.UTC)).total_seconds()) < 5

        await run_tick()  # 09:00 local, already summer time
        [shown] = fakes.apns.shown(phone)
        assert shown["aps"]["alert"]["title"] == "Time for your daily check-in"
        at, payload = await next_tick()
        assert payload["event"] == "remind_due"
        assert abs((at - dt.datetime(2026, 3, 29, 9, 0, tzinfo=dt.UTC)).total_seconds()) < 5
        await run_tick()  # 10:00 local: the reminder replaces the first one on the phone
        assert len(fakes.apns.notifications(phone)) == 2
        assert [s["aps"]["alert"]["title"] for s in fakes.apns.shown(phone)] == [
            "Your check-in is due now"
        ]

        at, payload = await next_tick()
        assert payload["event"] == "alert"
        assert abs((at - dt.datetime(2026, 3, 29, 9, 30, tzinfo=dt.UTC)).total_seconds()) < 5
        await run_tick()  # 10:30 local: the caregiver is alerted, time-sensitive
        [alert] = fakes.apns.shown(carer_phone)
        assert alert["aps"]["alert"]["title"] == "No check-in from Mum yet today"
        assert alert["aps"]["interruption-level"] == "time-sensitive"
        assert "seeing people less" in alert["aps"]["alert"]["body"]  # declining → high
        r = await http.get(f"/v1/care/people/{link_id}/summary", headers=carer.headers)
        # (the API's clock is real time; the alert itself is what the summary must show)
        [open_alert] = r.json()["summary"]["alerts"]["open"]
        assert (open_alert["kind"], open_alert["priority"]) == ("missed_check_in", "high")

        # A late check-in at 10:45 local: all clear.
        clock.now = dt.datetime(2026, 3, 29, 9, 45, tzinfo=dt.UTC)
        await push(http, mum, [check_in(mum, clock.now, "ok")])
        await escalation.check_in(Job(0, Kind.CARE_CHECK_IN, space, {}, 1))
        await drain(pool, senders, [carer_space])
        titles = [s["aps"]["alert"]["title"] for s in fakes.apns.shown(carer_phone)]
        assert titles == ["No check-in from Mum yet today", "Mum checked in"]
        r = await http.get(f"/v1/care/people/{link_id}/summary", headers=carer.headers)
        assert r.json()["summary"]["alerts"]["open"] == []
        at, payload = await next_tick()  # nothing more today: tomorrow's first reminder
        assert payload == {"event": "remind_before", "date": "2026-03-30"}

        # "I need help" alerts at once.
        clock.now = dt.datetime(2026, 3, 29, 15, 0, tzinfo=dt.UTC)
        await push(http, mum, [check_in(mum, clock.now, "need_help")])
        await escalation.check_in(Job(0, Kind.CARE_CHECK_IN, space, {}, 1))
        await drain(pool, senders, [carer_space])
        help_push = fakes.apns.shown(carer_phone)[-1]
        assert help_push["aps"]["alert"]["title"] == "Mum asked for help"
        assert "16:00" in help_push["aps"]["alert"]["body"]  # Lisbon summer time
    finally:
        for p in providers.values():
            await p.aclose()
        await pool.execute(
            "DELETE FROM jobs WHERE space_id = ANY($1::text[])", [space, carer_space]
        )


def check_in(who: Account, at: dt.datetime, status: str) -> dict[str, Any]:
    return {
        "table": "check_ins",
        "id": new_id("k"),
        "hlc": stamp(who.device_id),
        "fields": {"occurred_at": at.isoformat(), "status": status},
    }


async def test_a_check_in_wakes_the_workers_at_once(
    http: httpx.AsyncClient, redis_url: str
) -> None:
    """A need-help check-in must not wait for a worker's next poll."""
    import asyncio

    import redis.asyncio as aioredis

    from service.infra.wakeup import JOBS_CHANNEL

    mum = await register(http)
    client = aioredis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe(JOBS_CHANNEL)
        await pubsub.get_message(timeout=1.0)  # the subscription confirmation
        await push(http, mum, [check_in(mum, dt.datetime.now(dt.UTC), "need_help")])
        message = None
        async with asyncio.timeout(2):
            while message is None:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        assert message["channel"] == JOBS_CHANNEL.encode()
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
        await client.aclose()


async def test_only_check_ins_someone_acts_on_queue_escalation_work(
    http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """No caregiver and no deadline: nothing to do for a check-in. Either one: a job."""
    alone = await register(http)
    await push(http, alone, [check_in(alone, dt.datetime.now(dt.UTC), "ok")])
    shared, _, _ = await linked(http, ["check_ins"])
    await push(http, shared, [check_in(shared, dt.datetime.now(dt.UTC), "ok")])
    queued = {
        r["owner_id"]
        for r in await db.fetch(
            "SELECT s.owner_id FROM jobs j JOIN spaces s ON s.id = j.space_id "
            "WHERE j.kind = $1 AND s.owner_id = ANY($2::text[])",
            Kind.CARE_CHECK_IN,
            [alone.user_id, shared.user_id],
        )
    }
    assert queued == {shared.user_id}

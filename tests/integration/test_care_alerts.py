"""A help request closes its loop (issue 17, decision 0018): a caregiver acknowledges, the
other caregiver sees who is on it, the person's phone learns it by sync and by push; nobody
answering climbs the ladder to "no response"; a resolution stops it; a worker killed
mid-ladder resumes without sending a rung twice. Real API, real worker and job runner,
real PostgreSQL and Redis, and the HTTP/2 APNs fake."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import redis.asyncio as aioredis

from service.care.alerts import AlertService
from service.care.escalation import Escalation
from service.care.jobs import CarePushJobs
from service.care.ladder import Ladder
from service.care.service import CareService
from service.cli import report_lines
from service.config import CareSettings
from service.infra.wakeup import listen
from service.jobs import Handler, Kind
from service.push.base import Provider
from service.push.factory import build_providers
from service.sync.realtime import ChangeNotifier
from service.sync.service import SyncService
from service.worker.runner import Worker, WorkerConfig
from sync.hlc import Clock
from tests.conftest import CITUS
from tests.helpers import Account, expect_problem, new_id, pull_all, push, register, stamp
from tests.integration.push_support import (
    Fakes,
    PushKeys,
    SimClock,
    apns_token,
    fake_apns,
    set_push_token,
)
from tests.integration.test_care import accept, invite

LISBON = ZoneInfo("Europe/Lisbon")
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
#: The ladder on a short clock, so it runs in seconds (the defaults are 5, 10, 20 minutes).
QUICK = CareSettings(help_repeat_after_s=1, help_everyone_after_s=2, help_no_response_after_s=3)


@dataclass
class Carer:
    account: Account
    link_id: str
    token: str  # their iPhone's APNs token


@dataclass
class Circle:
    """Mum (the older adult, with an iPhone) and her two caregivers, Carol and Dan, both
    with the ``alerts`` scope."""

    mum: Account
    space_id: str
    phone: str
    carol: Carer
    dan: Carer


async def circle(http: httpx.AsyncClient, pool: asyncpg.Pool[Any]) -> Circle:
    mum = await register(http, time_zone="Europe/Lisbon")
    phone = apns_token()
    await set_push_token(http, mum, {"provider": "apns", "token": phone})
    carers = []
    for name in ("Carol", "Dan"):
        who = await register(http, time_zone="Europe/London")
        link = await accept(http, who, await invite(http, mum, ["check_ins", "alerts"]))
        token = apns_token()
        await set_push_token(http, who, {"provider": "apns", "token": token})
        await pool.execute("UPDATE users SET display_name = $1 WHERE id = $2", name, who.user_id)
        carers.append(Carer(who, link["link_id"], token))
    space = str(await pool.fetchval("SELECT id FROM spaces WHERE owner_id = $1", mum.user_id))
    return Circle(mum, space, phone, carers[0], carers[1])


async def ask_for_help(http: httpx.AsyncClient, c: Circle) -> str:
    """Mum checks in with "I need help" from her phone; returns the alert's id."""
    check_in = new_id("k")
    await push(
        http,
        c.mum,
        [
            {
                "table": "check_ins",
                "id": check_in,
                "hlc": stamp(c.mum.device_id),
                "fields": {
                    "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
                    "status": "need_help",
                },
            }
        ],
    )
    return f"help:{check_in}"


@contextlib.asynccontextmanager
async def care_worker(
    pool: asyncpg.Pool[Any],
    fakes: Fakes,
    database_url: str,
    redis_url: str,
    settings: CareSettings = CareSettings(),
    *,
    poll_s: float = 0.05,
) -> AsyncIterator[Worker]:
    """A real job runner with the caregiver handlers, woken through Redis like `kith worker`."""
    client = aioredis.Redis.from_url(redis_url)
    notifier = ChangeNotifier(client)
    sync = SyncService(
        pool,
        Clock("wrk-alerts"),
        max_skew_ms=300_000,
        publish=notifier.publish,
        announce=notifier.announce,
    )
    care = CareService(pool, sync)
    alerts = AlertService(pool, sync, care)
    providers: dict[str, Provider] = build_providers(
        fakes.settings(database_url), pool, fakes.clock
    )
    handlers: dict[str, Handler] = {
        **Escalation(pool, care, settings=settings, alerts=alerts).handlers(),
        **Ladder(pool, alerts, settings).handlers(),
        **alerts.handlers(),
        **CarePushJobs(pool, providers).handlers(),
    }
    worker = Worker(pool, handlers, WorkerConfig(poll_interval_s=poll_s, concurrency=16))
    stop = asyncio.Event()
    listener = asyncio.create_task(listen(redis_url, worker.wake, stop))
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.gather(task, listener)
        for p in providers.values():
            await p.aclose()
        await notifier.close()
        await client.aclose()


async def until(check: Callable[[], Awaitable[bool]], within_s: float = 20) -> None:
    async with asyncio.timeout(within_s):
        while not await check():
            await asyncio.sleep(0.05)


def titles(fakes_apns: Any, token: str) -> list[str]:
    return [n.payload["aps"]["alert"]["title"] for n in fakes_apns.notifications(token)]


async def alert_record(http: httpx.AsyncClient, who: Account) -> dict[str, Any]:
    records, _ = await pull_all(http, who)
    [row] = [r for (table, _), r in records.items() if table == "alerts"]
    fields: dict[str, Any] = row["fields"]
    return fields


async def summary_alerts(http: httpx.AsyncClient, carer: Carer) -> dict[str, Any]:
    """The alerts section of the caregiver's synced summary (as their phone has it)."""
    records, _ = await pull_all(http, carer.account)
    [row] = [
        r for (table, _), r in records.items() if table == "care_summaries" and not r["deleted"]
    ]
    section: dict[str, Any] = row["fields"]["summary"]["alerts"]
    return section


#: The kinds the caregiver worker runs (the rules' evaluations are not under test here).
CARE_KINDS = [
    Kind.CARE_CHECK_IN,
    Kind.CHECKIN_TICK,
    Kind.CARE_PUSH,
    Kind.HELP_LADDER,
    Kind.CARE_ALERTS_SYNC,
]


async def no_jobs_running(pool: asyncpg.Pool[Any], space_ids: list[str]) -> bool:
    """None of these people's caregiver jobs is due or running."""
    n = await pool.fetchval(
        """
        SELECT count(*) FROM jobs WHERE space_id = ANY($1::text[]) AND kind = ANY($2::text[])
          AND (state = 'running' OR (state = 'queued' AND run_at <= now()))
        """,
        space_ids,
        CARE_KINDS,
    )
    return bool(n == 0)


async def queue_idle(pool: asyncpg.Pool[Any]) -> bool:
    """No job of anyone's is due or running: a worker started now has worked off what the
    tests before left queued (sweeps, evaluations of hundreds of people)."""
    n = await pool.fetchval(
        "SELECT count(*) FROM jobs "
        "WHERE state = 'running' OR (state = 'queued' AND run_at <= now())"
    )
    return bool(n == 0)


async def carer_spaces(pool: asyncpg.Pool[Any], c: Circle) -> list[str]:
    rows = await pool.fetch(
        "SELECT id FROM spaces WHERE owner_id = ANY($1::text[])",
        [c.carol.account.user_id, c.dan.account.user_id],
    )
    return [c.space_id, *(r["id"] for r in rows)]


# -- acknowledge: one caregiver answers, the other sees it, the person learns it ----------


async def test_one_caregiver_acknowledges_the_other_sees_it_and_the_person_learns_it(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool[Any],
    fakes: Fakes,
    database_url: str,
    redis_url: str,
) -> None:
    c = await circle(http, pool)
    spaces = await carer_spaces(pool, c)
    # The worker polls only every 30 s: what arrives "within seconds" came by its wake-up.
    async with care_worker(pool, fakes, database_url, redis_url, poll_s=30) as worker:
        await until(lambda: _subscribed(redis_url))
        alert_id = await ask_for_help(http, c)
        await until(lambda: _has(fakes, c.carol.token, c.dan.token))
        for carer in (c.carol, c.dan):
            [shown] = fakes.apns.shown(carer.token)
            assert shown["aps"]["alert"]["title"] == "Mum asked for help"
            assert shown["aps"]["category"] == "KITH_HELP"  # its "I'm on it" button
            assert shown["aps"]["interruption-level"] == "time-sensitive"
            assert (shown["alert_id"], shown["link_id"]) == (alert_id, carer.link_id)
        await until(lambda: no_jobs_running(pool, spaces))  # the alert job ends by writing it
        before = await alert_record(http, c.mum)
        assert before["status"] == "open"
        assert before["message"].startswith("Your request for help went to your caregivers")

        # Carol taps "I'm on it" on the push: the app posts the action.
        url = f"/v1/care/people/{c.carol.link_id}/alerts/{alert_id}/acknowledge"
        r = await http.post(url, headers=c.carol.account.headers, json={"via": "push"})
        assert r.status_code == 200, r.text
        first = r.json()
        assert first["status"] == "acknowledged"
        assert (first["acknowledged_by"], first["acknowledged_by_me"]) == ("Carol", True)
        # Mum's phone is told within seconds, by a push.
        await until(lambda: _has(fakes, c.phone), within_s=5)
        [seen] = fakes.apns.shown(c.phone)
        assert seen["aps"]["alert"]["title"] == "Carol saw your request"
        assert worker.counters["claimed"] >= 1
        # Idempotent: the same tap again changes nothing.
        again = await http.post(url, headers=c.carol.account.headers, json={"via": "push"})
        assert again.status_code == 200
        assert again.json()["acknowledged_at"] == first["acknowledged_at"]
        # Dan answers too: recorded, but Carol's came first.
        r = await http.post(
            f"/v1/care/people/{c.dan.link_id}/alerts/{alert_id}/acknowledge",
            headers=c.dan.account.headers,
        )
        assert r.status_code == 200, r.text
        dans = r.json()
        assert (dans["acknowledged_by"], dans["acknowledged_by_me"]) == ("Carol", False)
        assert dans["also_acknowledged_by"] == ["Dan"]
        await until(lambda: no_jobs_running(pool, spaces))

    # Mum's next sync: who saw it and when — a name and a time, nothing else of them.
    mine = await alert_record(http, c.mum)
    at = dt.datetime.fromisoformat(first["acknowledged_at"]).astimezone(LISBON)
    assert mine["status"] == "acknowledged"
    assert mine["message"] == f"Carol saw your request at {at:%H:%M}"
    assert [a["by"] for a in mine["acknowledgements"]] == ["Carol", "Dan"]
    text = json.dumps(mine)
    for carer in (c.carol, c.dan):
        assert carer.account.email not in text
        assert carer.account.user_id not in text
        assert carer.link_id not in text
    # Dan's phone: the alert was replaced in place by "Carol is on it" (same collapse id),
    # and his synced summary says so.
    assert [s["aps"]["alert"]["title"] for s in fakes.apns.shown(c.dan.token)] == ["Carol is on it"]
    [entry] = (await summary_alerts(http, c.dan))["open"]
    assert (entry["status"], entry["acknowledged_by"], entry["acknowledged_by_me"]) == (
        "acknowledged",
        "Carol",
        False,
    )
    # Acknowledged: the ladder stopped — no rung is waiting.
    assert not await pool.fetchval(
        "SELECT count(*) FROM jobs WHERE kind = $1 AND space_id = $2", Kind.HELP_LADDER, c.space_id
    )
    # Mum's audit: who acted, how and when.
    audit = (await http.get("/v1/care/audit", headers=c.mum.headers)).json()["views"]
    acted = [(v["caregiver_name"], v["action"], v["channel"]) for v in audit if v["alert_id"]]
    assert sorted(acted) == [("Carol", "acknowledged", "push"), ("Dan", "acknowledged", "api")]


async def _subscribed(redis_url: str) -> bool:
    client = aioredis.Redis.from_url(redis_url)
    try:
        return bool((await client.pubsub_numsub("kith:jobs"))[0][1] >= 1)
    finally:
        await client.aclose()


async def _has(fakes: Fakes, *tokens: str) -> bool:
    return all(fakes.apns.notifications(t) for t in tokens)


# -- nobody answers: the ladder runs to its end --------------------------------------------


async def test_nobody_answers_and_the_ladder_runs_to_no_response(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool[Any],
    fakes: Fakes,
    database_url: str,
    redis_url: str,
) -> None:
    c = await circle(http, pool)
    spaces = await carer_spaces(pool, c)
    # The summaries were last written by a process whose clock runs 20 s ahead (an API
    # whose clock folded in a fast phone's stamp, within the allowed skew): the worker's
    # refresh right after the alert must still win, or the caregivers would not see it.
    fast = Clock("srv-ahead", wall=lambda: time.time_ns() // 10**6 + 20_000)
    ahead = SyncService(pool, fast, max_skew_ms=300_000)
    await CareService(pool, ahead).refresh(c.space_id)
    async with care_worker(pool, fakes, database_url, redis_url, QUICK):
        alert_id = await ask_for_help(http, c)

        async def raised() -> bool:
            return not await pool.fetchval(
                "SELECT count(*) FROM jobs WHERE kind = $1 AND space_id = $2 "
                "AND state IN ('queued', 'running')",
                Kind.CARE_CHECK_IN,
                c.space_id,
            )

        await until(raised)
        [shown] = (await summary_alerts(http, c.carol))["open"]
        assert shown["alert_id"] == alert_id

        async def ended() -> bool:
            return bool(
                await pool.fetchval(
                    "SELECT no_response_at IS NOT NULL FROM care_alerts "
                    "WHERE space_id = $1 AND id = $2",
                    c.space_id,
                    alert_id,
                )
            )

        await until(ended)
        await until(lambda: no_jobs_running(pool, spaces))
    ladder = [
        "Mum asked for help",
        "Still waiting: Mum asked for help",
        "Nobody has answered Mum yet",
    ]
    for carer in (c.carol, c.dan):
        assert titles(fakes.apns, carer.token) == ladder  # each rung once, in order
        for n in fakes.apns.notifications(carer.token):
            assert n.payload["aps"]["interruption-level"] == "time-sensitive"
            assert n.payload["aps"]["category"] == "KITH_HELP"
        # One notification on the phone, updated in place at each rung.
        assert len(fakes.apns.shown(carer.token)) == 1
    # The rungs were spaced as configured (1 s, 2 s after the alert), not sent at once.
    arrivals = [n.arrived_at for n in fakes.apns.notifications(c.carol.token)]
    assert arrivals == sorted(arrivals)
    assert titles(fakes.apns, c.phone) == ["Nobody has answered yet"]
    mine = await alert_record(http, c.mum)
    assert mine["status"] == "no_response"
    assert mine["message"].startswith("Nobody has answered yet")
    [entry] = (await summary_alerts(http, c.carol))["open"]
    assert entry["status"] == "no_response"
    lines = await report_lines(database_url, 1)
    assert any("NO RESPONSE" in line and c.space_id in line for line in lines), lines
    # An acknowledgement after the end still counts: help is coming after all.
    r = await http.post(
        f"/v1/care/people/{c.dan.link_id}/alerts/{alert_id}/acknowledge",
        headers=c.dan.account.headers,
    )
    assert r.json()["status"] == "acknowledged"
    assert (await alert_record(http, c.mum))["message"].startswith("Dan saw your request")


# -- a resolution stops the ladder at once ---------------------------------------------------


async def test_a_resolution_during_the_ladder_stops_it_at_once(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool[Any],
    fakes: Fakes,
    database_url: str,
    redis_url: str,
) -> None:
    c = await circle(http, pool)
    spaces = await carer_spaces(pool, c)
    slow = CareSettings(help_repeat_after_s=1, help_everyone_after_s=3, help_no_response_after_s=4)
    async with care_worker(pool, fakes, database_url, redis_url, slow):
        alert_id = await ask_for_help(http, c)

        async def repeated() -> bool:
            return "Still waiting: Mum asked for help" in titles(fakes.apns, c.carol.token)

        await until(repeated)
        # Mum: "all is well now", from her app.
        r = await http.post(f"/v1/care/alerts/{alert_id}/resolve", headers=c.mum.headers)
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["resolved_by"]) == ("resolved", "you")
        resolved_at = time.monotonic()
        assert not await pool.fetchval(
            "SELECT count(*) FROM jobs WHERE kind = $1 AND space_id = $2 AND state = 'queued'",
            Kind.HELP_LADDER,
            c.space_id,
        )
        # Past the moment the next two rungs were due: nothing more went out.
        await asyncio.sleep(max(0.0, 4.5 - (time.monotonic() - resolved_at)))
        await until(lambda: no_jobs_running(pool, spaces))
    for carer in (c.carol, c.dan):
        assert titles(fakes.apns, carer.token) == [
            "Mum asked for help",
            "Still waiting: Mum asked for help",
            "Mum is OK now",
        ]
    assert fakes.apns.notifications(c.phone) == []  # no "nobody has answered" for Mum
    row = await pool.fetchrow(
        "SELECT ladder_step, no_response_at FROM care_alerts WHERE space_id = $1 AND id = $2",
        c.space_id,
        alert_id,
    )
    assert row is not None
    assert (row["ladder_step"], row["no_response_at"]) == (1, None)
    section = await summary_alerts(http, c.carol)
    assert section["open"] == []
    [done] = section["resolved"]
    assert (done["resolved_by"], done["status"]) == ("person", "resolved")
    assert (await alert_record(http, c.mum))["message"].startswith("You said all is well at")
    # Too late to acknowledge now (the app says it is resolved); resolving again is a no-op.
    r = await http.post(
        f"/v1/care/people/{c.carol.link_id}/alerts/{alert_id}/acknowledge",
        headers=c.carol.account.headers,
    )
    expect_problem(r, 409, "alert_resolved")
    r = await http.post(f"/v1/care/alerts/{alert_id}/resolve", headers=c.mum.headers)
    assert r.status_code == 200
    audit = (await http.get("/v1/care/audit", headers=c.mum.headers)).json()["views"]
    [resolution] = [v for v in audit if v["action"] == "resolved"]
    assert (resolution["link_id"], resolution["alert_id"]) == (None, alert_id)


async def test_a_caregiver_resolves_and_consent_is_respected(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool[Any],
    fakes: Fakes,
    database_url: str,
    redis_url: str,
) -> None:
    c = await circle(http, pool)
    spaces = await carer_spaces(pool, c)
    async with care_worker(pool, fakes, database_url, redis_url):
        alert_id = await ask_for_help(http, c)
        await until(lambda: _has(fakes, c.carol.token, c.dan.token))
        # Dan without the alerts scope may neither see nor act on it.
        r = await http.put(
            f"/v1/care/caregivers/{c.dan.link_id}/scopes",
            headers=c.mum.headers,
            json={"scopes": ["check_ins"]},
        )
        assert r.status_code == 200
        ack = f"/v1/care/people/{c.dan.link_id}/alerts/{alert_id}/acknowledge"
        r = await http.post(ack, headers=c.dan.account.headers)
        expect_problem(r, 403, "alerts_not_shared")
        # Paused: nothing at all.
        await http.put(
            f"/v1/care/caregivers/{c.dan.link_id}/scopes",
            headers=c.mum.headers,
            json={"scopes": ["alerts"]},
        )
        await http.post(f"/v1/care/caregivers/{c.dan.link_id}/pause", headers=c.mum.headers)
        expect_problem(await http.post(ack, headers=c.dan.account.headers), 404, "not_found")
        # Someone else's link id, or an alert that is not there.
        stranger = await register(http)
        r = await http.post(
            f"/v1/care/people/{c.carol.link_id}/alerts/{alert_id}/acknowledge",
            headers=stranger.headers,
        )
        expect_problem(r, 404, "not_found")
        r = await http.post(
            f"/v1/care/people/{c.carol.link_id}/alerts/help:k-000000000000/acknowledge",
            headers=c.carol.account.headers,
        )
        expect_problem(r, 404, "alert_not_found")
        r = await http.post(
            f"/v1/care/people/{c.carol.link_id}/alerts/nonsense/acknowledge",
            headers=c.carol.account.headers,
        )
        problem = expect_problem(r, 422, "invalid_field")
        assert [e["field"] for e in problem["errors"]] == ["alert_id"]
        # Carol resolves it: Mum's phone and record say so.
        r = await http.post(
            f"/v1/care/people/{c.carol.link_id}/alerts/{alert_id}/resolve",
            headers=c.carol.account.headers,
            json={"via": "app"},
        )
        assert r.status_code == 200, r.text
        assert (r.json()["resolved_by"], r.json()["resolved_by_name"]) == ("caregiver", "Carol")
        await until(lambda: no_jobs_running(pool, spaces))
    mine = await alert_record(http, c.mum)
    assert (mine["status"], mine["resolved_by"]) == ("resolved", "Carol")
    assert mine["message"].startswith("Carol marked it resolved at")
    r = await http.get("/v1/care/alerts", headers=c.mum.headers)
    [listed] = r.json()["alerts"]
    assert listed["alert_id"] == alert_id
    assert listed["status"] == "resolved"


# -- a worker killed mid-ladder ---------------------------------------------------------------


def start_worker(env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    OUTPUT.mkdir(exist_ok=True)
    log = (OUTPUT / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", "worker"], env=env, stdout=log, stderr=log
    )


# A short lease so the killed worker's rung comes back soon. On Citus (KITH_TEST_CITUS=1)
# 10 s: three PostgreSQL servers share this machine's cores with the test, a heartbeat can
# come later than 3 s, and a live send would run again (tests/integration/test_push_faults.py
# says more).
LEASE_S = "10" if CITUS else "3"


async def test_a_worker_killed_mid_ladder_resumes_without_sending_a_rung_twice(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool[Any],
    push_keys: PushKeys,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    apns = fake_apns(push_keys, tmp_path)  # real time: `kith worker` mints on the wall clock
    await apns.start()
    fakes = Fakes(apns, apns, SimClock(dt.datetime.now(dt.UTC)), push_keys)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KITH_")},
        **fakes.env(database_url),
        "REDIS_URL": redis_url,
        "KITH_WORKER_LEASE_S": LEASE_S,
        # Rungs 9 s apart after the first: the kill lands between the first and the second
        # even when a loaded machine (or Citus) takes seconds to run a job.
        "KITH_HELP_REPEAT_AFTER_S": "3",
        "KITH_HELP_EVERYONE_AFTER_S": "12",
        "KITH_HELP_NO_RESPONSE_AFTER_S": "16",
    }
    c = await circle(http, pool)
    spaces = await carer_spaces(pool, c)
    first = start_worker(env, "ladder-worker-killed")
    second: subprocess.Popen[bytes] | None = None
    try:
        # The rungs are timed from the alert: raised while the worker still works off the
        # earlier tests' backlog, its first rung ran 10 s late, 2 s before the second.
        await until(lambda: queue_idle(pool), within_s=90)
        alert_id = await ask_for_help(http, c)

        async def repeated() -> bool:
            assert first.poll() is None, "the worker died on its own"
            return "Still waiting: Mum asked for help" in titles(apns, c.carol.token)

        await until(repeated, within_s=30)
        await until(lambda: no_jobs_running(pool, spaces))
        first.send_signal(signal.SIGKILL)  # no goodbye: its lease and state stay behind
        first.wait()
        step = await pool.fetchval(
            "SELECT ladder_step FROM care_alerts WHERE space_id = $1 AND id = $2",
            c.space_id,
            alert_id,
        )
        assert step == 1  # killed mid-ladder: one rung climbed, two to go
        second = start_worker(env, "ladder-worker-after-kill")

        async def ended() -> bool:
            assert second is not None
            assert second.poll() is None, "the second worker died"
            return bool(
                await pool.fetchval(
                    "SELECT no_response_at IS NOT NULL FROM care_alerts "
                    "WHERE space_id = $1 AND id = $2",
                    c.space_id,
                    alert_id,
                )
            )

        await until(ended, within_s=40)
        await until(lambda: _has_titles(apns, c.phone), within_s=20)
        await until(lambda: no_jobs_running(pool, spaces))
        second.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(second.wait, 30) == 0
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        await apns.stop()
    for carer in (c.carol, c.dan):
        assert titles(apns, carer.token) == [
            "Mum asked for help",
            "Still waiting: Mum asked for help",
            "Nobody has answered Mum yet",
        ]
    assert titles(apns, c.phone) == ["Nobody has answered yet"]


async def _has_titles(apns: Any, token: str) -> bool:
    return bool(apns.notifications(token))

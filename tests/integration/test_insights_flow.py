"""The rules engine end to end: push interactions, the worker evaluates, the insight
arrives on the device's next pull — and goes away once the friends meet."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from service.insights import jobs as evaluation
from service.insights.service import InsightEvaluator
from service.jobs import Job
from service.worker.runner import Worker, WorkerConfig
from sync.hlc import Clock
from tests.helpers import Account, new_id, pull_all, push, register, stamp


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def run_worker_for(pool: asyncpg.Pool[Any], space_id: str) -> None:
    """Run a worker until this person's queued evaluation has been done."""
    evaluator = InsightEvaluator(pool, Clock("wrk-test"))
    worker = Worker(
        pool,
        evaluation.make_handlers(pool, evaluator, morning_hour=7, chunk=50),
        WorkerConfig(poll_interval_s=0.05),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        async with asyncio.timeout(15):
            while await pool.fetchval(
                "SELECT count(*) FROM jobs WHERE space_id = $1 AND kind = 'evaluate'", space_id
            ):
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task


def meeting(
    account: Account, contact_id: str, days_ago: int, kind: str = "in_person"
) -> dict[str, Any]:
    """An interaction ``days_ago`` local calendar days ago in Lisbon (at noon, if past)."""
    zone = ZoneInfo("Europe/Lisbon")
    now = dt.datetime.now(zone)
    day = now.date() - dt.timedelta(days=days_ago)
    # Noon, or just now for today (a meeting logged for later today is in the future).
    at = min(dt.datetime.combine(day, dt.time(12), zone), now - dt.timedelta(minutes=1))
    return {
        "table": "interactions",
        "id": new_id("i"),
        "hlc": stamp(account.device_id),
        "fields": {"contact_ids": [contact_id], "kind": kind, "occurred_at": at.isoformat()},
    }


async def space_of(pool: asyncpg.Pool[Any], account: Account) -> str:
    return str(await pool.fetchval("SELECT id FROM spaces WHERE owner_id = $1", account.user_id))


async def test_a_fading_weekly_friend_becomes_an_insight_on_the_next_pull(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    ana = await register(http, time_zone="Europe/Lisbon")
    sam = new_id("sam")
    changes = [
        {
            "table": "contacts",
            "id": sam,
            "hlc": stamp(ana.device_id),
            "fields": {"display_name": "Sam", "circle": "close"},
        }
    ]
    changes += [meeting(ana, sam, 48 + 7 * n) for n in range(8)]  # weekly, until 48 days ago
    await push(http, ana, changes)
    space = await space_of(pool, ana)
    queued = await pool.fetch("SELECT kind FROM jobs WHERE space_id = $1", space)
    assert [r["kind"] for r in queued] == ["evaluate"]  # queued with the push, once

    await run_worker_for(pool, space)
    state, cursor = await pull_all(http, ana)
    insights = [c for (t, _), c in state.items() if t == "insights"]
    overdue = [i for i in insights if i["fields"]["rule"] == "overdue"]
    assert len(overdue) == 1
    fields = overdue[0]["fields"]
    assert fields["contact_id"] == sam
    assert fields["status"] == "open"
    # 48 days against a weekly rhythm: past 2.5 gaps + a four-week holiday (decision 0010)
    assert fields["level"] == "slipping"
    assert "Sam" in fields["title"]
    assert "every week" in fields["body"]
    assert "it's been 6 weeks since you met on" in fields["body"]
    assert fields["evidence"]["gap_days"] == 48
    nudges = await pool.fetch(
        "SELECT rule, level, contact_id, state FROM nudge_requests WHERE space_id = $1", space
    )
    assert [tuple(n) for n in nudges] == [("overdue", "slipping", sam, "pending")]

    # They meet today: the next evaluation resolves the insight on every device.
    await push(http, ana, [meeting(ana, sam, 0)])
    await run_worker_for(pool, space)
    state, _ = await pull_all(http, ana, cursor)
    assert state[("insights", overdue[0]["id"])]["fields"]["status"] == "resolved"


async def test_a_burst_of_pushes_queues_one_evaluation(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    ana = await register(http)
    sam = new_id("sam")
    await push(
        http,
        ana,
        [
            {
                "table": "contacts",
                "id": sam,
                "hlc": stamp(ana.device_id),
                "fields": {"display_name": "Sam"},
            }
        ],
    )
    for n in range(5):
        await push(http, ana, [meeting(ana, sam, n + 1, kind="call")])
    space = await space_of(pool, ana)
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM jobs WHERE space_id = $1 AND kind = 'evaluate'", space
        )
        == 1
    )
    await run_worker_for(pool, space)


async def test_the_morning_sweep_reaches_each_person_once_in_their_own_morning(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    people = {}
    for city, zone in (
        ("tokyo", "Asia/Tokyo"),
        ("lima", "America/Lima"),
        ("kolkata", "Asia/Kolkata"),
    ):
        people[await space_of(pool, await register(http, time_zone=zone))] = city
    # 2026-11-21 23:30 UTC is 08:30 on the 22nd in Tokyo, 18:30 on the 21st in Lima and
    # 05:00 on the 22nd in Kolkata. All three were swept on their 21st.
    at = dt.datetime(2026, 11, 21, 23, 30, tzinfo=dt.UTC)
    await pool.execute("UPDATE spaces SET swept_on = '2026-11-21' WHERE id = ANY($1)", list(people))
    await pool.execute("DELETE FROM jobs WHERE kind IN ('sweep', 'evaluate_batch')")
    handlers = evaluation.make_handlers(
        pool, InsightEvaluator(pool, Clock("wrk-test")), morning_hour=7, chunk=50, now=lambda: at
    )

    async def swept() -> set[str]:
        await handlers["sweep"](Job(0, "sweep", None, {}, 1))
        rows = await pool.fetch("SELECT payload FROM jobs WHERE kind = 'evaluate_batch'")
        await pool.execute("DELETE FROM jobs WHERE kind IN ('sweep', 'evaluate_batch')")
        ids = {s for r in rows for s in json.loads(r["payload"])["space_ids"]}
        return {people[s] for s in ids if s in people}

    # Tokyo's morning has come; Lima's day was already swept; Kolkata is still asleep.
    assert await swept() == {"tokyo"}
    assert await swept() == set()  # the same morning never queues anyone twice


async def test_a_silence_the_person_was_told_about_is_not_pushed_again(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    # Told about Sam once; then the overdue rule switched off (the insight is withdrawn)
    # and on again the same week: the insight is back on every device, the push is not.
    ana = await register(http, time_zone="Europe/Lisbon")
    sam = new_id("sam")
    contact = {
        "table": "contacts",
        "id": sam,
        "hlc": stamp(ana.device_id),
        "fields": {"display_name": "Sam", "circle": "close"},
    }
    await push(http, ana, [contact, *(meeting(ana, sam, 48 + 7 * n) for n in range(8))])
    space = await space_of(pool, ana)
    await run_worker_for(pool, space)

    async def rules_off(*rules: str) -> None:
        change = {"rules_disabled": list(rules), "time_zone": "Europe/Lisbon"}
        settings = {"table": "settings", "id": "settings", "hlc": stamp(ana.device_id)}
        await push(http, ana, [settings | {"fields": change}])
        await run_worker_for(pool, space)

    async def overdue() -> list[str]:
        """The statuses of the overdue insights on the device."""
        state, _ = await pull_all(http, ana)
        return sorted(
            str(c["fields"]["status"])
            for (t, _), c in state.items()
            if t == "insights" and c["fields"]["rule"] == "overdue"
        )

    await rules_off("overdue")
    assert await overdue() == ["resolved"]
    await rules_off()
    assert await overdue() == ["open", "resolved"]
    nudges = await pool.fetch(
        "SELECT rule, contact_id FROM nudge_requests WHERE space_id = $1", space
    )
    assert [tuple(n) for n in nudges] == [("overdue", sam)]

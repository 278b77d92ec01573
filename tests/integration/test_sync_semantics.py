"""Sync protocol v1 semantics over the real API: what a phone developer relies on."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import asyncpg
import httpx
import msgspec
import redis.asyncio as aioredis

from service.store import sync as store
from sync.merge import RecordState
from tests.helpers import Account, login, new_id, pull_all, push, register, stamp


def contact(account: Account, cid: str, name: str = "Sam", **fields: Any) -> dict[str, Any]:
    return {
        "table": "contacts",
        "id": cid,
        "hlc": stamp(account.device_id),
        "fields": {"display_name": name, **fields},
    }


def interaction(
    account: Account, iid: str, *contact_ids: str, kind: str = "in_person"
) -> dict[str, Any]:
    return {
        "table": "interactions",
        "id": iid,
        "hlc": stamp(account.device_id),
        "fields": {
            "contact_ids": list(contact_ids),
            "kind": kind,
            "occurred_at": "2026-11-20T18:30:00+01:00",
        },
    }


def delete(account: Account, table: str, rid: str) -> dict[str, Any]:
    return {"table": table, "id": rid, "hlc": stamp(account.device_id), "deleted": True}


async def space_id_of(db: asyncpg.Connection, account: Account) -> str:
    return str(await db.fetchval("SELECT id FROM spaces WHERE owner_id = $1", account.user_id))


async def test_deleting_a_contact_tombstones_interactions_that_were_only_theirs(
    http: httpx.AsyncClient,
) -> None:
    ana = await register(http)
    sam, kim = new_id("sam"), new_id("kim")
    coffee, dinner = new_id("coffee"), new_id("dinner")
    await push(
        http,
        ana,
        [
            contact(ana, sam),
            contact(ana, kim, "Kim"),
            interaction(ana, coffee, sam),
            interaction(ana, dinner, sam, kim),
        ],
    )
    await push(http, ana, [delete(ana, "contacts", sam)])

    state, _ = await pull_all(http, ana)
    assert state[("contacts", sam)]["deleted"] is True
    assert state[("interactions", coffee)]["deleted"] is True  # only Sam's: gone everywhere
    assert state[("interactions", dinner)]["deleted"] is False  # Kim was there too: kept

    # A device that was offline logs an interaction with Sam after the delete: accepted,
    # and tombstoned the same way so every device converges.
    late = new_id("late")
    result = await push(http, ana, [interaction(ana, late, sam)])
    assert result["accepted"] == 1
    state, _ = await pull_all(http, ana)
    assert state[("interactions", late)]["deleted"] is True


async def test_a_cursor_older_than_a_purged_tombstone_gets_a_reset(
    http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    ana = await register(http)
    keep, gone = new_id("keep"), new_id("gone")
    await push(http, ana, [contact(ana, keep), contact(ana, gone)])
    _, old_cursor = await pull_all(http, ana)
    await push(http, ana, [delete(ana, "contacts", gone)])
    _, new_cursor = await pull_all(http, ana)

    # The horizon passes (purge everything deleted before "tomorrow" in this space only).
    space = await space_id_of(db, ana)
    await db.execute(
        "UPDATE contacts SET updated_at = now() - interval '200 days' "
        "WHERE space_id = $1 AND deleted",
        space,
    )
    await store.purge_tombstones(db, dt.datetime.now(dt.UTC) - dt.timedelta(days=180))

    r = await http.post(
        "/v1/sync/pull", headers=ana.headers, json={"schema_version": 1, "cursor": old_cursor}
    )
    body = r.json()
    assert body["reset"] is True  # never silently keep a row deleted elsewhere
    ids = {c["id"] for c in body["changes"]}
    assert keep in ids
    assert gone not in ids

    r = await http.post(
        "/v1/sync/pull", headers=ana.headers, json={"schema_version": 1, "cursor": new_cursor}
    )
    assert r.json()["reset"] is False


async def test_a_losing_edit_is_recoverable_from_the_conflict_history(
    http: httpx.AsyncClient,
) -> None:
    phone = await register(http)
    tablet = await login(http, phone.email, new_id("tablet"))
    sam = new_id("sam")
    await push(http, phone, [contact(phone, sam, notes="first")])
    # Tablet edited offline earlier (older stamp); phone's later edit already arrived.
    await push(
        http,
        phone,
        [
            {
                "table": "contacts",
                "id": sam,
                "hlc": stamp(phone.device_id),
                "fields": {"notes": "phone wins"},
            }
        ],
    )
    result = await push(
        http,
        tablet,
        [
            {
                "table": "contacts",
                "id": sam,
                "hlc": stamp(tablet.device_id, offset_ms=-60_000),
                "fields": {"notes": "tablet's older note"},
            }
        ],
    )
    assert result["superseded"] == [
        {"table": "contacts", "id": sam, "field": "notes", "reason": "older"}
    ]

    r = await http.get("/v1/sync/conflicts", headers=phone.headers, params={"id": sam})
    assert r.status_code == 200
    values = {(c["field"], str(c["value"]), c["reason"]) for c in r.json()["conflicts"]}
    assert ("notes", "tablet's older note", "older") in values
    assert ("notes", "first", "overwritten") not in values  # same device: ordinary editing
    state, _ = await pull_all(http, tablet)
    assert state[("contacts", sam)]["fields"]["notes"] == "phone wins"


async def test_pages_are_bounded_ordered_and_complete(http: httpx.AsyncClient) -> None:
    ana = await register(http)
    ids = [new_id("c") for _ in range(25)]
    await push(http, ana, [contact(ana, i, f"P{n}") for n, i in enumerate(ids)])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        r = await http.post(
            "/v1/sync/pull",
            headers=ana.headers,
            json={"schema_version": 1, "cursor": cursor, "limit": 10},
        )
        body = r.json()
        assert len(body["changes"]) <= 10
        seen += [c["id"] for c in body["changes"] if c["table"] == "contacts"]
        cursor, pages = body["cursor"], pages + 1
        if not body["has_more"]:
            break
    assert seen == ids  # push order = sequence order
    assert pages == 3  # 26 rows with settings: 10 + 10 + 6


async def test_a_push_that_changes_nothing_does_not_move_the_sequence(
    http: httpx.AsyncClient,
) -> None:
    ana = await register(http)
    sam = new_id("sam")
    first = await push(http, ana, [contact(ana, sam, notes="new")])
    stale = await push(
        http,
        ana,
        [
            {
                "table": "contacts",
                "id": sam,
                "hlc": stamp(ana.device_id, offset_ms=-5_000),
                "fields": {"notes": "stale"},
            }
        ],
    )
    assert stale["seq"] == first["seq"]
    assert stale["superseded"][0]["field"] == "notes"


async def test_creating_a_record_without_its_required_fields_is_refused(
    http: httpx.AsyncClient,
) -> None:
    ana = await register(http)
    r = await http.post(
        "/v1/sync/push",
        headers=ana.headers,
        json={
            "device_id": ana.device_id,
            "batch_id": new_id("batch"),
            "schema_version": 1,
            "changes": [
                contact(ana, new_id("ok")),
                {
                    "table": "interactions",
                    "id": new_id("i"),
                    "hlc": stamp(ana.device_id),
                    "fields": {"kind": "call"},
                },
            ],
        },
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "changes[1].fields.contact_ids"
    state, _ = await pull_all(http, ana)
    assert [k for k in state if k[0] == "contacts"] == []  # nothing of the batch applied


async def test_server_written_tables_are_read_only_except_insight_status(
    http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    ana = await register(http)
    space = await space_id_of(db, ana)
    insight_id = new_id("insight")
    async with db.transaction():  # the rules engine's write, as the server makes it
        pos = await store.lock_space(db, space)
        await store.write_records(
            db,
            space,
            "insights",
            [
                store.RecordWrite(
                    insight_id,
                    RecordState(
                        {"rule": "overdue", "title": "It's been a while", "status": "open"},
                        {"rule": "1700000000000-0000-srv-test"},
                    ),
                    pos.seq + 1,
                )
            ],
        )
        await store.advance_seq(db, space, pos.seq + 1)

    ok = await push(
        http,
        ana,
        [
            {
                "table": "insights",
                "id": insight_id,
                "hlc": stamp(ana.device_id),
                "fields": {"status": "dismissed"},
            }
        ],
    )
    assert ok["accepted"] == 1
    state, _ = await pull_all(http, ana)
    assert state[("insights", insight_id)]["fields"]["status"] == "dismissed"
    assert state[("insights", insight_id)]["fields"]["title"] == "It's been a while"

    cases: list[tuple[dict[str, Any], int, str]] = [
        (
            {"table": "insights", "id": insight_id, "fields": {"title": "forged"}},
            422,
            "changes[0].fields.title",
        ),
        (
            {"table": "insights", "id": new_id("nope"), "fields": {"status": "seen"}},
            422,
            "changes[0].id",
        ),
        ({"table": "insights", "id": insight_id, "deleted": True}, 422, "changes[0].deleted"),
        ({"table": "care_summaries", "id": new_id("cs"), "fields": {}}, 403, "changes[0].table"),
        (
            {"table": "settings", "id": "not-settings", "fields": {"nudges_enabled": False}},
            422,
            "changes[0].id",
        ),
        (
            {"table": "settings", "id": "settings", "fields": {"time_zone": "Mars/Olympus"}},
            422,
            "changes[0].fields.time_zone",
        ),
    ]
    for change, status, field in cases:
        r = await http.post(
            "/v1/sync/push",
            headers=ana.headers,
            json={
                "device_id": ana.device_id,
                "batch_id": new_id("batch"),
                "schema_version": 1,
                "changes": [{"hlc": stamp(ana.device_id), **change}],
            },
        )
        assert r.status_code == status, (change, r.text)
        assert r.json()["errors"][0]["field"] == field


async def test_a_deleted_reflection_keeps_no_text_on_the_server(
    http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    ana = await register(http)
    rid = new_id("refl")
    await push(
        http,
        ana,
        [
            {
                "table": "reflections",
                "id": rid,
                "hlc": stamp(ana.device_id),
                "fields": {
                    "occurred_at": "2026-11-21T08:00:00Z",
                    "body": "felt low after the call",
                    "mood": 2,
                },
            }
        ],
    )
    await push(http, ana, [delete(ana, "reflections", rid)])
    stored = await db.fetchval("SELECT fields::text FROM reflections WHERE id = $1", rid)
    assert "felt low" not in stored
    state, _ = await pull_all(http, ana)
    assert state[("reflections", rid)] | {"hlc": ""} == {
        "table": "reflections",
        "id": rid,
        "fields": {},
        "deleted": True,
        "hlc": "",
    }


async def test_every_commit_pokes_the_space_on_redis(
    http: httpx.AsyncClient, redis_url: str
) -> None:
    ana = await register(http)
    client = aioredis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe("kith:changes")
    try:
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        result = await push(http, ana, [contact(ana, new_id("sam"))])
        pokes: list[dict[str, Any]] = []
        async with asyncio.timeout(5):
            while not any(p["seq"] == result["seq"] for p in pokes):
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message:
                    pokes.append(msgspec.json.decode(message["data"]))
        # Only the space and a number: no user data on the bus.
        assert set(pokes[-1]) == {"space", "seq"}
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
        await client.aclose()


async def test_clamped_stamps_keep_the_devices_own_order(http: httpx.AsyncClient) -> None:
    """A fast-clocked phone lists its newer edit first: after clamping, the newer still wins."""
    ana = await register(http)
    cid = new_id("contact")
    await push(http, ana, [contact(ana, cid)])
    year = 365 * 24 * 3600 * 1000
    older = stamp(ana.device_id, offset_ms=year)
    newer = stamp(ana.device_id, offset_ms=year + 1000)
    result = await push(
        http,
        ana,
        [
            {"table": "contacts", "id": cid, "hlc": newer, "fields": {"notes": "newer"}},
            {"table": "contacts", "id": cid, "hlc": older, "fields": {"notes": "older"}},
        ],
    )
    assert result["clock_skew_ms"] > year - 60_000
    state, _ = await pull_all(http, ana)
    assert state[("contacts", cid)]["fields"]["notes"] == "newer"
    assert state[("contacts", cid)]["hlc"] < stamp(ana.device_id, offset_ms=60_000)  # clamped


async def test_a_batch_id_reused_for_different_changes_is_refused(http: httpx.AsyncClient) -> None:
    ana = await register(http)
    batch = new_id("batch")
    first = [contact(ana, new_id("sam"))]
    applied = await push(http, ana, first, batch_id=batch)
    assert await push(http, ana, first, batch_id=batch) == applied  # a true retry
    r = await http.post(
        "/v1/sync/push",
        headers=ana.headers,
        json={
            "device_id": ana.device_id,
            "batch_id": batch,
            "schema_version": 1,
            "changes": [contact(ana, new_id("kim"), "Kim")],
        },
    )
    assert r.status_code == 409
    assert r.json()["code"] == "batch_id_reused"
    state, _ = await pull_all(http, ana)
    assert not any(c["fields"].get("display_name") == "Kim" for c in state.values())

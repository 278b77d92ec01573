"""The WatermelonDB adapter over the real HTTP API: the pull's shape and mapping, the push's
field-level writes, its retries, its splitting and its refusals (nothing written)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from tests.helpers import Account, expect_problem, login, new_id, push, register

PULL = "/v1/watermelon/pull"
PUSH = "/v1/watermelon/push"


def wm_id() -> str:
    return new_id("wm").replace("-", "")[:16]


async def wm_pull(
    http: httpx.AsyncClient, who: Account, last: int | None = None, **params: str
) -> dict[str, Any]:
    r = await http.get(
        PULL,
        headers=who.headers,
        params={"last_pulled_at": "null" if last is None else str(last), **params},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    return body


async def wm_push(
    http: httpx.AsyncClient, who: Account, changes: dict[str, Any], *, expect: int = 200
) -> httpx.Response:
    r = await http.post(PUSH, headers=who.headers, json={"changes": changes, "lastPulledAt": 1})
    assert r.status_code == expect, r.text
    return r


def section(
    created: list[Any] | None = None,
    updated: list[Any] | None = None,
    deleted: list[str] | None = None,
) -> dict[str, Any]:
    return {"created": created or [], "updated": updated or [], "deleted": deleted or []}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def contact_row(rid: str, ms: int, **columns: Any) -> dict[str, Any]:
    """A raw contacts row as WatermelonDB sends a created record (every column)."""
    row = {
        "id": rid,
        "_status": "created",
        "_changed": "",
        "display_name": "Ana",
        "relationship": None,
        "circle": None,
        "cadence_days": None,
        "preferred_kind": None,
        "notes": "",
        "birthday": None,
        "snoozed_until": None,
        "archived": False,
        "tags": "[]",
        "updated_at": ms,
        "created_at": ms,
    }
    row.update(columns)
    return row


async def test_first_pull_folds_everything_into_one_watermelon_answer(
    http: httpx.AsyncClient,
) -> None:
    who = await register(http)
    empty = await wm_pull(http, who)
    base = empty["timestamp"]
    assert base >= 1  # > 0 however new the space (WatermelonDB requires it)
    assert [r["id"] for r in empty["changes"]["settings"]["updated"]] == ["settings"]
    assert set(empty["changes"]) == {
        "contacts",
        "interactions",
        "reflections",
        "check_ins",
        "settings",
        "insights",
        "care_summaries",
        "alerts",
    }
    stamp = f"{now_ms():013d}-0000-{who.device_id}"
    contacts = [
        {
            "table": "contacts",
            "id": f"c{n:04d}abcdefgh",
            "hlc": stamp,
            "fields": {"display_name": f"Friend {n}", "tags": ["climbing", 'say "hi"', "ção"]},
        }
        for n in range(1200)  # more than one page of the store (1,000)
    ]
    await push(http, who, contacts[:1000])
    await push(http, who, contacts[1000:])
    await push(
        http,
        who,
        [
            {
                "table": "interactions",
                "id": "i0001abcdefgh",
                "hlc": stamp,
                "fields": {
                    "contact_ids": ["c0000abcdefgh", "c0001abcdefgh"],
                    "kind": "in_person",
                    "occurred_at": "2026-11-01T10:00:00.250+02:00",
                },
            },
            {"table": "contacts", "id": "c0002abcdefgh", "hlc": stamp, "deleted": True},
        ],
    )
    body = await wm_pull(http, who)
    assert body["timestamp"] == base + 1202  # the space's seq + 1: 1,202 records written
    changes = body["changes"]
    assert changes["contacts"]["created"] == []
    assert changes["contacts"]["deleted"] == []  # a first sync needs no tombstones
    rows = {r["id"]: r for r in changes["contacts"]["updated"]}
    assert len(rows) == 1199
    assert "c0002abcdefgh" not in rows
    first = rows["c0000abcdefgh"]
    assert "_status" not in first
    assert "_changed" not in first
    assert first["display_name"] == "Friend 0"
    assert json.loads(first["tags"]) == ["climbing", 'say "hi"', "ção"]  # a @json column
    assert first["circle"] == "social"  # the server's default
    assert first["cadence_days"] is None
    assert first["updated_at"] == int(stamp[:13])
    (interaction,) = changes["interactions"]["updated"]
    assert json.loads(interaction["contact_ids"]) == ["c0000abcdefgh", "c0001abcdefgh"]
    assert interaction["occurred_at"] == 1793520000250  # 08:00:00.250Z in milliseconds

    # Incremental: only what changed after the timestamp; tombstones as ids.
    await push(
        http,
        who,
        [{"table": "contacts", "id": "c0003abcdefgh", "hlc": stamp, "deleted": True}],
    )
    later = await wm_pull(http, who, body["timestamp"])
    assert later["changes"]["contacts"] == section(deleted=["c0003abcdefgh"])
    assert later["timestamp"] == body["timestamp"] + 1
    assert (await wm_pull(http, who, later["timestamp"]))["changes"]["contacts"] == section()


async def test_the_pull_leaves_out_what_the_app_does_not_declare(http: httpx.AsyncClient) -> None:
    who = await register(http)
    ms = now_ms()
    await wm_push(http, who, {"contacts": section([contact_row("cdeclared0001", ms)])})
    body = await wm_pull(
        http,
        who,
        tables="contacts,drafts",
        columns="contacts.display_name,contacts.updated_at,drafts.body",
    )
    assert set(body["changes"]) == {"contacts"}
    assert body["changes"]["contacts"]["updated"] == [
        {"id": "cdeclared0001", "display_name": "Ana", "updated_at": ms}
    ]
    r = await http.get(PULL, headers=who.headers, params={"last_pulled_at": "yesterday"})
    assert expect_problem(r, 400)["errors"][0]["field"] == "last_pulled_at"
    r = await http.get(PULL, params={"last_pulled_at": "null"})
    expect_problem(r, 401)


async def test_an_update_writes_only_its_changed_columns(http: httpx.AsyncClient) -> None:
    """Sending the whole row would overwrite what another device wrote meanwhile."""
    phone = await register(http)
    tablet = await login(http, phone.email, new_id("dev"))
    t0 = now_ms() - 60_000
    await wm_push(http, phone, {"contacts": section([contact_row("cmerge000001", t0)])})
    # The tablet edits the notes at t0 + 10 s.
    notes = contact_row("cmerge000001", t0 + 10_000, notes="likes tea", _status="updated")
    notes["_changed"] = "notes,updated_at"
    await wm_push(http, tablet, {"contacts": section(updated=[notes])})
    # The phone, which never saw the notes, renames at t0 + 20 s: its row has notes "".
    rename = contact_row("cmerge000001", t0 + 20_000, display_name="Ana Maria", notes="")
    rename.update(_status="updated", _changed="display_name,updated_at")
    r = await wm_push(http, phone, {"contacts": section(updated=[rename])})
    assert r.json()["superseded"] == []
    (row,) = (await wm_pull(http, phone))["changes"]["contacts"]["updated"]
    assert (row["display_name"], row["notes"], row["updated_at"]) == (
        "Ana Maria",
        "likes tea",
        t0 + 20_000,
    )


async def test_a_losing_value_comes_back_to_the_device_that_pushed_it(
    http: httpx.AsyncClient,
) -> None:
    phone = await register(http)
    tablet = await login(http, phone.email, new_id("dev"))
    t0 = now_ms() - 60_000
    await wm_push(http, phone, {"contacts": section([contact_row("closer000001", t0)])})
    synced = await wm_pull(http, phone)
    newer = contact_row("closer000001", t0 + 20_000, display_name="Ana (tablet)")
    newer.update(_status="updated", _changed="display_name")
    await wm_push(http, tablet, {"contacts": section(updated=[newer])})
    # The phone edited the same column offline earlier (t0 + 10 s) and pushes it now.
    older = contact_row("closer000001", t0 + 10_000, display_name="Ana (phone)")
    older.update(_status="updated", _changed="display_name")
    before = (await wm_pull(http, phone, synced["timestamp"]))["timestamp"]
    r = await wm_push(http, phone, {"contacts": section(updated=[older])})
    assert r.json()["superseded"] == [
        {"table": "contacts", "id": "closer000001", "column": "display_name", "reason": "older"}
    ]
    # Nothing changed on the server, yet the record is sent again with the winner.
    after = await wm_pull(http, phone, before)
    (row,) = after["changes"]["contacts"]["updated"]
    assert row["display_name"] == "Ana (tablet)"
    assert after["timestamp"] == before + 1


async def test_a_retried_push_is_applied_once_in_either_body_shape(
    http: httpx.AsyncClient,
) -> None:
    who = await register(http)
    ms = now_ms()
    changes = {
        "contacts": section([contact_row(f"cretry{n:06d}", ms) for n in range(3)]),
        "interactions": section(deleted=["iunknown0001"]),
    }
    first = (await wm_push(http, who, changes)).json()
    seq = (await wm_pull(http, who))["timestamp"]
    # The answer was lost: the app sends the same changes again (here as the bare object).
    r = await http.post(PUSH, headers=who.headers, json=changes)
    assert r.status_code == 200, r.text
    assert r.json()["batch_ids"] == first["batch_ids"]
    assert (await wm_pull(http, who))["timestamp"] == seq  # nothing written twice


async def test_a_large_push_is_split_into_batches_and_all_of_it_lands(
    http: httpx.AsyncClient,
) -> None:
    who = await register(http)
    ms = now_ms()
    rows = [contact_row(f"cbig{n:08d}", ms, display_name=f"P{n}") for n in range(2500)]
    r = await wm_push(http, who, {"contacts": section(rows)})
    assert len(r.json()["batch_ids"]) == 3
    assert r.json()["accepted"] == 2500
    body = await wm_pull(http, who)
    assert len(body["changes"]["contacts"]["updated"]) == 2500


async def test_a_bad_row_is_named_and_nothing_is_written(http: httpx.AsyncClient) -> None:
    who = await register(http)
    start = (await wm_pull(http, who))["timestamp"]
    ms = now_ms()
    good = [contact_row(f"cgood{n:07d}", ms) for n in range(1500)]
    cases: list[tuple[dict[str, Any], int, str]] = [
        (
            contact_row("cbad00000001", ms, cadence_days=0),
            422,
            "contacts.created[cbad00000001].cadence_days",
        ),
        (
            contact_row("cbad00000002", ms, display_name=None),
            422,
            "contacts.created[cbad00000002].display_name",
        ),
        (
            contact_row("cbad00000003", ms, tags="[not json"),
            422,
            "contacts.created[cbad00000003].tags",
        ),
        (
            contact_row("cbad00000004", ms, circle="orbit"),
            422,
            "contacts.created[cbad00000004].circle",
        ),
        (
            contact_row("cbad00000005", ms, updated_at="noon"),
            422,
            "contacts.created[cbad00000005].updated_at",
        ),
        (contact_row("bad id!", ms), 422, "contacts.created[?].id"),
    ]
    for bad, status, path in cases:
        # The bad row sits in the second Kith batch: the first must not be written either.
        r = await http.post(
            PUSH, headers=who.headers, json={"contacts": section([*good[:1200], bad, *good[1200:]])}
        )
        body = expect_problem(r, status)
        assert body["errors"][0]["field"] == path, body
    interaction = {
        "id": "ibad00000001",
        "_status": "created",
        "_changed": "",
        "contact_ids": '["cgood0000001"]',
        "kind": "in_person",
        "occurred_at": "yesterday",
        "updated_at": ms,
    }
    r = await http.post(PUSH, headers=who.headers, json={"interactions": section([interaction])})
    assert (
        expect_problem(r, 422)["errors"][0]["field"]
        == "interactions.created[ibad00000001].occurred_at"
    )
    r = await http.post(
        PUSH, headers=who.headers, json={"care_summaries": section(deleted=["csum00000001"])}
    )
    expect_problem(r, 403, "read_only_table")
    insight = {"id": "insight00001", "_status": "created", "_changed": "", "status": "seen"}
    r = await http.post(PUSH, headers=who.headers, json={"insights": section([insight])})
    assert expect_problem(r, 422)["errors"][0]["field"] == "insights.created[insight00001].id"
    r = await http.post(PUSH, headers=who.headers, content=b"[1, 2]")
    expect_problem(r, 400)
    body = await wm_pull(http, who)
    assert body["timestamp"] == start  # not one row of any of those pushes was written
    assert all(not t["updated"] for n, t in body["changes"].items() if n != "settings")


async def test_local_only_tables_and_columns_are_ignored_and_reported(
    http: httpx.AsyncClient,
) -> None:
    who = await register(http)
    row = contact_row("clocal000001", now_ms(), is_expanded=True)
    r = await http.post(
        PUSH,
        headers=who.headers,
        json={"contacts": section([row]), "drafts": section([{"id": "draft0000001"}])},
    )
    assert r.status_code == 200, r.text
    assert r.json()["ignored"] == ["contacts.is_expanded", "drafts"]
    (pulled,) = (await wm_pull(http, who))["changes"]["contacts"]["updated"]
    assert "is_expanded" not in pulled


async def test_a_cursor_the_server_cannot_continue_replaces_the_local_state(
    http: httpx.AsyncClient,
) -> None:
    who = await register(http)
    await wm_push(http, who, {"contacts": section([contact_row("creset000001", now_ms())])})
    body = await wm_pull(http, who, 10_000)  # from the future (a restored backup, say)
    assert body["experimentalStrategy"] == "replacement"
    assert [r["id"] for r in body["changes"]["contacts"]["updated"]] == ["creset000001"]
    assert "experimentalStrategy" not in await wm_pull(http, who, body["timestamp"])


async def test_a_migration_sync_sends_the_migrated_tables_whole(http: httpx.AsyncClient) -> None:
    who = await register(http)
    await wm_push(http, who, {"contacts": section([contact_row("cmigrate0001", now_ms())])})
    synced = (await wm_pull(http, who))["timestamp"]
    plain = await wm_pull(http, who, synced)
    assert plain["changes"]["contacts"]["updated"] == []
    # The app added a column to contacts since its last sync (WatermelonDB's migration).
    migration = {"from": 1, "tables": [], "columns": [{"table": "contacts", "columns": ["notes"]}]}
    body = await wm_pull(http, who, synced, migration=json.dumps(migration))
    assert [r["id"] for r in body["changes"]["contacts"]["updated"]] == ["cmigrate0001"]
    assert body["changes"]["interactions"]["updated"] == []
    r = await http.get(
        PULL, headers=who.headers, params={"last_pulled_at": str(synced), "migration": "{oops"}
    )
    assert expect_problem(r, 400)["errors"][0]["field"] == "migration"


async def test_a_row_is_stamped_with_updated_at_else_created_at_and_the_device(
    http: httpx.AsyncClient,
) -> None:
    who = await register(http)
    ms = now_ms() - 30_000
    by_created = contact_row("cstamp000001", 0, created_at=ms)
    by_created.pop("updated_at")
    unstamped = contact_row("cstamp000002", 0, created_at=None)
    unstamped.pop("updated_at")
    before = now_ms()
    await wm_push(http, who, {"contacts": section([by_created, unstamped])})
    rows = {r["id"]: r for r in (await wm_pull(http, who))["changes"]["contacts"]["updated"]}
    assert rows["cstamp000001"]["updated_at"] == ms
    # The server's clock: its HLC, which may run ahead of the wall clock by as much as a
    # device's stamp is allowed to (the 5-minute skew allowance; other tests push ahead).
    assert before <= rows["cstamp000002"]["updated_at"] <= now_ms() + 5 * 60 * 1000
    # The device is the author of those values in Kith's own view of the record.
    r = await http.post(
        "/v1/sync/pull", headers=who.headers, json={"schema_version": 1, "limit": 1000}
    )
    hlcs = {c["id"]: c["hlc"] for c in r.json()["changes"]}
    assert hlcs["cstamp000001"] == f"{ms:013d}-0000-{who.device_id}"
    assert hlcs["cstamp000002"].endswith(f"-{who.device_id}")

"""Strict wire types (issue 18, item 5): the documented type is the accepted type.

No string read as a number, no number read as a time, RFC 3339 where RFC 3339 is
documented, real IANA zone names only, and a caregiver's synced record that carries
nothing undocumented.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import httpx
import pytest

from tests.helpers import expect_problem, new_id, pull_all, push, register, stamp
from tests.integration.test_care import linked


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"schema_version": 1, "limit": "5"}, "limit"),
        ({"schema_version": "1"}, "schema_version"),
        ({"schema_version": 1, "limit": 5.5}, "limit"),
        ({"schema_version": 1, "cursor": 5}, "cursor"),
    ],
)
async def test_a_pull_body_is_read_as_documented(
    http: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    ana = await register(http)
    r = await http.post("/v1/sync/pull", headers=ana.headers, json=body)
    problem = expect_problem(r, 422, "invalid_field")
    assert [e["field"] for e in problem["errors"]] == [field]
    ok = await http.post(
        "/v1/sync/pull", headers=ana.headers, json={"schema_version": 1, "limit": 5}
    )
    assert ok.status_code == 200


async def test_a_push_body_is_read_as_documented(
    http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    ana = await register(http)
    change = {
        "table": "contacts",
        "id": new_id("c"),
        "hlc": stamp(ana.device_id),
        "fields": {"display_name": "A"},
    }
    for body, field in (
        ({"schema_version": "1", "changes": [change]}, "schema_version"),
        ({"schema_version": 1, "changes": [change | {"deleted": "false"}]}, "changes[0].deleted"),
        (
            {"schema_version": 1, "changes": [change | {"fields": {"cadence_days": "7"}}]},
            "changes[0].fields.cadence_days",
        ),
    ):
        r = await http.post(
            "/v1/sync/push",
            headers=ana.headers,
            json={"device_id": ana.device_id, "batch_id": new_id("b")} | body,
        )
        problem = expect_problem(r, 422, "invalid_field")
        assert [e["field"] for e in problem["errors"]] == [field], problem
    space = await db.fetchval("SELECT id FROM spaces WHERE owner_id = $1", ana.user_id)
    assert await db.fetchval("SELECT count(*) FROM contacts WHERE space_id = $1", space) == 0


@pytest.mark.parametrize(
    "query",
    [
        "since=0.5",
        "since=1700000000",
        "since=2026-11-01",
        "since=2026-11-01T00:00:00",  # no offset
        "since=0001-01-01T00:00:00%2B14:00",
        "limit=5.0",
        "limit=1e2",
        "limit=%205",
    ],
)
async def test_query_parameters_are_parsed_as_documented(
    http: httpx.AsyncClient, query: str
) -> None:
    ana = await register(http)
    r = await http.get(f"/v1/sync/conflicts?{query}", headers=ana.headers)
    problem = expect_problem(r, 422, "invalid_field")
    assert [e["field"] for e in problem["errors"]] == [query.split("=", maxsplit=1)[0]]


@pytest.mark.parametrize(
    "query", ["", "since=2026-11-01T00:00:00Z", "since=2026-11-01T00:00:00.5%2B01:00", "limit=5"]
)
async def test_documented_query_parameters_are_accepted(
    http: httpx.AsyncClient, query: str
) -> None:
    ana = await register(http)
    r = await http.get(f"/v1/sync/conflicts?{query}", headers=ana.headers)
    assert r.status_code == 200, r.text


async def test_other_integer_query_parameters_are_strict_too(http: httpx.AsyncClient) -> None:
    ana = await register(http)
    for path in ("/v1/nudges?limit=5.0", "/v1/care/audit?limit=1e1"):
        r = await http.get(path, headers=ana.headers)
        assert expect_problem(r, 422, "invalid_field")["errors"][0]["field"] == "limit"
    for path in ("/v1/nudges?limit=5", "/v1/care/audit?limit=10"):
        assert (await http.get(path, headers=ana.headers)).status_code == 200


@pytest.mark.parametrize("zone", ["localtime", "posixrules", "Factory", "Mars/Olympus_Mons"])
async def test_settings_time_zone_must_be_an_iana_zone_name(
    http: httpx.AsyncClient, zone: str
) -> None:
    ana = await register(http)
    settings = {"table": "settings", "id": "settings", "hlc": stamp(ana.device_id)}
    body = await push(http, ana, [settings | {"fields": {"time_zone": zone}}], expect=422)
    assert [e["field"] for e in body["errors"]] == ["changes[0].fields.time_zone"]
    await push(http, ana, [settings | {"fields": {"time_zone": "America/Argentina/Buenos_Aires"}}])


async def test_the_caregivers_record_carries_no_account_id(
    http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    mum, carer, link_id = await linked(http, ["check_ins"])
    [row] = await _summaries(http, carer)
    assert set(row) == {"display_name", "scopes", "summary", "computed_at"}
    assert mum.user_id not in json.dumps(row)
    # A row written before the field was retired loses it at its next refresh.
    # The clock is set in SQL without a function of a column (which Citus refuses in an
    # UPDATE of a distributed table): jsonb_set with the row's own hlc as JSON.
    carer_space = await db.fetchval("SELECT space_id FROM users WHERE id = $1", carer.user_id)
    await db.execute(
        """
        UPDATE care_summaries
           SET fields = fields || jsonb_build_object('cared_for_user_id', $2::text),
               clocks = jsonb_set(clocks, '{cared_for_user_id}', ('"' || hlc || '"')::jsonb)
        WHERE space_id = $1
        """,
        carer_space,
        mum.user_id,
    )
    r = await http.put(
        f"/v1/care/caregivers/{link_id}/scopes", headers=mum.headers, json={"scopes": ["alerts"]}
    )
    assert r.status_code == 200
    [row] = await _summaries(http, carer)
    assert "cared_for_user_id" not in row
    assert list(row["summary"]) == ["alerts"]


async def _summaries(http: httpx.AsyncClient, who: Any) -> list[dict[str, Any]]:
    records, _ = await pull_all(http, who)
    return [r["fields"] for (table, _), r in records.items() if table == "care_summaries"]


async def test_an_event_time_with_an_offset_no_place_uses_is_refused(
    http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """Found by the API fuzzer: a check-in at +20:00 was accepted, and from then on every
    caregiver-summary refresh of that person failed (PostgreSQL's timestamptz stops at
    ±15:59), so the caregiver's scopes could no longer be changed."""
    ana, carol = await register(http), await register(http)
    r = await http.post("/v1/care/invitations", headers=ana.headers, json={})
    r = await http.post(
        "/v1/care/invitations/accept", headers=carol.headers, json={"code": r.json()["code"]}
    )
    link_id = r.json()["link_id"]
    check_in = {"table": "check_ins", "hlc": stamp(ana.device_id)}
    for offset in ("+20:00", "-23:59", "+14:01", "-12:30"):
        fields = {"occurred_at": f"2026-12-01T09:00:00{offset}", "status": "ok"}
        r = await http.post(
            "/v1/sync/push",
            headers=ana.headers,
            json={
                "device_id": ana.device_id,
                "batch_id": new_id("b"),
                "schema_version": 1,
                "changes": [check_in | {"id": new_id("k"), "fields": fields}],
            },
        )
        problem = expect_problem(r, 422, "invalid_field")
        assert [e["field"] for e in problem["errors"]] == ["changes[0].fields.occurred_at"]
    for offset in ("+14:00", "-12:00", "+05:45"):
        fields = {"occurred_at": f"2026-12-01T09:00:00{offset}", "status": "ok"}
        r = await http.post(
            "/v1/sync/push",
            headers=ana.headers,
            json={
                "device_id": ana.device_id,
                "batch_id": new_id("b"),
                "schema_version": 1,
                "changes": [check_in | {"id": new_id("k"), "fields": fields}],
            },
        )
        assert r.status_code == 200, r.text
    r = await http.put(
        f"/v1/care/caregivers/{link_id}/scopes", headers=ana.headers, json={"scopes": ["alerts"]}
    )
    assert r.status_code == 200, r.text

"""Exporting my data: one JSON document of the documented type with everything Kith holds
about me — every record as sync has it, the conflict history, nudges and what became of
them, insights, caregiver links both ways and who viewed my summary — and nobody else's."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import httpx
import msgspec

from schemas.account import AccountExport
from schemas.tables import TABLES
from tests.fakes.oidc import FakeIdentityProviders
from tests.helpers import expect_problem, pull_all
from tests.integration.test_account_deletion import a_full_life, pool, space_of
from tests.integration.test_care import SECRETS

__all__ = ["pool"]  # the fixture, shared with the deletion tests

_decode = msgspec.json.Decoder(AccountExport).decode


async def export(http: httpx.AsyncClient, headers: dict[str, str]) -> tuple[AccountExport, bytes]:
    async with http.stream("GET", "/v1/account/export", headers=headers) as r:
        assert r.status_code == 200, (await r.aread()).decode()
        assert r.headers["content-type"].startswith("application/json")
        assert "attachment" in r.headers["content-disposition"]
        assert r.headers["cache-control"] == "no-store"
        body = await r.aread()
    return _decode(body), body  # strict: the document is exactly the documented type


async def test_the_export_holds_everything_of_mine(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool[Any],
    live_server: str,
    identity_providers: FakeIdentityProviders,
) -> None:
    mum, tablet, carer, _ = await a_full_life(http, pool, live_server, identity_providers)
    link = (await http.get("/v1/care/caregivers", headers=mum.headers)).json()["caregivers"][0]
    r = await http.get(f"/v1/care/people/{link['link_id']}/summary", headers=carer.headers)
    assert r.status_code == 200  # a view of Mum's summary, audited

    doc, raw = await export(http, mum.headers)
    assert (doc.format, doc.version) == ("kith-export", 1)
    assert (doc.account.user_id, doc.account.email) == (mum.user_id, mum.email)
    assert {d.id for d in doc.devices} == {mum.device_id, tablet.device_id}
    # Apple and Google as linked: provider, subject, email — never a token.
    linked = await pool.fetch(
        "SELECT provider, subject, email FROM identities WHERE user_id = $1 ORDER BY provider",
        mum.user_id,
    )
    assert [(i.provider, i.subject, i.email) for i in doc.identities] == [
        (r["provider"], r["subject"], r["email"]) for r in linked
    ]
    assert [i.provider for i in doc.identities] == ["apple", "google"]

    # Every record exactly as the phones sync it (same ids, same fields, tombstones too).
    synced, _ = await pull_all(http, tablet)
    exported = {
        (table, rec.id): (json.loads(bytes(rec.fields)), rec.deleted, rec.hlc)
        for table, recs in doc.records.items()
        for rec in recs
    }
    assert set(doc.records) == set(TABLES)
    assert exported == {
        key: (c.get("fields") or {}, c["deleted"], c["hlc"]) for key, c in synced.items()
    }
    for secret in SECRETS:  # her own private words are hers to take
        assert secret in raw.decode()
    assert doc.records["insights"], "the rules' insights, with their explanations"

    # The tablet's older edit lost on both fields it sent.
    assert sorted((c.table, c.field, json.loads(bytes(c.value))) for c in doc.conflicts) == [
        ("contacts", "display_name", "Sam"),
        ("contacts", "notes", "older"),
    ]
    assert doc.nudges
    assert all(n.state and n.title and n.rule for n in doc.nudges)
    nudge_ids = await pool.fetch(
        "SELECT id FROM nudge_requests WHERE space_id = $1", await space_of(pool, mum)
    )
    assert {n.id for n in doc.nudges} == {r["id"] for r in nudge_ids}
    assert sorted((x.role, x.label) for x in doc.caregiver_links) == [
        ("i_care_for", "Gran"),
        ("my_caregiver", "Mum"),
    ]
    assert [(v.link_id, v.caregiver_name, v.channel) for v in doc.summary_views] == [
        (link["link_id"], "Test Person", "api")
    ]


async def test_an_export_is_mine_alone(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool[Any],
    live_server: str,
    identity_providers: FakeIdentityProviders,
) -> None:
    mum, _, carer, gran = await a_full_life(http, pool, live_server, identity_providers)
    mums_subjects = [
        r["subject"]
        for r in await pool.fetch("SELECT subject FROM identities WHERE user_id = $1", mum.user_id)
    ]
    expect_problem(await http.get("/v1/account/export"), 401, "unauthenticated")
    for other in (carer, gran):
        doc, raw = await export(http, other.headers)
        assert doc.account.user_id == other.user_id
        text = raw.decode()
        assert mum.email not in text
        assert doc.identities == []
        for subject in mums_subjects:
            assert subject not in text
        for secret in SECRETS:
            assert secret not in text
        # What of Mum a caregiver holds is only the summary she shared into their space.
        assert all(t in {"care_summaries", "settings"} for t in doc.records if doc.records[t])
    # After signing out, the token exports nothing.
    assert (await http.post("/v1/auth/logout", headers=gran.headers)).status_code == 204
    expect_problem(await http.get("/v1/account/export", headers=gran.headers), 401)

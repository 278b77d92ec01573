"""Consent: registration records the privacy terms accepted and the consent to process
wellbeing data; when the operator requires new terms, sync stops with a code the app acts
on (show the terms, accept, sync again), and the person can still export and leave."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx

from service.sync.realtime import RECONNECT_GRACE_S
from sync.client import register as client_register
from tests.conftest import ApiProcess
from tests.helpers import PASSWORD, Account, expect_problem, new_id, push, stamp

V1, V2 = "2026-06-01", "2026-12-01"


async def register(
    http: httpx.AsyncClient, *, expect: int = 201, **consent: Any
) -> tuple[Account, httpx.Response]:
    email, device = f"{new_id('user')}@example.org", new_id("dev")
    r = await http.post(
        "/v1/auth/register",
        json={
            "email": email,
            "password": PASSWORD,
            "display_name": "Ana",
            "time_zone": "Europe/Lisbon",
            "device": {"id": device, "platform": "ios", "name": "phone"},
            **consent,
        },
    )
    assert r.status_code == expect, r.text
    body = r.json() if expect == 201 else {}
    return Account(email, body.get("user_id", ""), device, body.get("access_token", ""), ""), r


async def pull(http: httpx.AsyncClient, who: Account, cursor: str | None = None) -> httpx.Response:
    return await http.post(
        "/v1/sync/pull",
        headers=who.headers,
        json={"schema_version": 1, "cursor": cursor, "limit": 100},
    )


def contact(who: Account) -> list[dict[str, Any]]:
    return [
        {
            "table": "contacts",
            "id": new_id("c"),
            "hlc": stamp(who.device_id),
            "fields": {"display_name": "Sam"},
        }
    ]


async def test_registration_records_the_terms_and_the_wellbeing_consent(
    http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    ana, _ = await register(http, terms_version=V1, wellbeing_consent=True)
    row = await db.fetchrow(
        "SELECT terms_version, terms_accepted_at, wellbeing_consent_at FROM users WHERE id = $1",
        ana.user_id,
    )
    assert row is not None
    assert row["terms_version"] == V1
    assert row["terms_accepted_at"] is not None
    assert row["wellbeing_consent_at"] is not None
    r = await http.get("/v1/account/export", headers=ana.headers)
    consent = r.json()["account"]["consent"]
    assert consent["terms_version"] == V1
    assert consent["wellbeing_consent_at"] is not None
    # Bad values name their field.
    _, r = await register(http, expect=422, terms_version="no spaces please")
    assert expect_problem(r, 422, "invalid_field")["errors"][0]["field"] == "terms_version"
    _, r = await register(http, expect=422, wellbeing_consent="yes")
    assert expect_problem(r, 422, "invalid_field")["errors"][0]["field"] == "wellbeing_consent"


async def test_new_terms_stop_sync_until_the_person_accepts_them(
    api_process: Callable[..., ApiProcess], db: asyncpg.Connection
) -> None:
    old = api_process("consent-v1", KITH_TERMS_VERSION=V1).wait_ready()
    async with httpx.AsyncClient(base_url=old.base, timeout=30) as http:
        _, r = await register(http, expect=422)  # consent is required there
        fields = {e["field"] for e in expect_problem(r, 422, "invalid_field")["errors"]}
        assert fields == {"terms_version", "wellbeing_consent"}
        _, r = await register(http, expect=422, terms_version=V2, wellbeing_consent=True)
        assert expect_problem(r, 422)["errors"][0]["field"] == "terms_version"
        ana, _ = await register(http, terms_version=V1, wellbeing_consent=True)
        await push(http, ana, contact(ana))
        r = await pull(http, ana)
        assert r.status_code == 200
        cursor = r.json()["cursor"]
    old.stop()

    # The operator publishes new terms: the same database, a server requiring V2.
    new = api_process("consent-v2", KITH_TERMS_VERSION=V2).wait_ready()
    async with httpx.AsyncClient(base_url=new.base, timeout=30) as http:
        assert (await http.get("/v1/devices", headers=ana.headers)).status_code == 200
        # Even the "nothing new" pull, which this process answers from memory once it
        # trusts its Redis subscription (RECONNECT_GRACE_S after start), says so.
        await asyncio.sleep(RECONNECT_GRACE_S + 0.5)
        body = expect_problem(await pull(http, ana, cursor), 403, "consent_required")
        assert V2 in body["detail"]
        r = await http.post(
            "/v1/sync/push",
            headers=ana.headers,
            json={
                "device_id": ana.device_id,
                "batch_id": new_id("b"),
                "schema_version": 1,
                "changes": contact(ana),
            },
        )
        expect_problem(r, 403, "consent_required")
        # WatermelonDB's synchronize() is sync too.
        r = await http.get("/v1/watermelon/pull", headers=ana.headers)
        expect_problem(r, 403, "consent_required")
        r = await http.post("/v1/watermelon/push", headers=ana.headers, json={"changes": {}})
        expect_problem(r, 403, "consent_required")
        assert (
            await db.fetchval(
                "SELECT count(*) FROM contacts c JOIN spaces s ON s.id = c.space_id "
                "WHERE s.owner_id = $1",
                ana.user_id,
            )
            == 1
        )  # the refused push wrote nothing
        # The person can still take their data, and the terms are not accepted for them.
        assert (await http.get("/v1/account/export", headers=ana.headers)).status_code == 200

        r = await http.post(
            "/v1/account/consent",
            headers=ana.headers,
            json={"terms_version": V1, "wellbeing_consent": True},
        )
        assert expect_problem(r, 422)["errors"][0]["field"] == "terms_version"
        r = await http.post(
            "/v1/account/consent",
            headers=ana.headers,
            json={"terms_version": V2, "wellbeing_consent": False},
        )
        assert expect_problem(r, 422)["errors"][0]["field"] == "wellbeing_consent"
        r = await http.post(
            "/v1/account/consent",
            headers=ana.headers,
            json={"terms_version": V2, "wellbeing_consent": True},
        )
        assert r.status_code == 200, r.text
        accepted = r.json()
        assert accepted["terms_version"] == V2
        ana.access_token = accepted["access_token"]
        r = await pull(http, ana, cursor)
        assert r.status_code == 200, r.text
        assert r.json()["changes"] == []
        assert await db.fetchval("SELECT terms_version FROM users WHERE id = $1", ana.user_id) == V2


async def test_the_reference_client_signs_up_with_the_terms_and_consent_it_was_given(
    api_process: Callable[..., ApiProcess], db: asyncpg.Connection
) -> None:
    """``sync.client.register`` carries what the app's sign-up screen recorded, so an app
    built on the reference client can sign up where the operator requires consent."""
    server = api_process("consent-client", KITH_TERMS_VERSION=V1).wait_ready()
    tokens = await asyncio.to_thread(
        client_register,
        server.base,
        email=f"{new_id('user')}@example.org",
        password=PASSWORD,
        device_id=new_id("dev"),
        display_name="Ana",
        terms_version=V1,
        wellbeing_consent=True,
    )
    row = await db.fetchrow(
        "SELECT terms_version, wellbeing_consent_at FROM users WHERE id = $1", tokens.user_id
    )
    assert row is not None
    assert row["terms_version"] == V1
    assert row["wellbeing_consent_at"] is not None

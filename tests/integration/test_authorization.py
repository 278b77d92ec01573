"""Broken object-level authorization (OWASP API #1): with Ana's ids in hand, Ben's token
can neither read nor change anything of hers, through any endpoint.

``BOLA_CHECKS`` maps every authenticated route to the test that attacks it; the
enumeration test fails when a route appears that is neither public nor listed, so a new
endpoint cannot ship without its cross-account test.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from service.accounts.recovery import code_hash as recovery_hash
from service.app import create_app
from service.config import Settings
from sync.cursor import encode_cursor
from tests.fakes.oidc import FakeIdentityProviders
from tests.helpers import (
    Account,
    expect_problem,
    login,
    new_id,
    pull_all,
    push,
    register,
    stamp,
)
from tests.integration.realtime_support import SseReader
from tests.integration.signin_support import link, new_subject, provider_sign_in

#: Routes anyone may call. Everything else must need a token and be in BOLA_CHECKS.
PUBLIC = {
    ("POST", "/v1/auth/register"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/metrics"),  # no personal data; KITH_METRICS_TOKEN protects it when set
    # The account-deletion page: its form signs in with the email and password itself
    # (tests/integration/test_account_deletion.py).
    ("GET", "/account/delete"),
    ("POST", "/account/delete"),
    # Password reset: the emailed code is the proof (tests/integration/test_recovery.py).
    ("POST", "/v1/auth/password-reset"),
    # Sign in with Apple or Google: the provider's ID token is the proof
    # (tests/integration/test_sign_in_providers.py).
    ("POST", "/v1/auth/apple"),
    ("POST", "/v1/auth/google"),
    ("POST", "/v1/auth/password-reset/confirm"),
}
PUBLIC_PREFIXES = ("/docs",)  # the OpenAPI document and its renderers
#: The caregiver web page: a cookie session, not a bearer token. Signed out, every page
#: sends the browser to the sign-in form; another caregiver's or a revoked link shows
#: nothing (tests/integration/test_care_page.py).
COOKIE_PREFIXES = ("/care",)

#: Every authenticated route -> the tests below that attack it with another user's ids.
BOLA_CHECKS: dict[tuple[str, str], list[str]] = {
    ("GET", "/v1/account"): ["test_another_persons_sign_in_identities_are_out_of_reach"],
    ("POST", "/v1/account/identities"): [
        "test_another_persons_sign_in_identities_are_out_of_reach"
    ],
    ("DELETE", "/v1/account/identities/{provider}"): [
        "test_another_persons_sign_in_identities_are_out_of_reach"
    ],
    ("POST", "/v1/auth/logout"): ["test_logout_ends_only_the_callers_session"],
    ("GET", "/v1/devices"): ["test_the_device_list_holds_only_my_devices"],
    ("PUT", "/v1/devices/{device_id}/push-token"): [
        "test_a_push_token_cannot_be_set_on_another_users_device",
        "test_a_shared_device_id_stays_two_devices",
    ],
    ("DELETE", "/v1/devices/{device_id}"): [
        "test_another_users_device_cannot_be_signed_out",
        "test_a_shared_device_id_stays_two_devices",
    ],
    ("POST", "/v1/sync/pull"): [
        "test_pull_never_returns_another_users_rows",
        "test_another_users_cursor_reveals_nothing",
    ],
    ("POST", "/v1/sync/push"): [
        "test_pushing_another_users_ids_writes_only_into_my_space",
        "test_another_users_server_records_cannot_be_changed",
        "test_pushing_as_another_users_device_is_refused",
        "test_batch_ids_are_per_space",
    ],
    ("GET", "/v1/sync/conflicts"): ["test_conflict_history_is_only_the_callers"],
    ("GET", "/v1/watermelon/pull"): ["test_watermelondb_sync_stays_in_the_callers_space"],
    ("POST", "/v1/watermelon/push"): ["test_watermelondb_sync_stays_in_the_callers_space"],
    ("GET", "/v1/sync/events"): ["test_an_event_stream_tells_only_of_the_callers_space"],
    ("GET", "/v1/nudges"): ["test_nudges_are_only_the_callers"],
    ("POST", "/v1/nudges/{nudge_id}/feedback"): ["test_nudges_are_only_the_callers"],
    ("DELETE", "/v1/account"): ["test_deleting_my_account_leaves_another_users_alone"],
    ("GET", "/v1/account/export"): ["test_an_export_holds_only_the_callers_data"],
    ("POST", "/v1/account/consent"): ["test_consent_is_recorded_only_for_the_caller"],
    ("POST", "/v1/account/email"): ["test_an_email_change_code_is_bound_to_its_person"],
    ("POST", "/v1/account/email/confirm"): ["test_an_email_change_code_is_bound_to_its_person"],
    **{
        route: ["test_another_users_care_links_are_out_of_reach"]
        for route in (
            ("POST", "/v1/care/invitations"),
            ("POST", "/v1/care/invitations/accept"),
            ("GET", "/v1/care/caregivers"),
            ("PUT", "/v1/care/caregivers/{link_id}/scopes"),
            ("POST", "/v1/care/caregivers/{link_id}/pause"),
            ("POST", "/v1/care/caregivers/{link_id}/resume"),
            ("DELETE", "/v1/care/caregivers/{link_id}"),
            ("GET", "/v1/care/audit"),
            ("GET", "/v1/care/people"),
            ("GET", "/v1/care/people/{link_id}/summary"),
            ("DELETE", "/v1/care/people/{link_id}"),
        )
    },
    **{
        route: ["test_another_users_alerts_are_out_of_reach"]
        for route in (
            ("GET", "/v1/care/alerts"),
            ("POST", "/v1/care/alerts/{alert_id}/resolve"),
            ("POST", "/v1/care/people/{link_id}/alerts/{alert_id}/acknowledge"),
            ("POST", "/v1/care/people/{link_id}/alerts/{alert_id}/resolve"),
        )
    },
}

SECRET = "Ana's private journal entry"


@dataclass
class Victim:
    """Ana, with something in every table a client writes, and a conflict on record."""

    account: Account
    space_id: str
    contact_id: str
    interaction_id: str
    reflection_id: str
    check_in_id: str
    state: dict[tuple[str, str], dict[str, Any]]
    cursor: str


async def _space_of(db: asyncpg.Connection, account: Account) -> str:
    space_id: str = await db.fetchval("SELECT id FROM spaces WHERE owner_id = $1", account.user_id)
    return space_id


async def _seq(db: asyncpg.Connection, account: Account) -> int:
    seq: int = await db.fetchval("SELECT seq FROM spaces WHERE owner_id = $1", account.user_id)
    return seq


@pytest.fixture
async def ana(http: httpx.AsyncClient, db: asyncpg.Connection) -> Victim:
    account = await register(http)
    d = account.device_id
    cid, iid, rid, kid = new_id("c"), new_id("i"), new_id("r"), new_id("k")
    await push(
        http,
        account,
        [
            {
                "table": "contacts",
                "id": cid,
                "hlc": stamp(d),
                "fields": {"display_name": "Ana's mother", "circle": "inner"},
            },
            {
                "table": "interactions",
                "id": iid,
                "hlc": stamp(d),
                "fields": {
                    "contact_ids": [cid],
                    "kind": "call",
                    "occurred_at": "2025-01-02T10:00:00+00:00",
                },
            },
            {
                "table": "reflections",
                "id": rid,
                "hlc": stamp(d),
                "fields": {"occurred_at": "2025-01-02T21:00:00+00:00", "body": SECRET},
            },
            {
                "table": "check_ins",
                "id": kid,
                "hlc": stamp(d),
                "fields": {"occurred_at": "2025-01-02T09:00:00+00:00", "status": "ok"},
            },
        ],
    )
    # An older write loses: Ana now has conflict history naming her contact.
    await push(
        http,
        account,
        [
            {
                "table": "contacts",
                "id": cid,
                "hlc": stamp(d, offset_ms=-60_000),
                "fields": {"display_name": "Mum (old name)"},
            }
        ],
    )
    state, cursor = await pull_all(http, account)
    space_id = await _space_of(db, account)
    return Victim(account, space_id, cid, iid, rid, kid, state, cursor)


async def _assert_untouched(
    http: httpx.AsyncClient, db: asyncpg.Connection, victim: Victim
) -> None:
    state, cursor = await pull_all(http, victim.account)
    assert state == victim.state
    assert cursor == victim.cursor


# -- the route inventory -------------------------------------------------------------------


def _normalise(path: str) -> str:
    """``/v1/devices/{device_id:str}`` -> ``/v1/devices/{device_id}`` (OpenAPI spelling)."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def _app_routes(tmp_path: Path) -> set[tuple[str, str]]:
    """Every (method, path) the application serves, read from the app itself, so a route
    hidden from the OpenAPI document is counted too."""
    app = create_app(
        Settings(data_dir=tmp_path).using(database_url="postgresql://unused@127.0.0.1/unused")
    )
    routes: set[tuple[str, str]] = set()
    for route in app.routes:
        methods = getattr(route, "methods", None) or {type(route).__name__}
        for method in methods - {"OPTIONS", "HEAD"}:
            routes.add((method, _normalise(route.path)))
    return routes


def _is_public(route: tuple[str, str]) -> bool:
    return route in PUBLIC or route[1].startswith(PUBLIC_PREFIXES + COOKIE_PREFIXES)


def test_every_authenticated_route_has_a_bola_test(tmp_path: Path) -> None:
    routes = _app_routes(tmp_path)
    unchecked = {r for r in routes if not _is_public(r)} - BOLA_CHECKS.keys()
    assert not unchecked, (
        f"new authenticated routes without a cross-account test: {sorted(unchecked)}; "
        "add a test that attacks them with another user's ids and list it in BOLA_CHECKS"
    )
    stale = BOLA_CHECKS.keys() - routes
    assert not stale, f"BOLA_CHECKS names routes the app no longer has: {sorted(stale)}"
    missing = {name for names in BOLA_CHECKS.values() for name in names} - globals().keys()
    assert not missing, f"BOLA_CHECKS names tests that do not exist: {sorted(missing)}"


async def test_the_openapi_document_marks_every_checked_route_as_needing_a_token(
    http: httpx.AsyncClient,
) -> None:
    spec = (await http.get("/docs/openapi.json")).json()
    documented = {
        (method.upper(), path): op
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    }
    for route in BOLA_CHECKS:
        assert route in documented, f"{route} is missing from the OpenAPI document"
        assert documented[route].get("security") == [{"bearer": []}], route
    for route, op in documented.items():
        if route not in BOLA_CHECKS:
            assert _is_public(route), f"{route} is neither public nor BOLA-checked"
            assert not op.get("security"), route


@pytest.mark.parametrize(("method", "path"), sorted(BOLA_CHECKS))
async def test_every_authenticated_route_refuses_a_caller_without_a_token(
    http: httpx.AsyncClient, method: str, path: str
) -> None:
    url = (
        path.replace("{device_id}", new_id("dev"))
        .replace("{link_id}", "cl0123456789abcdef")
        .replace("{nudge_id}", "ins-x.at_risk")
        .replace("{alert_id}", "help:k-0123456789")
    )
    body: dict[str, Any] | None = {} if method in {"POST", "PUT"} else None
    r = await http.request(method, url, json=body)
    expect_problem(r, 401, "unauthenticated")


# -- sync ----------------------------------------------------------------------------------


async def test_pull_never_returns_another_users_rows(http: httpx.AsyncClient, ana: Victim) -> None:
    ben = await register(http)
    r = await http.post(
        "/v1/sync/pull", headers=ben.headers, json={"schema_version": 1, "limit": 1000}
    )
    assert r.status_code == 200, r.text
    assert SECRET not in r.text
    assert ana.contact_id not in r.text
    state, _ = await pull_all(http, ben)
    assert set(state) == {("settings", "settings")}


async def test_pushing_another_users_ids_writes_only_into_my_space(
    http: httpx.AsyncClient, db: asyncpg.Connection, ana: Victim
) -> None:
    ben = await register(http)
    seq_before = await _seq(db, ana.account)
    d = ben.device_id
    later = stamp(d, offset_ms=60_000)  # newer than all of Ana's writes: would win a merge
    await push(
        http,
        ben,
        [
            {
                "table": "contacts",
                "id": ana.contact_id,
                "hlc": later,
                "fields": {"display_name": "Ben's rename"},
            },
            {
                "table": "interactions",
                "id": ana.interaction_id,
                "hlc": later,
                "fields": {
                    "contact_ids": [ana.contact_id],
                    "kind": "text",
                    "occurred_at": "2025-02-01T10:00:00+00:00",
                },
            },
            {"table": "reflections", "id": ana.reflection_id, "hlc": later, "deleted": True},
            {"table": "check_ins", "id": ana.check_in_id, "hlc": later, "deleted": True},
            {"table": "settings", "id": "settings", "hlc": later, "fields": {"time_zone": "UTC"}},
        ],
    )
    # Then Ben deletes "her" contact: the cascade must only reach his own interactions.
    await push(
        http,
        ben,
        [
            {
                "table": "contacts",
                "id": ana.contact_id,
                "hlc": stamp(d, offset_ms=61_000),
                "deleted": True,
            }
        ],
    )

    await _assert_untouched(http, db, ana)
    assert await _seq(db, ana.account) == seq_before
    hers = await db.fetchrow(
        """
        SELECT fields->>'display_name' AS name, deleted FROM contacts
        WHERE space_id = $1 AND id = $2
        """,
        ana.space_id,
        ana.contact_id,
    )
    assert hers is not None
    assert (hers["name"], hers["deleted"]) == ("Ana's mother", False)
    for table, rid in [
        ("interactions", ana.interaction_id),
        ("reflections", ana.reflection_id),
        ("check_ins", ana.check_in_id),
    ]:
        deleted = await db.fetchval(
            f"SELECT deleted FROM {table} WHERE space_id = $1 AND id = $2", ana.space_id, rid
        )
        assert deleted is False, table
    # Ben's writes exist, in his space, for him alone.
    state, _ = await pull_all(http, ben)
    assert state[("contacts", ana.contact_id)]["deleted"] is True
    assert state[("settings", "settings")]["fields"]["time_zone"] == "UTC"
    assert ana.state[("settings", "settings")]["fields"]["time_zone"] == "Europe/Lisbon"


async def test_another_users_server_records_cannot_be_changed(
    http: httpx.AsyncClient, db: asyncpg.Connection, ana: Victim
) -> None:
    """Insights are created by the server; Ben naming Ana's insight must not reach it."""
    insight_id = new_id("ins")
    async with db.transaction():
        seq = await db.fetchval(
            "UPDATE spaces SET seq = seq + 1 WHERE id = $1 RETURNING seq", ana.space_id
        )
        await db.execute(
            """
            INSERT INTO insights (space_id, id, fields, clocks, hlc, seq)
            VALUES ($1, $2, '{"rule": "overdue", "status": "open"}', '{}', $3, $4)
            """,
            ana.space_id,
            insight_id,
            "0000000000001-0000-srv-test",
            seq,
        )
    ben = await register(http)
    r = await http.post(
        "/v1/sync/push",
        headers=ben.headers,
        json={
            "device_id": ben.device_id,
            "batch_id": new_id("batch"),
            "schema_version": 1,
            "changes": [
                {
                    "table": "insights",
                    "id": insight_id,
                    "hlc": stamp(ben.device_id),
                    "fields": {"status": "dismissed"},
                }
            ],
        },
    )
    body = expect_problem(r, 422)
    assert [e["field"] for e in body["errors"]] == ["changes[0].id"]
    status = await db.fetchval(
        "SELECT fields->>'status' FROM insights WHERE space_id = $1 AND id = $2",
        ana.space_id,
        insight_id,
    )
    assert status == "open"
    assert await db.fetchval("SELECT count(*) FROM insights WHERE id = $1", insight_id) == 1


async def test_pushing_as_another_users_device_is_refused(
    http: httpx.AsyncClient, db: asyncpg.Connection, ana: Victim
) -> None:
    ben = await register(http)
    ben_seq = await _seq(db, ben)
    cid = new_id("c")
    r = await http.post(
        "/v1/sync/push",
        headers=ben.headers,
        json={
            "device_id": ana.account.device_id,
            "batch_id": new_id("batch"),
            "schema_version": 1,
            "changes": [
                {
                    "table": "contacts",
                    "id": cid,
                    "hlc": stamp(ana.account.device_id),
                    "fields": {"display_name": "Planted"},
                }
            ],
        },
    )
    body = expect_problem(r, 403, "device_mismatch")
    assert [e["field"] for e in body["errors"]] == ["device_id"]
    assert await db.fetchval("SELECT count(*) FROM contacts WHERE id = $1", cid) == 0
    assert await _seq(db, ben) == ben_seq
    await _assert_untouched(http, db, ana)


async def test_batch_ids_are_per_space(
    http: httpx.AsyncClient, db: asyncpg.Connection, ana: Victim
) -> None:
    """Ben reusing Ana's batch id gets his own batch applied, never her stored answer."""
    batch_id = new_id("batch")
    d = ana.account.device_id
    hers = await push(
        http,
        ana.account,
        [
            {
                "table": "contacts",
                "id": ana.contact_id,
                "hlc": stamp(d, offset_ms=-120_000),
                "fields": {"notes": "likes long calls"},
            },
            {
                "table": "contacts",
                "id": ana.contact_id,
                "hlc": stamp(d, offset_ms=-180_000),
                "fields": {"display_name": "an older name that loses"},
            },
        ],
        batch_id=batch_id,
    )
    assert hers["superseded"]
    ana.state, ana.cursor = await pull_all(http, ana.account)

    ben = await register(http)
    cid = new_id("c")
    his = await push(
        http,
        ben,
        [
            {
                "table": "contacts",
                "id": cid,
                "hlc": stamp(ben.device_id),
                "fields": {"display_name": "Ben's friend"},
            }
        ],
        batch_id=batch_id,
    )
    assert his["accepted"] == 1
    assert his["superseded"] == []
    assert ana.contact_id not in str(his)
    state, _ = await pull_all(http, ben)
    assert ("contacts", cid) in state
    await _assert_untouched(http, db, ana)


async def test_another_users_cursor_reveals_nothing(http: httpx.AsyncClient, ana: Victim) -> None:
    ben = await register(http)
    ben_state, _ = await pull_all(http, ben)
    # Her real cursor, and every position a forger could try: only Ben's rows come back.
    cursors = [ana.cursor] + [encode_cursor(n) for n in range(len(ana.state) + 3)]
    for cursor in cursors:
        r = await http.post(
            "/v1/sync/pull",
            headers=ben.headers,
            json={"schema_version": 1, "cursor": cursor, "limit": 1000},
        )
        assert r.status_code == 200, r.text
        assert SECRET not in r.text
        for change in r.json()["changes"]:
            assert (change["table"], change["id"]) in ben_state, (cursor, change)


async def test_conflict_history_is_only_the_callers(http: httpx.AsyncClient, ana: Victim) -> None:
    hers = await http.get("/v1/sync/conflicts", headers=ana.account.headers)
    assert hers.status_code == 200, hers.text
    assert [c["id"] for c in hers.json()["conflicts"]] == [ana.contact_id]

    ben = await register(http)
    queries: list[dict[str, str]] = [
        {},
        {"id": ana.contact_id},
        {"table": "contacts"},
        {"table": "contacts", "id": ana.contact_id},
        {"after": encode_cursor(0)},
        {"since": "2000-01-01T00:00:00Z"},
    ]
    for params in queries:
        r = await http.get("/v1/sync/conflicts", headers=ben.headers, params=params)
        assert r.status_code == 200, (params, r.text)
        assert r.json() == {"conflicts": [], "next": None}, params


async def test_an_event_stream_tells_only_of_the_callers_space(
    http: httpx.AsyncClient, ana: Victim
) -> None:
    """Ben's stream is never poked by Ana's commits, whatever id he claims to have seen;
    the seqs it does carry are his own space's."""
    ben = await register(http)
    timeout = httpx.Timeout(10, read=None)
    for headers in ({}, {"Last-Event-ID": "1"}, {"Last-Event-ID": "999999"}):
        async with http.stream(
            "GET", "/v1/sync/events", headers={**ben.headers, **headers}, timeout=timeout
        ) as r:
            assert r.status_code == 200
            stream = SseReader(r)
            status = await stream.next()
            assert status is not None
            assert status.event == "status"
            change = {
                "table": "contacts",
                "id": new_id("c"),
                "hlc": stamp(ana.account.device_id),
                "fields": {"display_name": "Sam"},
            }
            await push(http, ana.account, [change])
            with contextlib.suppress(TimeoutError):
                poke = await stream.until("change", within_s=1.0)
                raise AssertionError(f"Ben was poked by Ana's push: {poke}")
    async with http.stream(
        "GET", "/v1/sync/events", headers=ben.headers, params={"since": "0"}, timeout=timeout
    ) as r:
        own = await SseReader(r).until("change", within_s=2.0)
        assert own.json() == {"seq": 1}  # his own settings record, nothing of Ana's


# -- devices and sessions ------------------------------------------------------------------


async def test_the_device_list_holds_only_my_devices(http: httpx.AsyncClient, ana: Victim) -> None:
    ben = await register(http)
    r = await http.get("/v1/devices", headers=ben.headers)
    assert r.status_code == 200, r.text
    assert [d["id"] for d in r.json()["devices"]] == [ben.device_id]
    assert ana.account.device_id not in r.text


APNS_TOKEN = "a1" * 32


async def _push_address(db: asyncpg.Connection, account: Account) -> tuple[Any, ...]:
    row = await db.fetchrow(
        """
        SELECT push_provider, push_token, push_environment, revoked_at
        FROM devices WHERE user_id = $1 AND id = $2
        """,
        account.user_id,
        account.device_id,
    )
    assert row is not None
    return tuple(row.values())


async def test_a_push_token_cannot_be_set_on_another_users_device(
    http: httpx.AsyncClient, db: asyncpg.Connection, ana: Victim
) -> None:
    r = await http.put(
        f"/v1/devices/{ana.account.device_id}/push-token",
        headers=ana.account.headers,
        json={"provider": "apns", "token": APNS_TOKEN, "environment": "sandbox"},
    )
    assert r.status_code == 204, r.text
    before = await _push_address(db, ana.account)
    assert before[:3] == ("apns", APNS_TOKEN, "sandbox")

    ben = await register(http)
    attempts = [
        {"provider": "apns", "token": "b2" * 32},
        {"provider": "fcm", "token": "ben-fcm-token"},
        # Ben somehow learnt her token: a 404 must not take it away from her either.
        {"provider": "apns", "token": APNS_TOKEN, "environment": "sandbox"},
    ]
    for body in attempts:
        r = await http.put(
            f"/v1/devices/{ana.account.device_id}/push-token", headers=ben.headers, json=body
        )
        expect_problem(r, 404, "not_found")
        assert await _push_address(db, ana.account) == before, body
    assert await db.fetchval("SELECT count(*) FROM devices WHERE push_token = $1", "b2" * 32) == 0


async def test_another_users_device_cannot_be_signed_out(
    http: httpx.AsyncClient, db: asyncpg.Connection, ana: Victim
) -> None:
    ben = await register(http)
    r = await http.delete(f"/v1/devices/{ana.account.device_id}", headers=ben.headers)
    expect_problem(r, 404, "not_found")
    assert (await _push_address(db, ana.account))[3] is None  # not revoked
    assert (await http.get("/v1/devices", headers=ana.account.headers)).status_code == 200
    await _assert_untouched(http, db, ana)


async def test_a_shared_device_id_stays_two_devices(
    http: httpx.AsyncClient, db: asyncpg.Connection, ana: Victim
) -> None:
    """Device ids are chosen by clients, so two accounts can name a device alike; every
    device route must still act on the caller's own device only."""
    ben = await register(http, device_id=ana.account.device_id)
    ana_before = await _push_address(db, ana.account)
    r = await http.put(
        f"/v1/devices/{ben.device_id}/push-token",
        headers=ben.headers,
        json={"provider": "fcm", "token": new_id("fcm")},
    )
    assert r.status_code == 204, r.text
    assert await _push_address(db, ana.account) == ana_before

    r = await http.delete(f"/v1/devices/{ben.device_id}", headers=ben.headers)
    assert r.status_code == 204, r.text
    expect_problem(await http.get("/v1/devices", headers=ben.headers), 401)
    assert await _push_address(db, ana.account) == ana_before
    assert (await http.get("/v1/devices", headers=ana.account.headers)).status_code == 200


async def test_logout_ends_only_the_callers_session(http: httpx.AsyncClient, ana: Victim) -> None:
    ben = await register(http)
    ana_tablet = await login(http, ana.account.email, new_id("dev"))
    assert (await http.post("/v1/auth/logout", headers=ben.headers)).status_code == 204
    for account in (ana.account, ana_tablet):
        assert (await http.get("/v1/devices", headers=account.headers)).status_code == 200
    r = await http.post("/v1/auth/refresh", json={"refresh_token": ana.account.refresh_token})
    assert r.status_code == 200, r.text


# -- the account ----------------------------------------------------------------------------


async def test_deleting_my_account_leaves_another_users_alone(
    http: httpx.AsyncClient, ana: Victim, db: asyncpg.Connection
) -> None:
    ben = await register(http)  # a fresh sign-in: no password needed
    r = await http.request(
        "DELETE",
        "/v1/account",
        headers=ben.headers,
        json={"password": "correct horse battery staple"},
    )
    assert r.status_code == 202, r.text
    assert await db.fetchval("SELECT erasing_at IS NOT NULL FROM users WHERE id = $1", ben.user_id)
    assert await db.fetchval(
        "SELECT erasing_at IS NULL FROM users WHERE id = $1", ana.account.user_id
    )
    assert (await http.get("/v1/devices", headers=ana.account.headers)).status_code == 200
    await _assert_untouched(http, db, ana)


async def test_an_export_holds_only_the_callers_data(
    http: httpx.AsyncClient, ana: Victim, db: asyncpg.Connection
) -> None:
    ben = await register(http)
    r = await http.get("/v1/account/export", headers=ben.headers)
    assert r.status_code == 200
    for secret in (SECRET, ana.account.user_id, ana.account.email, ana.space_id, ana.contact_id):
        assert secret not in r.text
    assert r.json()["account"]["user_id"] == ben.user_id


async def test_consent_is_recorded_only_for_the_caller(
    http: httpx.AsyncClient, ana: Victim, db: asyncpg.Connection
) -> None:
    ben = await register(http)
    r = await http.post(
        "/v1/account/consent",
        headers=ben.headers,
        json={"terms_version": "2030-01-01", "wellbeing_consent": True},
    )
    assert r.status_code == 200, r.text
    users = await db.fetch(
        "SELECT id, terms_version FROM users WHERE id = ANY($1::text[])",
        [ben.user_id, ana.account.user_id],
    )
    assert {u["id"]: u["terms_version"] for u in users} == {
        ben.user_id: "2030-01-01",
        ana.account.user_id: None,
    }


async def test_an_email_change_code_is_bound_to_its_person(
    http: httpx.AsyncClient, ana: Victim, db: asyncpg.Connection
) -> None:
    """Ben asks to move his account to a new address; Ana, holding his code, can neither
    use it on her account nor touch his."""
    ben = await register(http)
    new = f"{new_id('ben-new')}@example.org"
    r = await http.post(
        "/v1/account/email",
        headers=ben.headers,
        json={"new_email": new, "password": "correct horse battery staple"},
    )
    assert r.status_code == 202, r.text
    # The mailed code, as if read from Ben's inbox (only its hash is stored).
    await db.execute(
        "UPDATE account_codes SET code_hash = $2 WHERE user_id = $1",
        ben.user_id,
        recovery_hash(ben.user_id, "123456"),
    )
    r = await http.post(
        "/v1/account/email/confirm", headers=ana.account.headers, json={"code": "123456"}
    )
    expect_problem(r, 403, "invalid_code")
    emails = await db.fetch(
        "SELECT id, email FROM users WHERE id = ANY($1::text[])", [ben.user_id, ana.account.user_id]
    )
    assert {u["id"]: u["email"] for u in emails} == {
        ben.user_id: ben.email,
        ana.account.user_id: ana.account.email,
    }


# -- nudges and caregivers ------------------------------------------------------------------


async def test_nudges_are_only_the_callers(
    http: httpx.AsyncClient, ana: Victim, db: asyncpg.Connection
) -> None:
    nudge_id = "ins-ana.at_risk"
    await db.execute(
        """
        INSERT INTO nudge_requests (space_id, id, insight_id, contact_id, rule, level, title,
                                    body, state, sent_at)
        VALUES ($1, $2, 'ins-ana', $3, 'overdue', 'at_risk', 't', $4, 'sent', now())
        """,
        ana.space_id,
        nudge_id,
        ana.contact_id,
        SECRET,
    )
    ben = await register(http)
    r = await http.get("/v1/nudges", headers=ben.headers)
    assert r.json()["nudges"] == []
    for action in ("plan", "already_saw", "snooze"):
        r = await http.post(
            f"/v1/nudges/{nudge_id}/feedback", headers=ben.headers, json={"action": action}
        )
        expect_problem(r, 404)
    row = await db.fetchrow(
        "SELECT feedback, state FROM nudge_requests WHERE space_id = $1 AND id = $2",
        ana.space_id,
        nudge_id,
    )
    assert row is not None
    assert (row["feedback"], row["state"]) == (None, "sent")
    state, _ = await pull_all(http, ana.account)
    assert state[("contacts", ana.contact_id)]["fields"]["snoozed_until"] is None
    r = await http.get("/v1/nudges", headers=ana.account.headers)
    assert [n["id"] for n in r.json()["nudges"]] == [nudge_id]


async def test_another_users_care_links_are_out_of_reach(
    http: httpx.AsyncClient, ana: Victim, db: asyncpg.Connection
) -> None:
    """Ana shares with Carol. Ben, holding their ids, can neither see nor change the link,
    read the summary, read Ana's audit, nor reuse the code."""
    carol = await register(http)
    r = await http.post(
        "/v1/care/invitations", headers=ana.account.headers, json={"scopes": ["check_ins"]}
    )
    code = r.json()["code"]
    r = await http.post("/v1/care/invitations/accept", headers=carol.headers, json={"code": code})
    link_id = r.json()["link_id"]
    ben = await register(http)
    base = f"/v1/care/caregivers/{link_id}"
    attempts = [
        http.put(f"{base}/scopes", headers=ben.headers, json={"scopes": ["alerts"]}),
        http.post(f"{base}/pause", headers=ben.headers),
        http.post(f"{base}/resume", headers=ben.headers),
        http.delete(base, headers=ben.headers),
        http.get(f"/v1/care/people/{link_id}/summary", headers=ben.headers),
        http.delete(f"/v1/care/people/{link_id}", headers=ben.headers),
        http.post("/v1/care/invitations/accept", headers=ben.headers, json={"code": code}),
    ]
    for attempt in attempts:
        expect_problem(await attempt, 404)
    assert (await http.get("/v1/care/caregivers", headers=ben.headers)).json()["caregivers"] == []
    assert (await http.get("/v1/care/people", headers=ben.headers)).json()["people"] == []
    assert (await http.get("/v1/care/audit", headers=ben.headers)).json()["views"] == []
    # Ben's own invitation shares Ben, never Ana.
    r = await http.post("/v1/care/invitations", headers=ben.headers, json={})
    dave = await register(http)
    r = await http.post(
        "/v1/care/invitations/accept", headers=dave.headers, json={"code": r.json()["code"]}
    )
    owner = await db.fetchval("SELECT space_id FROM care_links WHERE id = $1", r.json()["link_id"])
    assert owner != ana.space_id
    # Ana's link is as she left it.
    row = await db.fetchrow("SELECT scopes, state FROM care_links WHERE id = $1", link_id)
    assert row is not None
    assert (list(row["scopes"]), row["state"]) == (["check_ins"], "active")
    r = await http.get(f"/v1/care/people/{link_id}/summary", headers=carol.headers)
    assert r.status_code == 200
    assert SECRET not in r.text


async def test_watermelondb_sync_stays_in_the_callers_space(
    http: httpx.AsyncClient, db: asyncpg.Connection, ana: Victim
) -> None:
    ben = await register(http)
    seq_before = await _seq(db, ana.account)
    # Ben's first pull, and one from Ana's latest timestamp: only Ben's settings row.
    for last in ("null", str(seq_before + 1)):
        r = await http.get(
            "/v1/watermelon/pull", headers=ben.headers, params={"last_pulled_at": last}
        )
        assert r.status_code == 200, r.text
        assert SECRET not in r.text
        assert ana.contact_id not in r.text
        changes = r.json()["changes"]
        assert [row["id"] for row in changes["settings"]["updated"]] == ["settings"]
        assert all(not t["updated"] for n, t in changes.items() if n != "settings")
    # Ben pushes Ana's ids, newer than her writes: they land in Ben's own space only.
    ms = int(stamp(ben.device_id, offset_ms=60_000)[:13])
    changes = {
        "contacts": {
            "created": [],
            "updated": [
                {
                    "id": ana.contact_id,
                    "_status": "updated",
                    "_changed": "display_name",
                    "display_name": "Ben's rename",
                    "updated_at": ms,
                }
            ],
            "deleted": [],
        },
        "interactions": {"created": [], "updated": [], "deleted": [ana.interaction_id]},
    }
    r = await http.post("/v1/watermelon/push", headers=ben.headers, json={"changes": changes})
    assert r.status_code == 200, r.text
    assert await _seq(db, ana.account) == seq_before
    await _assert_untouched(http, db, ana)


async def test_another_users_alerts_are_out_of_reach(
    http: httpx.AsyncClient, ana: Victim, db: asyncpg.Connection
) -> None:
    """Ana asked for help and shares alerts with Carol. Ben, holding every id, can neither
    acknowledge nor resolve it (through Carol's link or as if it were his own alert), nor
    list it; nothing changes and nothing is audited."""
    carol = await register(http)
    r = await http.post(
        "/v1/care/invitations", headers=ana.account.headers, json={"scopes": ["alerts"]}
    )
    r = await http.post(
        "/v1/care/invitations/accept", headers=carol.headers, json={"code": r.json()["code"]}
    )
    link_id = r.json()["link_id"]
    alert_id = f"help:{ana.check_in_id}"
    await db.execute(
        "INSERT INTO care_alerts (space_id, id, kind, priority, local_date, raised_at) "
        "VALUES ($1, $2, 'need_help', 'high', current_date, now())",
        ana.space_id,
        alert_id,
    )
    ben = await register(http)
    person = f"/v1/care/people/{link_id}/alerts/{alert_id}"
    expect_problem(await http.post(f"{person}/acknowledge", headers=ben.headers), 404)
    expect_problem(await http.post(f"{person}/resolve", headers=ben.headers), 404)
    r = await http.post(f"/v1/care/alerts/{alert_id}/resolve", headers=ben.headers)
    expect_problem(r, 404, "alert_not_found")
    assert (await http.get("/v1/care/alerts", headers=ben.headers)).json()["alerts"] == []
    row = await db.fetchrow(
        "SELECT acknowledged_at, cleared_at FROM care_alerts WHERE space_id = $1 AND id = $2",
        ana.space_id,
        alert_id,
    )
    assert row is not None
    assert (row["acknowledged_at"], row["cleared_at"]) == (None, None)
    assert not await db.fetchval(
        "SELECT count(*) FROM care_audit WHERE space_id = $1 AND action <> 'viewed'", ana.space_id
    )
    # Ana sees her alert, Carol may answer it.
    [mine] = (await http.get("/v1/care/alerts", headers=ana.account.headers)).json()["alerts"]
    assert (mine["alert_id"], mine["status"]) == (alert_id, "open")
    r = await http.post(f"{person}/acknowledge", headers=carol.headers)
    assert r.status_code == 200, r.text


async def test_another_persons_sign_in_identities_are_out_of_reach(
    http: httpx.AsyncClient, identity_providers: FakeIdentityProviders
) -> None:
    """Ana signs in with Apple and Google; Mallory, signed in to her own account, can see
    neither, unlink neither, and cannot take Ana's Google account even with a genuine token
    for it."""
    apple, google = identity_providers.apple, identity_providers.google
    ana = await provider_sign_in(
        http, apple, new_subject(apple), email=f"{new_id('u')}@example.org", expect_created=True
    )
    ana_google = new_subject(google)
    assert (await link(http, ana, google, ana_google)).status_code == 200
    mallory = await register(http)

    r = await http.get("/v1/account", headers=mallory.headers)
    assert r.status_code == 200, r.text
    assert r.json()["identities"] == []
    assert ana.user_id not in r.text
    for provider in ("apple", "google"):  # the route names a provider, never an id
        r = await http.delete(f"/v1/account/identities/{provider}", headers=mallory.headers)
        expect_problem(r, 404, "not_found")
    r = await link(http, mallory, google, ana_google)
    expect_problem(r, 409, "identity_taken")

    r = await http.get("/v1/account", headers=ana.headers)
    assert sorted(i["provider"] for i in r.json()["identities"]) == ["apple", "google"]
    again = await provider_sign_in(http, google, ana_google, expect_created=False)
    assert again.user_id == ana.user_id

"""Every route in the served OpenAPI document, called by someone else with Ana's ids.

Ana has something everywhere: records in every table a phone writes, a conflict on record,
a nudge, a device, a Google account she signs in with, a caregiver (Carol) who may see only
her check-ins. Two people then walk
every authenticated operation the document lists, filling each path parameter, query and
body with Ana's ids: Ben, a stranger, and Carol, her caregiver. Asserted for every answer:
no 5xx; a refusal is 403/404/409/422 (never a 2xx that acts on Ana's data); no body names
anything of Ana's that the caller did not send itself, and Carol never sees a reflection,
a contact's name or a note. Afterwards Ana's records, devices, nudge, care link and sign-in
identities are as she left them.

The walk is driven by the document, so a new route cannot ship without being walked: a
path parameter or a body this test does not know how to fill with Ana's ids fails it.
(tests/integration/test_authorization.py holds the hand-written attack per route.)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from tests.conftest import OUTPUT
from tests.fakes.oidc import FakeIdentityProviders, FakeProvider
from tests.helpers import PASSWORD, Account, new_id, pull_all, push, register, stamp
from tests.integration.signin_support import link, new_nonce, new_subject

SECRETS = {
    "reflection": "Ana's reflection: a hard week, told to nobody",
    "contact name": "Ana's sister Marta",
    "contact note": "Marta's new number is private",
    "interaction note": "we talked about the divorce",
    "check-in note": "my knee hurts again",
    "nudge": "Ana's nudge about Marta",
}
#: What a caregiver must never see, whatever the scopes (issue 18's audit: "no reflection,
#: name or note").
NEVER_FOR_CAREGIVERS = ("reflection", "contact name", "contact note", "interaction note")
REFUSED = {403, 404, 409, 422}


@dataclass
class Ana:
    account: Account
    space_id: str
    ids: dict[str, str]
    link_id: str
    used_code: str
    insight_id: str
    nudge_id: str
    google: FakeProvider
    google_subject: str
    state: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    cursor: str = ""


@dataclass
class Walk:
    attempts: int = 0
    leaks: list[str] = field(default_factory=list)
    wrong_status: list[str] = field(default_factory=list)
    by_status: dict[int, int] = field(default_factory=dict)


async def _ana(
    http: httpx.AsyncClient, db: asyncpg.Connection, carol: Account, google: FakeProvider
) -> Ana:
    account = await register(http)
    google_subject = new_subject(google)
    r = await link(http, account, google, google_subject, password=PASSWORD)
    assert r.status_code == 200, r.text
    d = account.device_id
    ids = {t: new_id(t[:4]) for t in ("contacts", "interactions", "reflections", "check_ins")}
    await push(
        http,
        account,
        [
            {
                "table": "contacts",
                "id": ids["contacts"],
                "hlc": stamp(d),
                "fields": {
                    "display_name": SECRETS["contact name"],
                    "notes": SECRETS["contact note"],
                    "circle": "inner",
                },
            },
            {
                "table": "interactions",
                "id": ids["interactions"],
                "hlc": stamp(d),
                "fields": {
                    "contact_ids": [ids["contacts"]],
                    "kind": "in_person",
                    "occurred_at": "2026-11-30T18:00:00+00:00",
                    "note": SECRETS["interaction note"],
                },
            },
            {
                "table": "reflections",
                "id": ids["reflections"],
                "hlc": stamp(d),
                "fields": {
                    "occurred_at": "2026-11-30T21:00:00+00:00",
                    "body": SECRETS["reflection"],
                },
            },
            {
                "table": "check_ins",
                "id": ids["check_ins"],
                "hlc": stamp(d),
                "fields": {
                    "occurred_at": "2026-12-01T09:00:00+00:00",
                    "status": "need_help",
                    "note": SECRETS["check-in note"],
                },
            },
        ],
    )
    # An older write loses: Ana has conflict history naming her contact.
    await push(
        http,
        account,
        [
            {
                "table": "contacts",
                "id": ids["contacts"],
                "hlc": stamp(d, offset_ms=-60_000),
                "fields": {"display_name": "an older name"},
            }
        ],
    )
    space_id: str = await db.fetchval("SELECT id FROM spaces WHERE owner_id = $1", account.user_id)
    insight_id, nudge_id = new_id("ins"), new_id("ins") + ".at_risk"
    async with db.transaction():
        seq = await db.fetchval(
            "UPDATE spaces SET seq = seq + 1 WHERE id = $1 RETURNING seq", space_id
        )
        await db.execute(
            """
            INSERT INTO insights (space_id, id, fields, clocks, hlc, seq)
            VALUES ($1, $2, '{"rule": "overdue", "status": "open"}', '{}', $3, $4)
            """,
            space_id,
            insight_id,
            "0000000000001-0000-srv-test",
            seq,
        )
        await db.execute(
            """
            INSERT INTO nudge_requests (space_id, id, insight_id, contact_id, rule, level,
                                        title, body, state, sent_at)
            VALUES ($1, $2, $3, $4, 'overdue', 'at_risk', 't', $5, 'sent', now())
            """,
            space_id,
            nudge_id,
            insight_id,
            ids["contacts"],
            SECRETS["nudge"],
        )
    r = await http.post(
        "/v1/care/invitations", headers=account.headers, json={"scopes": ["check_ins"]}
    )
    assert r.status_code == 201, r.text
    code = r.json()["code"]
    r = await http.post("/v1/care/invitations/accept", headers=carol.headers, json={"code": code})
    assert r.status_code == 201, r.text
    link_id = r.json()["link_id"]
    ana = Ana(account, space_id, ids, link_id, code, insight_id, nudge_id, google, google_subject)
    ana.state, ana.cursor = await pull_all(http, account)
    return ana


def _bodies(ana: Ana, caller: Account) -> dict[tuple[str, ...], Callable[[], Any]]:
    """A body per operation that has one, aimed at Ana's things."""
    later = stamp(caller.device_id, offset_ms=60_000)  # would win any merge

    def her_google_token() -> dict[str, Any]:
        """A genuine token for Ana's Google account (as if the caller had stolen one)."""
        nonce = new_nonce()
        return {
            "provider": "google",
            "id_token": ana.google.token(ana.google_subject, nonce),
            "nonce": nonce,
            "password": PASSWORD,
        }

    def push_body(device_id: str) -> dict[str, Any]:
        return {
            "device_id": device_id,
            "batch_id": new_id("batch"),
            "schema_version": 1,
            "changes": [
                {
                    "table": "contacts",
                    "id": ana.ids["contacts"],
                    "hlc": later,
                    "fields": {"display_name": "renamed by someone else"},
                },
                {
                    "table": "reflections",
                    "id": ana.ids["reflections"],
                    "hlc": later,
                    "deleted": True,
                },
                {"table": "check_ins", "id": ana.ids["check_ins"], "hlc": later, "deleted": True},
                {
                    "table": "insights",
                    "id": ana.insight_id,
                    "hlc": later,
                    "fields": {"status": "acted"},
                },
            ],
        }

    return {
        ("POST", "/v1/sync/push"): lambda: push_body(caller.device_id),
        ("POST", "/v1/sync/pull"): lambda: {"schema_version": 1, "cursor": None, "limit": 1000},
        ("POST", "/v1/care/invitations"): lambda: {"scopes": ["check_ins", "contact_trend"]},
        ("POST", "/v1/care/invitations/accept"): lambda: {"code": ana.used_code},
        ("PUT", "/v1/care/caregivers/{link_id}/scopes"): lambda: {
            "scopes": ["check_ins", "contact_trend", "alerts"]
        },
        ("PUT", "/v1/devices/{device_id}/push-token"): lambda: {
            "provider": "fcm",
            "token": "someone-elses-token",
        },
        ("POST", "/v1/nudges/{nudge_id}/feedback"): lambda: {"action": "snooze"},
        ("POST", "/v1/care/people/{link_id}/alerts/{alert_id}/acknowledge"): lambda: {
            "via": "push"
        },
        ("POST", "/v1/care/people/{link_id}/alerts/{alert_id}/resolve"): lambda: {"via": "push"},
        ("POST", "/v1/account/email"): lambda: {
            "new_email": ana.account.email,
            "password": PASSWORD,
        },
        ("POST", "/v1/account/email/confirm"): lambda: {"code": "12345678"},
        ("POST", "/v1/account/consent"): lambda: {"terms_version": "1", "wellbeing_consent": True},
        ("DELETE", "/v1/account"): lambda: {"password": PASSWORD},
        ("POST", "/v1/account/identities"): her_google_token,
        ("POST", "/v1/watermelon/push"): lambda: {
            "changes": {
                "contacts": {
                    "created": [],
                    "updated": [
                        {
                            "id": ana.ids["contacts"],
                            "display_name": "renamed through WatermelonDB",
                            "updated_at": time.time_ns() // 1_000_000 + 60_000,
                            "_status": "updated",
                            "_changed": "display_name",
                        }
                    ],
                    "deleted": [],
                },
                "reflections": {"created": [], "updated": [], "deleted": [ana.ids["reflections"]]},
            },
            "lastPulledAt": 1,
        },
        # A second attempt with Ana's own device id, and one with her cursor:
        ("POST", "/v1/sync/push", "as her device"): lambda: push_body(ana.account.device_id),
        ("POST", "/v1/sync/pull", "her cursor"): lambda: {
            "schema_version": 1,
            "cursor": ana.cursor,
            "limit": 1000,
        },
    }


def _requests(
    spec: dict[str, Any], ana: Ana, caller: Account
) -> list[tuple[str, str, str, dict[str, Any], Any]]:
    """(label, method, url, query, body) for every authenticated operation, in an order
    that keeps the caller signed in to the end."""
    path_values = {
        "device_id": ana.account.device_id,
        "link_id": ana.link_id,
        "nudge_id": ana.nudge_id,
        "alert_id": f"help:{ana.ids['check_ins']}",  # her need-help check-in's alert
        "provider": "google",  # the provider Ana signs in with (the caller's own is unlinked)
    }
    queries: dict[tuple[str, str], dict[str, Any]] = {
        ("GET", "/v1/sync/conflicts"): {"table": "contacts", "id": ana.ids["contacts"]},
        ("GET", "/v1/sync/events"): {"since": 0},
    }
    bodies = _bodies(ana, caller)
    out: list[tuple[str, str, str, dict[str, Any], Any]] = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if not operation.get("security"):
                continue  # public routes hold nobody's data
            route = (method.upper(), path)
            url = path
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    name = parameter["name"]
                    assert name in path_values, f"{route}: how is `{name}` one of Ana's ids?"
                    url = url.replace("{" + name + "}", path_values[name])
            variants = [key for key in bodies if key[:2] == route]
            if "requestBody" in operation:
                assert variants, f"{route}: add a body aimed at Ana's things to _bodies"
            for key in variants or [route]:
                body = bodies[key]() if key in bodies else None
                label = " ".join(key)
                out.append((label, route[0], url, queries.get(route, {}), body))
    last = {
        "DELETE /v1/care/people/{link_id}": 1,
        "POST /v1/auth/logout": 2,
        "DELETE /v1/account": 3,
    }
    return sorted(out, key=lambda r: last.get(r[0], 0))


async def _call(
    http: httpx.AsyncClient, method: str, url: str, query: dict[str, Any], body: Any, headers: Any
) -> tuple[int, str]:
    if url == "/v1/sync/events":  # a stream: read what comes in the first half second
        text = ""
        async with http.stream("GET", url, params=query, headers=headers, timeout=5) as r:
            if r.status_code != 200:
                return r.status_code, (await r.aread()).decode()
            try:
                async with asyncio.timeout(0.5):
                    async for chunk in r.aiter_text():
                        text += chunk
            except TimeoutError:
                pass
            return r.status_code, text
    r = await http.request(method, url, params=query, json=body, headers=headers)
    return r.status_code, r.text


def _markers(ana: Ana, caregiver: bool) -> dict[str, str]:
    """What of Ana's must not appear in the caller's answers."""
    if caregiver:
        return {k: SECRETS[k] for k in NEVER_FOR_CAREGIVERS}
    return {
        **SECRETS,
        "Ana's email": ana.account.email,
        "Ana's user id": ana.account.user_id,
        "Ana's space": ana.space_id,
        "Ana's care link": ana.link_id,
    }


async def _walk(
    http: httpx.AsyncClient, spec: dict[str, Any], ana: Ana, caller: Account, caregiver: bool
) -> Walk:
    walk = Walk()
    own = {  # what the caregiver may legitimately be answered 2xx on
        "GET /v1/care/people/{link_id}/summary",
        "DELETE /v1/care/people/{link_id}",
    }
    for label, method, url, query, body in _requests(spec, ana, caller):
        status, text = await _call(http, method, url, query, body, caller.headers)
        walk.attempts += 1
        walk.by_status[status] = walk.by_status.get(status, 0) + 1
        sent = json.dumps(body) + url + json.dumps(query)
        for what, marker in _markers(ana, caregiver).items():
            if marker in text and marker not in sent:
                walk.leaks.append(f"{label} -> {status}: {what} in {text[:300]}")
        # A path naming one of Ana's things, or a push as her device, must be refused;
        # elsewhere (a push naming her record ids, a pull from her cursor) the caller acts
        # in its own space, which the checks on Ana's data below confirm.
        names_ana = any(
            v in url
            for v in (ana.account.device_id, ana.nudge_id, ana.link_id, ana.ids["check_ins"])
        )
        names_ana = names_ana or label.endswith("as her device")
        if status >= 500:
            walk.wrong_status.append(f"{label} -> {status}")
        elif names_ana and status not in REFUSED and not (caregiver and label in own):
            walk.wrong_status.append(f"{label} -> {status}: acted on Ana's id: {text[:300]}")
    return walk


async def test_every_documented_route_walked_with_another_persons_ids_leaks_nothing(
    http: httpx.AsyncClient, db: asyncpg.Connection, identity_providers: FakeIdentityProviders
) -> None:
    spec = (await http.get("/docs/openapi.json")).json()
    carol = await register(http)
    ana = await _ana(http, db, carol, identity_providers.google)
    devices_before = (await http.get("/v1/devices", headers=ana.account.headers)).json()
    account_before = (await http.get("/v1/account", headers=ana.account.headers)).json()
    ben = await register(http)

    walks = {
        "stranger": await _walk(http, spec, ana, ben, caregiver=False),
        "caregiver": await _walk(http, spec, ana, carol, caregiver=True),
    }

    problems = [f"{who}: {p}" for who, w in walks.items() for p in w.leaks + w.wrong_status]
    assert problems == [], "\n".join(problems)
    # Nothing of Ana's changed: records, devices, nudge, the care link's scopes.
    state, cursor = await pull_all(http, ana.account)
    assert (state, cursor) == (ana.state, ana.cursor)
    devices_after = (await http.get("/v1/devices", headers=ana.account.headers)).json()
    assert devices_after == devices_before
    account_after = (await http.get("/v1/account", headers=ana.account.headers)).json()
    assert account_after == account_before
    assert [i["provider"] for i in account_after["identities"]] == ["google"]
    nudge = await db.fetchrow(
        "SELECT feedback, state FROM nudge_requests WHERE space_id = $1 AND id = $2",
        ana.space_id,
        ana.nudge_id,
    )
    assert nudge is not None
    assert (nudge["feedback"], nudge["state"]) == (None, "sent")
    scopes = await db.fetchval("SELECT scopes FROM care_links WHERE id = $1", ana.link_id)
    assert list(scopes) == ["check_ins"]
    # Every documented authenticated operation was walked by both.
    operations = sum(
        1 for item in spec["paths"].values() for op in item.values() if op.get("security")
    )
    assert all(w.attempts >= operations for w in walks.values())

    OUTPUT.mkdir(exist_ok=True)
    figures = {
        "operations": operations,
        "attempts": sum(w.attempts for w in walks.values()),
        "leaks": sum(len(w.leaks) for w in walks.values()),
        "by_status": {who: w.by_status for who, w in walks.items()},
    }
    (OUTPUT / "reliability-cross-account.json").write_text(json.dumps(figures, indent=2))
    print(f"\ncross-account: {json.dumps(figures)}")

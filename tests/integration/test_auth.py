"""Accounts and sessions over the real API: register, log in, rotate, log out, and the
token forgeries a stolen or tampered JWT would attempt (each must be a 401 problem)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.helpers import (
    PASSWORD,
    Account,
    expect_problem,
    login,
    new_id,
    pull_all,
    push,
    register,
    stamp,
)

#: Every 401 a client can see carries one of these codes; clients branch on them.
AUTH_CODES = {"unauthenticated", "invalid_token", "session_revoked"}


def _device(device_id: str | None = None) -> dict[str, str]:
    return {"id": device_id or new_id("dev"), "platform": "ios", "name": "test"}


async def _me(http: httpx.AsyncClient, token: str) -> httpx.Response:
    """A cheap authenticated call: the caller's device list."""
    return await http.get("/v1/devices", headers={"Authorization": f"Bearer {token}"})


async def _refresh(http: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await http.post("/v1/auth/refresh", json={"refresh_token": refresh_token})


def _expect_401(r: httpx.Response, code: str | None = None) -> None:
    body = expect_problem(r, 401, code)
    assert body["code"] in AUTH_CODES | {
        "invalid_refresh_token",
        "refresh_token_reused",
        "invalid_credentials",
    }


# -- register and log in -------------------------------------------------------------------


async def test_register_returns_a_signed_in_session(http: httpx.AsyncClient) -> None:
    device_id = new_id("dev")
    r = await http.post(
        "/v1/auth/register",
        json={
            "email": f"{new_id('ana')}@example.org",
            "password": PASSWORD,
            "display_name": "Ana",
            "time_zone": "Europe/Lisbon",
            "device": _device(device_id),
        },
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["user_id"]
    assert body["device_id"] == device_id
    assert body["token_type"] == "Bearer"
    assert 890 <= body["expires_in"] <= 900
    assert body["refresh_token"] != body["access_token"]
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == body["expires_in"]
    assert (await _me(http, body["access_token"])).status_code == 200


async def test_an_email_registers_once_whatever_its_case(
    http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    local = new_id("ana")
    await register(http, email=f"{local}@Example.org")
    r = await http.post(
        "/v1/auth/register",
        json={
            "email": f"{local.upper()}@example.ORG",
            "password": PASSWORD,
            "display_name": "Impostor",
            "time_zone": "UTC",
            "device": _device(),
        },
    )
    body = expect_problem(r, 409, "email_taken")
    assert [e["field"] for e in body["errors"]] == ["email"]
    count = await db.fetchval(
        "SELECT count(*) FROM users WHERE lower(email) = lower($1)", f"{local}@example.org"
    )
    assert count == 1


@pytest.mark.parametrize(
    "time_zone",
    ["Mars/Olympus_Mons", "../../etc/passwd", "Europe/", "localtime", "posixrules", "Factory"],
)
async def test_an_unknown_time_zone_is_refused_by_name(
    http: httpx.AsyncClient, db: asyncpg.Connection, time_zone: str
) -> None:
    email = f"{new_id('tz')}@example.org"
    r = await http.post(
        "/v1/auth/register",
        json={
            "email": email,
            "password": PASSWORD,
            "display_name": "Ana",
            "time_zone": time_zone,
            "device": _device(),
        },
    )
    body = expect_problem(r, 422, "invalid_field")
    assert [e["field"] for e in body["errors"]] == ["time_zone"]
    assert await db.fetchval("SELECT count(*) FROM users WHERE email = $1", email) == 0


async def test_login_opens_a_session_on_the_named_device(http: httpx.AsyncClient) -> None:
    ana = await register(http)
    phone = await login(http, ana.email.upper(), new_id("dev"))
    assert phone.user_id == ana.user_id
    assert (await _me(http, phone.access_token)).status_code == 200


async def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(
    http: httpx.AsyncClient,
) -> None:
    ana = await register(http)
    wrong = await http.post(
        "/v1/auth/login",
        json={"email": ana.email, "password": "not the password", "device": _device()},
    )
    unknown = await http.post(
        "/v1/auth/login",
        json={
            "email": f"{new_id('nobody')}@example.org",
            "password": PASSWORD,
            "device": _device(),
        },
    )
    _expect_401(wrong, "invalid_credentials")
    _expect_401(unknown, "invalid_credentials")
    assert wrong.json() == unknown.json()  # nothing tells an attacker which emails exist


async def test_the_password_is_stored_only_as_an_argon2id_hash(
    http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    ana = await register(http)
    stored = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", ana.user_id)
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    row = await db.fetchrow("SELECT * FROM users WHERE id = $1", ana.user_id)
    assert row is not None
    assert all(PASSWORD not in str(value) for value in row.values())


# -- refresh rotation and reuse ------------------------------------------------------------


async def test_refresh_rotates_and_each_refresh_token_works_once(
    http: httpx.AsyncClient,
) -> None:
    ana = await register(http)
    r1 = await _refresh(http, ana.refresh_token)
    assert r1.status_code == 200, r1.text
    first = r1.json()
    assert first["refresh_token"] != ana.refresh_token
    assert first["device_id"] == ana.device_id
    assert (await _me(http, first["access_token"])).status_code == 200

    r2 = await _refresh(http, first["refresh_token"])
    assert r2.status_code == 200, r2.text
    second = r2.json()
    assert (await _me(http, second["access_token"])).status_code == 200


async def test_a_replayed_refresh_token_signs_the_whole_session_out(
    http: httpx.AsyncClient,
) -> None:
    ana = await register(http)
    newest = (await _refresh(http, ana.refresh_token)).json()
    assert (await _me(http, newest["access_token"])).status_code == 200

    replay = await _refresh(http, ana.refresh_token)  # the stolen copy comes back
    _expect_401(replay, "refresh_token_reused")

    # Whoever holds the newest tokens (thief or owner) is out too; the device logs in again.
    _expect_401(await _refresh(http, newest["refresh_token"]))
    _expect_401(await _me(http, newest["access_token"]), "session_revoked")
    _expect_401(await _me(http, ana.access_token), "session_revoked")
    again = await login(http, ana.email, ana.device_id)
    assert (await _me(http, again.access_token)).status_code == 200


async def test_an_unknown_refresh_token_is_refused(http: httpx.AsyncClient) -> None:
    _expect_401(await _refresh(http, "not-a-token-we-issued"), "invalid_refresh_token")


async def test_logout_ends_the_access_and_the_refresh_token(http: httpx.AsyncClient) -> None:
    ana = await register(http)
    r = await http.post("/v1/auth/logout", headers=ana.headers)
    assert r.status_code == 204, r.text
    _expect_401(await _me(http, ana.access_token), "session_revoked")
    _expect_401(await _refresh(http, ana.refresh_token))


async def test_each_device_has_its_own_session(http: httpx.AsyncClient) -> None:
    phone = await register(http)
    tablet = await login(http, phone.email, new_id("dev"))
    assert tablet.device_id != phone.device_id
    assert tablet.access_token != phone.access_token
    assert tablet.refresh_token != phone.refresh_token
    claims = jwt.decode(tablet.access_token, options={"verify_signature": False})
    assert claims["did"] == tablet.device_id

    assert (await http.post("/v1/auth/logout", headers=phone.headers)).status_code == 204
    _expect_401(await _me(http, phone.access_token))
    assert (await _me(http, tablet.access_token)).status_code == 200
    assert (await _refresh(http, tablet.refresh_token)).status_code == 200


async def test_a_new_login_on_the_same_device_ends_its_old_session(
    http: httpx.AsyncClient,
) -> None:
    ana = await register(http)
    again = await login(http, ana.email, ana.device_id)
    _expect_401(await _me(http, ana.access_token), "session_revoked")
    _expect_401(await _refresh(http, ana.refresh_token))
    assert (await _me(http, again.access_token)).status_code == 200


# -- forged and stale access tokens --------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    """A JWT built by hand: PyJWT itself refuses to make these."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if secret is None:
        return f"{signing_input}."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def _claims(account: Account) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(account.access_token, options={"verify_signature": False})
    return claims


def _server_key(key_dir: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(
        (key_dir / "jwt-ed25519.pem").read_bytes(), password=None
    )
    assert isinstance(key, Ed25519PrivateKey)
    return key


async def test_a_token_re_signed_with_the_server_key_is_accepted(
    http: httpx.AsyncClient, key_dir: Path
) -> None:
    """The control for the forgeries below: our hand-made tokens are well-formed, so the
    401s they get come from the attack, not from a broken test."""
    ana = await register(http)
    token = jwt.encode(_claims(ana), _server_key(key_dir), algorithm="EdDSA")
    assert (await _me(http, token)).status_code == 200


async def test_a_token_signed_by_another_key_is_refused(http: httpx.AsyncClient) -> None:
    ana = await register(http)
    header = jwt.get_unverified_header(ana.access_token)
    token = jwt.encode(
        _claims(ana), Ed25519PrivateKey.generate(), algorithm="EdDSA", headers=header
    )
    _expect_401(await _me(http, token), "invalid_token")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_an_unsigned_alg_none_token_is_refused(http: httpx.AsyncClient, alg: str) -> None:
    ana = await register(http)
    token = _forge({"alg": alg, "typ": "JWT"}, _claims(ana), None)
    _expect_401(await _me(http, token), "invalid_token")


@pytest.mark.parametrize("encoding", ["pem", "raw", "der"])
async def test_an_hs256_token_keyed_with_the_public_key_is_refused(
    http: httpx.AsyncClient, key_dir: Path, encoding: str
) -> None:
    """Algorithm confusion: the attacker knows the public key and uses it as an HMAC secret."""
    ana = await register(http)
    public = _server_key(key_dir).public_key()
    secret = {
        "pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "raw": public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        "der": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    }[encoding]
    token = _forge({"alg": "HS256", "typ": "JWT"}, _claims(ana), secret)
    _expect_401(await _me(http, token), "invalid_token")


async def test_an_expired_token_is_refused(http: httpx.AsyncClient, key_dir: Path) -> None:
    ana = await register(http)
    now = int(time.time())
    claims = {**_claims(ana), "iat": now - 3600, "exp": now - 60}
    token = jwt.encode(claims, _server_key(key_dir), algorithm="EdDSA")
    _expect_401(await _me(http, token), "invalid_token")


@pytest.mark.parametrize(
    ("claim", "value"), [("aud", "another-api"), ("iss", "someone-else"), ("did", None)]
)
async def test_a_token_with_wrong_claims_is_refused_even_when_signed(
    http: httpx.AsyncClient, key_dir: Path, claim: str, value: str | None
) -> None:
    ana = await register(http)
    claims = _claims(ana)
    if value is None:
        del claims[claim]
    else:
        claims[claim] = value
    token = jwt.encode(claims, _server_key(key_dir), algorithm="EdDSA")
    _expect_401(await _me(http, token), "invalid_token")


async def test_a_token_for_a_revoked_device_is_refused(http: httpx.AsyncClient) -> None:
    phone = await register(http)
    tablet = await login(http, phone.email, new_id("dev"))
    r = await http.delete(f"/v1/devices/{phone.device_id}", headers=tablet.headers)
    assert r.status_code == 204, r.text
    _expect_401(await _me(http, phone.access_token), "session_revoked")
    _expect_401(await _refresh(http, phone.refresh_token), "invalid_refresh_token")
    assert (await _me(http, tablet.access_token)).status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Basic YW5hOnNlY3JldA==",
        "Token abc",
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Bearer eyJhbGciOiJFZERTQSJ9.e30.",
        "Bearer " + "A" * 5000,
    ],
)
async def test_a_missing_or_garbled_authorization_header_is_refused(
    http: httpx.AsyncClient, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    r = await http.get("/v1/devices", headers=headers)
    _expect_401(r)
    assert r.headers["www-authenticate"].startswith("Bearer")


async def test_a_truncated_token_is_refused(http: httpx.AsyncClient) -> None:
    ana = await register(http)
    _expect_401(await _me(http, ana.access_token[:-4]), "invalid_token")
    _expect_401(await _me(http, ana.access_token + "x"), "invalid_token")


async def test_the_bearer_scheme_is_case_insensitive(http: httpx.AsyncClient) -> None:
    ana = await register(http)
    r = await http.get("/v1/devices", headers={"Authorization": f"bearer {ana.access_token}"})
    assert r.status_code == 200, r.text


# -- what the server writes down -----------------------------------------------------------

SERVER_LOG = Path(__file__).resolve().parents[2] / "test-output" / "api-server.log"


async def test_no_password_token_or_journal_text_reaches_the_server_log(
    http: httpx.AsyncClient,
) -> None:
    """The server's log is read by operators; a person's password, tokens and journal must
    never be in it, not even when their request fails in the worst way."""
    secret = f"journal-{new_id('secret')}"
    password = f"pw-{new_id('secret')}"
    email = f"{new_id('log')}@example.org"
    device = _device()
    r = await http.post(
        "/v1/auth/register",
        json={
            "email": email,
            "password": password,
            "display_name": "Ana",
            "time_zone": "UTC",
            "device": device,
        },
    )
    assert r.status_code == 201, r.text
    tokens = r.json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    await http.post(
        "/v1/auth/login", json={"email": email, "password": password + "x", "device": device}
    )
    hlc = f"{int(time.time() * 1000):013d}-0000-{device['id']}"
    for fields in (
        {"occurred_at": "2025-01-01T10:00:00+00:00", "body": secret},  # accepted
        {"occurred_at": "2025-01-01T10:00:00+00:00", "body": secret + "\u0000"},  # unstorable
        {"occurred_at": "2025-01-01T10:00:00+00:00", "mood": secret},  # invalid
    ):
        await http.post(
            "/v1/sync/push",
            headers=headers,
            json={
                "device_id": device["id"],
                "batch_id": new_id("batch"),
                "schema_version": 1,
                "changes": [
                    {"table": "reflections", "id": new_id("r"), "hlc": hlc, "fields": fields}
                ],
            },
        )
    await http.post(
        "/v1/sync/push",
        headers={**headers, "Content-Type": "application/json"},
        content=b'{"body": "' + secret.encode() + b'\xff"}',
    )
    await _refresh(http, tokens["refresh_token"])
    await _refresh(http, tokens["refresh_token"])  # the replay path, last: it signs out
    # Failures are logged (by type and route only); the file holds this server's output.
    log = SERVER_LOG.read_text(errors="replace")
    assert "kith API process ready" in log  # the file really is this server's output
    for value in (secret, password, tokens["access_token"], tokens["refresh_token"], email):
        assert value not in log


async def test_a_signed_out_device_can_neither_push_nor_replay_an_applied_batch(
    http: httpx.AsyncClient,
) -> None:
    """The push confirms the session in the statement that takes the space's lock: a
    signed-out device writes nothing, and cannot read back a batch's stored answer."""
    ana = await register(http)
    tablet = await login(http, ana.email, new_id("tablet"))
    applied = new_id("batch")
    sam = {
        "table": "contacts",
        "id": new_id("contact"),
        "hlc": stamp(ana.device_id),
        "fields": {"display_name": "Sam"},
    }
    await push(http, ana, [sam], batch_id=applied)

    r = await http.post("/v1/auth/logout", headers=ana.headers)
    assert r.status_code == 204
    lee = {
        "table": "contacts",
        "id": new_id("contact"),
        "hlc": stamp(ana.device_id),
        "fields": {"display_name": "Lee"},
    }
    # A new batch, and an exact retry of the applied one (which a live session would get
    # its stored answer for).
    for batch_id, change in ((new_id("batch"), lee), (applied, sam)):
        body = {
            "device_id": ana.device_id,
            "batch_id": batch_id,
            "schema_version": 1,
            "changes": [change],
        }
        r = await http.post("/v1/sync/push", headers=ana.headers, json=body)
        _expect_401(r, "session_revoked")
        assert "seq" not in r.json()

    records, _ = await pull_all(http, tablet)
    names = {
        k[1]: v["fields"].get("display_name") for k, v in records.items() if k[0] == "contacts"
    }
    assert names == {sam["id"]: "Sam"}


async def test_a_token_carrying_another_space_than_its_session_is_refused(
    http: httpx.AsyncClient, key_dir: Path, db: asyncpg.Connection
) -> None:
    """Signed with the server's own key, A's session and B's space: no read, no write of
    B's space on any path (the cached no-change pull, the pull page, the push, the SSE
    stream, a plain route)."""
    ana, bea = await register(http), await register(http)
    note = new_id("c")
    await push(
        http,
        bea,
        [
            {
                "table": "contacts",
                "id": note,
                "hlc": stamp(bea.device_id),
                "fields": {"display_name": "B"},
            }
        ],
    )
    r = await http.post("/v1/sync/pull", headers=bea.headers, json={"schema_version": 1})
    bea_cursor = r.json()["cursor"]
    # Ana's own session is confirmed live and cached by the server first.
    r = await http.post("/v1/sync/pull", headers=ana.headers, json={"schema_version": 1})
    assert r.status_code == 200
    forged = jwt.encode(
        {**_claims(ana), "spc": _claims(bea)["spc"]}, _server_key(key_dir), algorithm="EdDSA"
    )
    auth = {"Authorization": f"Bearer {forged}"}
    for cursor in (None, bea_cursor):
        r = await http.post(
            "/v1/sync/pull", headers=auth, json={"schema_version": 1, "cursor": cursor}
        )
        _expect_401(r, "session_revoked")
    r = await http.post(
        "/v1/sync/push",
        headers=auth,
        json={
            "device_id": ana.device_id,
            "batch_id": new_id("b"),
            "schema_version": 1,
            "changes": [
                {
                    "table": "contacts",
                    "id": note,
                    "hlc": stamp(ana.device_id),
                    "fields": {"display_name": "X"},
                }
            ],
        },
    )
    _expect_401(r, "session_revoked")
    _expect_401(await http.get("/v1/sync/conflicts", headers=auth), "session_revoked")
    _expect_401(await http.get("/v1/sync/events", headers=auth), "session_revoked")
    _expect_401(await http.get("/v1/care/caregivers", headers=auth), "session_revoked")
    fields = await db.fetchval(
        "SELECT fields->>'display_name' FROM contacts WHERE space_id = $1 AND id = $2",
        _claims(bea)["spc"],
        note,
    )
    assert fields == "B"
    assert (await _me(http, ana.access_token)).status_code == 200  # Ana's real token works


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
async def test_a_time_claim_that_is_not_a_number_is_refused(
    http: httpx.AsyncClient, key_dir: Path, claim: str
) -> None:
    ana = await register(http)
    claims = _claims(ana)
    claims[claim] = str(claims.get(claim, int(time.time()) - 10))  # "1765000000"
    token = jwt.encode(claims, _server_key(key_dir), algorithm="EdDSA")
    _expect_401(await _me(http, token), "invalid_token")
    claims[claim] = int(claims[claim])  # the same value as a number: accepted
    token = jwt.encode(claims, _server_key(key_dir), algorithm="EdDSA")
    assert (await _me(http, token)).status_code == 200


async def test_a_person_registered_before_the_space_was_kept_on_users_still_logs_in(
    http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """During the rollout of migration 0008 the previous release still registers people
    without ``users.space_id``; on the new release they log in to their own space."""
    ana = await register(http)
    contact = new_id("c")
    await push(
        http,
        ana,
        [
            {
                "table": "contacts",
                "id": contact,
                "hlc": stamp(ana.device_id),
                "fields": {"display_name": "Bo"},
            }
        ],
    )
    await db.execute("UPDATE users SET space_id = NULL WHERE id = $1", ana.user_id)
    tablet = await login(http, ana.email, new_id("dev"))
    state, _ = await pull_all(http, tablet)
    assert ("contacts", contact) in state

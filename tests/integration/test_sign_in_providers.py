"""Sign in with Apple and with Google over the real API, against a local Apple and Google
(tests/fakes/oidc.py) that publish their keys over HTTP and sign tokens as they do: sign up
and sign in, both providers and a password on one person, every check on the token, keys
fetched, cached and refetched on rotation, a provider out of reach, the takeover policy,
unlinking, deletion and the web page's path for people without a password."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import ApiProcess
from tests.fakes.oidc import FakeIdentityProviders, FakeProvider
from tests.helpers import PASSWORD, expect_problem, login, new_id, register
from tests.integration.signin_support import (
    TERMS,
    link,
    new_nonce,
    new_subject,
    provider_sign_in,
    sign_in_body,
)

TERMS_VERSION = "2026-12-01"


@pytest.fixture
async def pool(database_url: str) -> Any:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nobody listens once it is closed


async def _account(http: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    r = await http.get("/v1/account", headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


# -- sign up and sign in ---------------------------------------------------------------------


async def test_apple_sign_up_then_sign_in_without_the_email_apple_sends_only_once(
    http: httpx.AsyncClient, identity_providers: FakeIdentityProviders, pool: asyncpg.Pool[Any]
) -> None:
    apple = identity_providers.apple
    subject, relay = new_subject(apple), f"{new_id('x')}@privaterelay.appleid.com"
    first = await provider_sign_in(
        http, apple, subject, email=relay, expect_created=True, terms_version=TERMS_VERSION
    )
    # The tokens are a session like a password login's.
    assert (await http.get("/v1/devices", headers=first.headers)).status_code == 200
    account = await _account(http, first.headers)
    assert account["email"] == relay
    assert account["display_name"] == "Ana"
    assert account["has_password"] is False
    [identity] = account["identities"]
    assert (identity["provider"], identity["subject"], identity["email"]) == (
        "apple",
        subject,
        relay,
    )
    assert identity["private_email"] is True
    # The same consent registration records.
    row = await pool.fetchrow(
        "SELECT terms_version, wellbeing_consent_at FROM users WHERE id = $1", first.user_id
    )
    assert row is not None
    assert row["terms_version"] == TERMS_VERSION
    assert row["wellbeing_consent_at"] is not None

    # Later tokens carry no email (and the app sends no name or time zone): same person.
    later = await provider_sign_in(
        http, apple, subject, expect_created=False, time_zone=None, display_name=None
    )
    assert later.user_id == first.user_id
    account = await _account(http, later.headers)
    assert account["email"] == relay
    assert account["identities"][0]["email"] == relay
    assert account["identities"][0]["last_sign_in_at"] is not None
    # No password works on an account made with Apple.
    r = await http.post(
        "/v1/auth/login",
        json={"email": relay, "password": "", "device": {"id": new_id("d"), "platform": "ios"}},
    )
    expect_problem(r, 401, "invalid_credentials")


async def test_apple_sign_up_without_any_email_still_makes_an_account(
    http: httpx.AsyncClient, identity_providers: FakeIdentityProviders
) -> None:
    apple = identity_providers.apple
    subject = new_subject(apple)
    first = await provider_sign_in(http, apple, subject, expect_created=True)
    assert (await _account(http, first.headers))["email"] is None
    again = await provider_sign_in(http, apple, subject, expect_created=False)
    assert again.user_id == first.user_id


async def test_google_sign_up_takes_the_name_from_the_token(
    http: httpx.AsyncClient, identity_providers: FakeIdentityProviders
) -> None:
    google = identity_providers.google
    subject, email = new_subject(google), f"{new_id('g')}@gmail.example"
    nonce = new_nonce()
    token = google.token(subject, nonce, email=email, name="Bea Lima")
    r = await http.post(
        "/v1/auth/google",
        json=sign_in_body(token, nonce, time_zone="America/Sao_Paulo"),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["created"] is True
    assert set(body) == {
        "user_id", "device_id", "access_token", "refresh_token", "expires_in", "token_type",
        "created",
    }  # fmt: skip
    account = await _account(http, {"Authorization": f"Bearer {body['access_token']}"})
    assert (account["display_name"], account["email"], account["time_zone"]) == (
        "Bea Lima",
        email,
        "America/Sao_Paulo",
    )
    # The refresh token rotates as any other.
    r = await http.post("/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert r.status_code == 200, r.text


async def test_a_new_account_needs_what_registration_needs_naming_each_field(
    http: httpx.AsyncClient, identity_providers: FakeIdentityProviders, pool: asyncpg.Pool[Any]
) -> None:
    apple = identity_providers.apple
    subject = new_subject(apple)
    nonce = new_nonce()
    token = apple.token(subject, nonce, email=f"{new_id('n')}@example.org")
    r = await http.post("/v1/auth/apple", json=sign_in_body(token, nonce))
    body = expect_problem(r, 422, "invalid_field")
    assert {e["field"] for e in body["errors"]} == {"time_zone", "display_name"}
    r = await http.post(
        "/v1/auth/apple",
        json=sign_in_body(token, nonce, time_zone="Mars/Olympus", display_name="Ana"),
    )
    assert expect_problem(r, 422, "invalid_field")["errors"][0]["field"] == "time_zone"
    r = await http.post("/v1/auth/apple", json={**sign_in_body(token, nonce), "device": None})
    assert expect_problem(r, 422, "invalid_field")["errors"][0]["field"] == "device"
    assert not await pool.fetchval("SELECT count(*) FROM identities WHERE subject = $1", subject)
    # The same token, completed, signs up.
    r = await http.post("/v1/auth/apple", json=sign_in_body(token, nonce, **TERMS))
    assert r.status_code == 200, r.text
    assert r.json()["created"] is True


async def test_sign_up_records_the_required_consent_and_a_provider_can_be_off(
    api_process: Callable[..., ApiProcess],
    identity_providers: FakeIdentityProviders,
    pool: asyncpg.Pool[Any],
) -> None:
    api = api_process(
        "signin-consent", KITH_TERMS_VERSION=TERMS_VERSION, KITH_SIGNIN_GOOGLE_CLIENT_IDS=""
    ).wait_ready()
    apple, google = identity_providers.apple, identity_providers.google
    async with httpx.AsyncClient(base_url=api.base, timeout=30) as http:
        subject = new_subject(apple)
        nonce = new_nonce()
        token = apple.token(subject, nonce, email=f"{new_id('c')}@example.org")
        fields = {"time_zone": "Europe/Lisbon", "display_name": "Ana"}
        r = await http.post("/v1/auth/apple", json=sign_in_body(token, nonce, **fields))
        body = expect_problem(r, 422, "invalid_field")
        assert {e["field"] for e in body["errors"]} == {"terms_version", "wellbeing_consent"}
        assert not await pool.fetchval(
            "SELECT count(*) FROM identities WHERE subject = $1", subject
        )
        r = await http.post(
            "/v1/auth/apple",
            json=sign_in_body(
                token, nonce, **fields, terms_version=TERMS_VERSION, wellbeing_consent=True
            ),
        )
        assert r.status_code == 200, r.text
        user_id = r.json()["user_id"]
        row = await pool.fetchrow(
            "SELECT terms_version, terms_accepted_at, wellbeing_consent_at FROM users "
            "WHERE id = $1",
            user_id,
        )
        assert row is not None
        assert row["terms_version"] == TERMS_VERSION
        assert row["terms_accepted_at"] is not None
        assert row["wellbeing_consent_at"] is not None
        # The new account can sync at once: its access token carries the accepted version.
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = await http.post(
            "/v1/sync/pull", headers=headers, json={"cursor": None, "schema_version": 1}
        )
        assert r.status_code == 200, r.text

        # Google has no client id on this server: off, a clear 404.
        nonce = new_nonce()
        r = await http.post(
            "/v1/auth/google",
            json=sign_in_body(google.token(new_subject(google), nonce), nonce, **TERMS),
        )
        expect_problem(r, 404, "provider_disabled")


# -- one person, every way in ------------------------------------------------------------------


async def test_one_person_keeps_a_password_apple_and_google(
    http: httpx.AsyncClient, identity_providers: FakeIdentityProviders
) -> None:
    apple, google = identity_providers.apple, identity_providers.google
    ana = await register(http)  # a password account; registering counts as a fresh sign-in
    apple_id, google_id = new_subject(apple), new_subject(google)
    r = await link(http, ana, apple, apple_id, email=f"{new_id('r')}@privaterelay.appleid.com")
    assert r.status_code == 200, r.text
    assert (r.json()["provider"], r.json()["subject"]) == ("apple", apple_id)
    r = await link(http, ana, google, google_id, email=ana.email)
    assert r.status_code == 200, r.text
    # Linking the same identity again changes nothing.
    r = await link(http, ana, google, google_id, email=ana.email)
    assert r.status_code == 200, r.text

    by_apple = await provider_sign_in(http, apple, apple_id, expect_created=False)
    by_google = await provider_sign_in(http, google, google_id, email=ana.email)
    by_password = await login(http, ana.email, new_id("dev"))
    assert by_apple.user_id == by_google.user_id == by_password.user_id == ana.user_id
    account = await _account(http, by_password.headers)
    assert account["has_password"] is True
    assert [(i["provider"], i["subject"]) for i in account["identities"]] == [
        ("apple", apple_id),
        ("google", google_id),
    ]
    assert all(i["last_sign_in_at"] for i in account["identities"])

    # A second Google account cannot be added beside the first...
    r = await link(http, ana, google, new_subject(google))
    assert expect_problem(r, 409, "provider_already_linked")["errors"][0]["field"] == "provider"
    # ...and Ana's Apple ID cannot be linked to someone else's account.
    bea = await register(http)
    r = await link(http, bea, apple, apple_id)
    assert expect_problem(r, 409, "identity_taken")["errors"][0]["field"] == "id_token"
    assert (await _account(http, bea.headers))["identities"] == []


async def test_linking_needs_a_recent_sign_in_or_the_password(
    http: httpx.AsyncClient, identity_providers: FakeIdentityProviders, pool: asyncpg.Pool[Any]
) -> None:
    """A stolen access token alone must not add the thief's Apple ID as a way in."""
    google = identity_providers.google
    ana = await register(http)
    await pool.execute(
        "UPDATE token_families SET created_at = now() - interval '10 minutes' WHERE user_id = $1",
        ana.user_id,
    )
    subject = new_subject(google)
    r = await link(http, ana, google, subject)
    assert expect_problem(r, 403, "reauthentication_required")["errors"][0]["field"] == "password"
    r = await link(http, ana, google, subject, password="not the password")
    expect_problem(r, 403, "wrong_password")
    assert (await _account(http, ana.headers))["identities"] == []
    r = await link(http, ana, google, subject, password=PASSWORD)
    assert r.status_code == 200, r.text
    r = await http.post(
        "/v1/account/identities",
        headers=ana.headers,
        json={"provider": "github", "id_token": "a.b.c", "nonce": new_nonce()},
    )
    assert expect_problem(r, 422, "invalid_field")["errors"][0]["field"] == "provider"
    expect_problem(await http.post("/v1/account/identities", json={}), 401, "unauthenticated")


async def test_an_unknown_identity_with_an_existing_accounts_email_does_not_take_it_over(
    http: httpx.AsyncClient, identity_providers: FakeIdentityProviders, pool: asyncpg.Pool[Any]
) -> None:
    apple, google = identity_providers.apple, identity_providers.google
    ana = await register(http)
    attacker = new_subject(google)
    for provider, subject, email in (
        (google, attacker, ana.email),
        (apple, new_subject(apple), ana.email.upper()),
    ):
        nonce = new_nonce()
        token = provider.token(subject, nonce, email=email)
        r = await http.post(f"/v1/auth/{provider.name}", json=sign_in_body(token, nonce, **TERMS))
        body = expect_problem(r, 409, "link_required")
        assert body["errors"][0]["field"] == "id_token"
        assert "access_token" not in r.text
    assert (
        await pool.fetchval("SELECT count(*) FROM users WHERE lower(email) = lower($1)", ana.email)
        == 1
    )
    assert (await _account(http, ana.headers))["identities"] == []

    # An email Google has not verified is not Ana's to claim: the sign-in makes a separate
    # account without an email, and Ana's is untouched.
    nonce = new_nonce()
    unverified = google.token(new_subject(google), nonce, email=ana.email, email_verified=False)
    r = await http.post("/v1/auth/google", json=sign_in_body(unverified, nonce, **TERMS))
    assert r.status_code == 200, r.text
    assert r.json()["user_id"] != ana.user_id
    other = await _account(http, {"Authorization": f"Bearer {r.json()['access_token']}"})
    assert other["email"] is None

    # What the app does on 409 link_required: Ana signs in as she can, and links Google.
    fresh = await login(http, ana.email, new_id("dev"))
    assert (await link(http, fresh, google, attacker, email=ana.email)).status_code == 200
    again = await provider_sign_in(http, google, attacker, email=ana.email, expect_created=False)
    assert again.user_id == ana.user_id


# -- the token's checks ------------------------------------------------------------------------

_FOREIGN_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _bad_tokens(provider: FakeProvider, subject: str, nonce: str) -> Iterator[tuple[str, str]]:
    """(case, token) pairs, each failing exactly one check."""
    now = int(time.time())
    yield "wrong_audience", provider.sign(provider.claims(subject, nonce, aud="someone.else"))
    yield "wrong_issuer", provider.sign(provider.claims(subject, nonce, iss="https://evil.example"))
    yield "expired", provider.sign(provider.claims(subject, nonce, iat=now - 7200, exp=now - 3600))
    yield (
        "issued_in_the_future",
        provider.sign(provider.claims(subject, nonce, iat=now + 3600, exp=now + 7200)),
    )
    yield "bad_signature", provider.sign(provider.claims(subject, nonce), key=_FOREIGN_KEY)
    yield "no_nonce", provider.sign(_without(provider.claims(subject, nonce), "nonce"))
    yield "no_subject", provider.sign(_without(provider.claims(subject, nonce), "sub"))
    unsigned = jwt.encode(provider.claims(subject, nonce), "", algorithm="none")
    yield "alg_none", unsigned
    # HS256 keyed with the provider's public key: the classic algorithm confusion.
    public_pem = (
        provider.keys[-1][1]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": provider.kid}
    body = json.dumps(provider.claims(subject, nonce)).encode()
    yield "alg_hs256", _hs256(header, body, public_pem)
    yield "tampered_claims", _swap_payload(provider.sign(provider.claims(subject, nonce)))


def _without(claims: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in claims.items() if k != name}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256(header: dict[str, Any], payload: bytes, secret: bytes) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(payload)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _swap_payload(token: str) -> str:
    """The token with its claims changed after signing (another subject)."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "001234.someone-else"
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


@pytest.mark.parametrize("provider_name", ["apple", "google"])
async def test_every_check_on_the_token_refuses_with_invalid_id_token(
    http: httpx.AsyncClient,
    identity_providers: FakeIdentityProviders,
    pool: asyncpg.Pool[Any],
    provider_name: str,
) -> None:
    provider: FakeProvider = getattr(identity_providers, provider_name)
    subject, nonce = new_subject(provider), new_nonce()
    for case, token in _bad_tokens(provider, subject, nonce):
        r = await http.post(f"/v1/auth/{provider_name}", json=sign_in_body(token, nonce, **TERMS))
        body = expect_problem(r, 401, "invalid_id_token")
        assert body["errors"][0]["field"] == "id_token", (case, body)
        assert body["detail"], case
    # The right token with another sign-in's nonce: the nonce is named.
    token = provider.token(subject, nonce)
    r = await http.post(f"/v1/auth/{provider_name}", json=sign_in_body(token, new_nonce(), **TERMS))
    assert expect_problem(r, 401, "invalid_id_token")["errors"][0]["field"] == "nonce"
    # Apple's token carries the nonce's hash: the hash itself sent as the nonce is wrong too.
    if provider_name == "apple":
        hashed = hashlib.sha256(nonce.encode()).hexdigest()
        r = await http.post("/v1/auth/apple", json=sign_in_body(token, hashed, **TERMS))
        assert expect_problem(r, 401, "invalid_id_token")["errors"][0]["field"] == "nonce"
    # Not a JWT at all, or a nonce too short to be random: the schema names the field.
    r = await http.post(f"/v1/auth/{provider_name}", json=sign_in_body("not-a-jwt", nonce))
    assert expect_problem(r, 422, "invalid_field")["errors"][0]["field"] == "id_token"
    r = await http.post(f"/v1/auth/{provider_name}", json=sign_in_body(token, "short"))
    assert expect_problem(r, 422, "invalid_field")["errors"][0]["field"] == "nonce"
    assert not await pool.fetchval("SELECT count(*) FROM identities WHERE subject = $1", subject)
    # And the good token still works: nothing above was refused for another reason.
    r = await http.post(f"/v1/auth/{provider_name}", json=sign_in_body(token, nonce, **TERMS))
    assert r.status_code == 200, r.text


async def test_keys_are_cached_refetched_on_rotation_and_an_unreachable_provider_is_503(
    api_process: Callable[..., ApiProcess], pool: asyncpg.Pool[Any]
) -> None:
    """A server of its own, with its own fake Google (rotating keys must not disturb the
    shared server's cache) and an Apple whose keys URL nobody answers."""
    cooldown_s = 2
    with FakeIdentityProviders().running() as fakes:
        google = fakes.google
        api = api_process(
            "signin-keys",
            KITH_SIGNIN_GOOGLE_JWKS_URL=f"{fakes.base}/google/oauth2/v3/certs",
            KITH_SIGNIN_APPLE_JWKS_URL=f"http://127.0.0.1:{_closed_port()}/auth/keys",
            KITH_SIGNIN_KEYS_COOLDOWN_S=str(cooldown_s),
        ).wait_ready()
        async with httpx.AsyncClient(base_url=api.base, timeout=30) as http:
            subject = new_subject(google)
            await provider_sign_in(http, google, subject, expect_created=True)
            await provider_sign_in(http, google, subject, expect_created=False)
            assert google.fetches == 1  # fetched once, then cached
            fetched_at = time.monotonic()

            old_nonce = new_nonce()
            old_token = google.token(subject, old_nonce)
            google.rotate()
            nonce = new_nonce()
            new_token = google.token(subject, nonce)
            # Within the cooldown an unknown key is not worth a refetch: refused.
            assert time.monotonic() - fetched_at < cooldown_s
            r = await http.post("/v1/auth/google", json=sign_in_body(new_token, nonce))
            expect_problem(r, 401, "invalid_id_token")
            assert google.fetches == 1
            await asyncio.sleep(cooldown_s - (time.monotonic() - fetched_at) + 0.2)
            # Then the new key is fetched and the same token is accepted.
            r = await http.post("/v1/auth/google", json=sign_in_body(new_token, nonce))
            assert r.status_code == 200, r.text
            assert r.json()["created"] is False
            assert google.fetches == 2
            # The retired key no longer signs anyone in.
            r = await http.post("/v1/auth/google", json=sign_in_body(old_token, old_nonce))
            expect_problem(r, 401, "invalid_id_token")

            # Apple out of reach: a 503 to retry, not a 401 and not a 500; nothing written.
            apple = fakes.apple
            apple_subject = new_subject(apple)
            nonce = new_nonce()
            token = apple.token(apple_subject, nonce, email=f"{new_id('u')}@example.org")
            started = time.monotonic()
            r = await http.post("/v1/auth/apple", json=sign_in_body(token, nonce, **TERMS))
            assert time.monotonic() - started < 5
            expect_problem(r, 503, "provider_unavailable")
            assert int(r.headers["retry-after"]) > 0
            # Meanwhile the server goes on answering (the fetch ran off the event loop).
            assert (await http.get("/health/live")).status_code == 200
        assert not await pool.fetchval(
            "SELECT count(*) FROM identities WHERE subject = $1", apple_subject
        )
        log = api.log_path.read_text()
        assert token not in log  # no token in the logs
        assert new_token not in log


# -- unlinking, deleting -----------------------------------------------------------------------


async def test_the_last_way_to_sign_in_cannot_be_unlinked(
    http: httpx.AsyncClient, identity_providers: FakeIdentityProviders
) -> None:
    apple, google = identity_providers.apple, identity_providers.google
    email = f"{new_id('u')}@example.org"
    apple_id = new_subject(apple)
    ana = await provider_sign_in(http, apple, apple_id, email=email, expect_created=True)
    r = await http.delete("/v1/account/identities/apple", headers=ana.headers)
    expect_problem(r, 409, "last_sign_in_method")
    expect_problem(
        await http.delete("/v1/account/identities/google", headers=ana.headers), 404, "not_found"
    )
    r = await http.delete("/v1/account/identities/github", headers=ana.headers)
    assert expect_problem(r, 422, "invalid_field")["errors"][0]["field"] == "provider"

    google_id = new_subject(google)
    assert (await link(http, ana, google, google_id)).status_code == 200
    # Two unlinks at once: one wins, the other finds it would leave no way in.
    first, second = await asyncio.gather(
        http.delete("/v1/account/identities/apple", headers=ana.headers),
        http.delete("/v1/account/identities/google", headers=ana.headers),
    )
    assert sorted([first.status_code, second.status_code]) == [204, 409], (first.text, second.text)
    [left] = (await _account(http, ana.headers))["identities"]
    # The one left still signs Ana in.
    provider = apple if left["provider"] == "apple" else google
    again = await provider_sign_in(http, provider, left["subject"], expect_created=False)
    assert again.user_id == ana.user_id
    if left["provider"] == "google":
        # The unlinked Apple ID is unknown now; its email is Ana's account's: link, not a
        # second account.
        nonce = new_nonce()
        token = apple.token(apple_id, nonce, email=email)
        r = await http.post("/v1/auth/apple", json=sign_in_body(token, nonce, **TERMS))
        expect_problem(r, 409, "link_required")


async def test_an_account_without_a_password_is_deleted_after_a_fresh_sign_in(
    http: httpx.AsyncClient,
    identity_providers: FakeIdentityProviders,
    pool: asyncpg.Pool[Any],
    live_server: str,
) -> None:
    apple = identity_providers.apple
    subject, email = new_subject(apple), f"{new_id('d')}@privaterelay.appleid.com"
    ana = await provider_sign_in(http, apple, subject, email=email, expect_created=True)
    await pool.execute(
        "UPDATE token_families SET created_at = now() - interval '10 minutes' WHERE user_id = $1",
        ana.user_id,
    )
    expect_problem(
        await http.request("DELETE", "/v1/account", headers=ana.headers),
        403,
        "reauthentication_required",
    )
    r = await http.request("DELETE", "/v1/account", headers=ana.headers, json={"password": "x"})
    expect_problem(r, 403, "wrong_password")

    # Signing in with Apple again is the confirmation.
    fresh = await provider_sign_in(http, apple, subject, expect_created=False)
    r = await http.request("DELETE", "/v1/account", headers=fresh.headers)
    assert r.status_code == 202, r.text
    # The identity is unlinked at once: the same Apple ID can start a new account.
    assert not await pool.fetchval("SELECT count(*) FROM identities WHERE subject = $1", subject)
    anew = await provider_sign_in(http, apple, subject, email=email, expect_created=True)
    assert anew.user_id != ana.user_id

    # The web deletion page takes a password; it tells those without one what to do.
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as browser:
        page = (await browser.get("/account/delete")).text
    assert "Apple or Google" in page
    assert "Delete account" in page


async def test_the_export_lists_linked_identities_and_no_token(
    http: httpx.AsyncClient, identity_providers: FakeIdentityProviders
) -> None:
    apple, google = identity_providers.apple, identity_providers.google
    ana = await register(http)
    apple_id, google_id = new_subject(apple), new_subject(google)
    relay = f"{new_id('e')}@privaterelay.appleid.com"
    nonce = new_nonce()
    apple_token = apple.token(apple_id, nonce, email=relay)
    r = await http.post(
        "/v1/account/identities",
        headers=ana.headers,
        json={"provider": "apple", "id_token": apple_token, "nonce": nonce},
    )
    assert r.status_code == 200, r.text
    assert (await link(http, ana, google, google_id, email=ana.email)).status_code == 200

    r = await http.get("/v1/account/export", headers=ana.headers)
    assert r.status_code == 200
    doc = r.json()
    assert list(doc)[:6] == ["format", "version", "exported_at", "account", "devices", "identities"]
    assert [(i["provider"], i["subject"], i["email"]) for i in doc["identities"]] == [
        ("apple", apple_id, relay),
        ("google", google_id, ana.email),
    ]
    assert apple_token not in r.text
    assert apple_token.split(".")[2] not in r.text  # not even the signature
    assert "token" not in json.dumps(doc["identities"])

"""The fake APNs and FCM speak the real protocols: HTTP/2 over TLS, Apple's and Google's
answers for each mistake, the provider-token refresh rule, scripting, collapse."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.fakes.apns import FakeAPNs
from tests.fakes.fcm import JWT_BEARER, MESSAGING_SCOPE, FakeFCM
from tests.fakes.tls import make_certs

ROOT = Path(__file__).resolve().parents[2]
TEAM_ID = "TEAM123456"
KEY_ID = "KEY1234567"
TOPIC = "app.kith.ios"
DEVICE = "a1" * 32
OTHER_DEVICE = "b2" * 32
PROJECT = "kith-test"
CLIENT_EMAIL = "push@kith-test.iam.gserviceaccount.com"
FCM_TOKEN = "fcm-token:APA91b" + "x" * 40
T0 = 1_800_000_000.0


class Clock:
    """A clock the tests move by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pem_public(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def client_for(fake: FakeAPNs | FakeFCM, timeout: float = 5.0) -> httpx.AsyncClient:
    verify = ssl.create_default_context(cafile=str(fake.ca_file))
    return httpx.AsyncClient(http2=True, verify=verify, base_url=fake.url, timeout=timeout)


@pytest.fixture(scope="session")
def apns_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def sa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def other_sa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("push-fake-certs")
    make_certs(path)
    return path


# --- APNs ------------------------------------------------------------------------------


def provider_token(
    key: ec.EllipticCurvePrivateKey, iat: float, *, kid: str = KEY_ID, iss: str = TEAM_ID
) -> str:
    return jwt.encode({"iss": iss, "iat": int(iat)}, key, algorithm="ES256", headers={"kid": kid})


def alert(title: str = "Call Ana?", **extra: Any) -> dict[str, Any]:
    return {"aps": {"alert": {"title": title, "body": "It has been a while"}}, **extra}


def apns_headers(token: str, **overrides: str | None) -> dict[str, str]:
    headers: dict[str, str | None] = {
        "authorization": f"bearer {token}",
        "apns-topic": TOPIC,
        "apns-push-type": "alert",
        "apns-priority": "10",
    }
    headers.update({k.replace("_", "-"): v for k, v in overrides.items()})
    return {k: v for k, v in headers.items() if v is not None}


async def push(
    client: httpx.AsyncClient,
    token: str,
    device: str = DEVICE,
    payload: dict[str, Any] | bytes | None = None,
    *,
    client_timeout: float = 5.0,
    more_headers: Mapping[str, str | None] | None = None,
    **headers: str | None,
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload or alert()).encode()
    return await client.post(
        f"/3/device/{device}",
        content=body,
        headers=apns_headers(token, **headers, **(more_headers or {})),
        timeout=client_timeout,
    )


@pytest_asyncio.fixture
async def clock() -> Clock:
    return Clock()


@pytest_asyncio.fixture
async def apns(
    apns_key: ec.EllipticCurvePrivateKey, cert_dir: Path, clock: Clock
) -> AsyncIterator[FakeAPNs]:
    fake = FakeAPNs(
        team_id=TEAM_ID,
        key_id=KEY_ID,
        public_key=pem_public(apns_key),
        topic=TOPIC,
        clock=clock,
        cert_dir=cert_dir,
    )
    async with fake:
        yield fake


@pytest_asyncio.fixture
async def apns_client(apns: FakeAPNs) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(apns) as client:
        yield client


async def test_apns_accepts_a_notification_over_http2_and_shows_it_once(
    apns: FakeAPNs, apns_client: httpx.AsyncClient, apns_key: ec.EllipticCurvePrivateKey
) -> None:
    token = provider_token(apns_key, T0 - 60)
    apns_id = str(uuid.uuid4())
    r = await push(apns_client, token, apns_id=apns_id, apns_collapse_id="nudge-1")
    assert (r.status_code, r.http_version, r.content) == (200, "HTTP/2", b"")
    assert r.headers["apns-id"] == apns_id

    r = await push(apns_client, token, OTHER_DEVICE, alert("Text Bo?"))  # no apns-id: made up
    assert r.status_code == 200
    assert uuid.UUID(r.headers["apns-id"])

    assert apns.shown(DEVICE) == [alert()]
    (n,) = apns.notifications(DEVICE)
    assert (n.apns_id, n.collapse_id, n.push_type, n.priority, n.topic, n.arrived_at) == (
        apns_id,
        "nudge-1",
        "alert",
        10,
        TOPIC,
        T0,
    )
    assert "authorization" not in n.headers
    assert apns.provider_token_count == 1
    assert apns.provider_tokens[token].iat == int(T0 - 60)
    assert apns.provider_tokens[token].uses == 2
    assert apns.stats()["accepted"] == 2


async def test_apns_serves_many_streams_on_one_connection(
    apns: FakeAPNs, apns_client: httpx.AsyncClient, apns_key: ec.EllipticCurvePrivateKey
) -> None:
    token = provider_token(apns_key, T0)
    devices = [f"{i:064x}" for i in range(150)]
    replies = await asyncio.gather(*(push(apns_client, token, d) for d in devices))
    assert {r.status_code for r in replies} == {200}
    assert {r.http_version for r in replies} == {"HTTP/2"}
    assert apns.accepted_count == 150
    assert apns.provider_tokens[token].uses == 150
    assert all(apns.shown(d) == [alert()] for d in devices)


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("no authorization", 403, "MissingProviderToken"),
        ("signed by another key", 403, "InvalidProviderToken"),
        ("wrong kid", 403, "InvalidProviderToken"),
        ("wrong iss", 403, "InvalidProviderToken"),
        ("HS256", 403, "InvalidProviderToken"),
        ("not a jwt", 403, "InvalidProviderToken"),
        ("iat over an hour old", 403, "ExpiredProviderToken"),
        ("no topic", 400, "MissingTopic"),
        ("other topic", 400, "TopicDisallowed"),
        ("no push type", 400, "InvalidPushType"),
        ("voip push type", 400, "InvalidPushType"),
        ("priority 7", 400, "BadPriority"),
        ("collapse id of 65 bytes", 400, "BadCollapseId"),
        ("apns-id not a uuid", 400, "BadMessageId"),
        ("expiration not a number", 400, "BadExpirationDate"),
        ("device token not hex", 400, "BadDeviceToken"),
        ("device token of 63 chars", 400, "BadDeviceToken"),
        ("empty body", 400, "PayloadEmpty"),
        ("4097-byte body", 413, "PayloadTooLarge"),
        ("body not json", 400, "BadPayload"),
        ("json without aps", 400, "BadPayload"),
        ("GET", 405, "MethodNotAllowed"),
        ("wrong path", 404, "BadPath"),
    ],
)
async def test_apns_answers_each_mistake_as_apple_does(
    apns: FakeAPNs,
    apns_client: httpx.AsyncClient,
    apns_key: ec.EllipticCurvePrivateKey,
    case: str,
    status: int,
    reason: str,
) -> None:
    good = provider_token(apns_key, T0)
    c = apns_client
    match case:
        case "no authorization":
            r = await push(c, good, authorization=None)
        case "signed by another key":
            r = await push(c, provider_token(ec.generate_private_key(ec.SECP256R1()), T0))
        case "wrong kid":
            r = await push(c, provider_token(apns_key, T0, kid="OTHERKEY00"))
        case "wrong iss":
            r = await push(c, provider_token(apns_key, T0, iss="OTHERTEAM0"))
        case "HS256":
            hs = jwt.encode({"iss": TEAM_ID, "iat": int(T0)}, "s" * 32, headers={"kid": KEY_ID})
            r = await push(c, hs)
        case "not a jwt":
            r = await push(c, "not-a-jwt")
        case "iat over an hour old":
            r = await push(c, provider_token(apns_key, T0 - 3601))
        case "no topic":
            r = await push(c, good, apns_topic=None)
        case "other topic":
            r = await push(c, good, apns_topic="com.example.other")
        case "no push type":
            r = await push(c, good, apns_push_type=None)
        case "voip push type":
            r = await push(c, good, apns_push_type="voip")
        case "priority 7":
            r = await push(c, good, apns_priority="7")
        case "collapse id of 65 bytes":
            r = await push(c, good, apns_collapse_id="c" * 65)
        case "apns-id not a uuid":
            r = await push(c, good, apns_id="nope")
        case "expiration not a number":
            r = await push(c, good, apns_expiration="tomorrow")
        case "device token not hex":
            r = await push(c, good, "z" * 64)
        case "device token of 63 chars":
            r = await push(c, good, "a" * 63)
        case "empty body":
            r = await push(c, good, payload=b"")
        case "4097-byte body":
            r = await push(c, good, payload=b"{" + b" " * 4095 + b"}")
        case "body not json":
            r = await push(c, good, payload=b"{aps:")
        case "json without aps":
            r = await push(c, good, payload=b'{"alert": "hi"}')
        case "GET":
            r = await c.get(f"/3/device/{DEVICE}", headers=apns_headers(good))
        case "wrong path":
            r = await c.post(f"/3/devices/{DEVICE}", content=b"{}", headers=apns_headers(good))
        case _:
            raise AssertionError(case)
    assert (r.status_code, r.json()) == (status, {"reason": reason})
    assert r.http_version == "HTTP/2"
    assert "apns-id" in r.headers
    assert apns.accepted_count == 0
    assert [x.reason for x in apns.rejected] == [reason]


async def test_apns_limits_are_inclusive(
    apns: FakeAPNs, apns_client: httpx.AsyncClient, apns_key: ec.EllipticCurvePrivateKey
) -> None:
    token = provider_token(apns_key, T0 - 3600)  # exactly one hour old: still good
    body = json.dumps(alert(pad="")).encode()
    body = json.dumps(alert(pad="p" * (4096 - len(body)))).encode()
    assert len(body) == 4096
    r = await push(apns_client, token, payload=body, apns_collapse_id="c" * 64, apns_priority="5")
    assert r.status_code == 200
    r = await push(apns_client, token, apns_push_type="background", apns_expiration="0")
    assert r.status_code == 200


async def test_apns_refuses_a_new_provider_token_within_20_minutes(
    apns: FakeAPNs,
    apns_client: httpx.AsyncClient,
    apns_key: ec.EllipticCurvePrivateKey,
    clock: Clock,
) -> None:
    first = provider_token(apns_key, T0)
    assert (await push(apns_client, first)).status_code == 200

    clock.now = T0 + 300  # a restarted worker mints its own token 5 minutes later
    second = provider_token(apns_key, clock.now)
    r = await push(apns_client, second)
    assert (r.status_code, r.json()) == (429, {"reason": "TooManyProviderTokenUpdates"})
    assert (await push(apns_client, second)).status_code == 429  # and it stays refused
    assert (await push(apns_client, first)).status_code == 200  # the old one still works

    clock.now = T0 + 25 * 60  # a token minted 25 minutes after the first is welcome
    third = provider_token(apns_key, clock.now)
    assert (await push(apns_client, third)).status_code == 200
    assert (await push(apns_client, first)).status_code == 200  # until it is an hour old

    clock.now = T0 + 3601
    r = await push(apns_client, first)
    assert (r.status_code, r.json()) == (403, {"reason": "ExpiredProviderToken"})
    assert (await push(apns_client, third)).status_code == 200

    assert apns.provider_token_count == 3
    answers = {t.token: (t.first_answer, t.accepted) for t in apns.provider_tokens.values()}
    assert answers == {
        first: ("accepted", True),
        second: ("TooManyProviderTokenUpdates", False),
        third: ("accepted", True),
    }


async def test_apns_scripted_answers_are_given_once_each_in_order(
    apns: FakeAPNs, apns_client: httpx.AsyncClient, apns_key: ec.EllipticCurvePrivateKey
) -> None:
    token = provider_token(apns_key, T0)
    apns.script(DEVICE, status=410, reason="Unregistered", timestamp_ms=1_700_000_000_000)
    apns.script(DEVICE, status=429, reason="TooManyRequests", retry_after=30)
    apns.script(DEVICE, status=503, reason="ServiceUnavailable", retry_after=5, times=2)
    apns.script(status=400, reason="DeviceTokenNotForTopic")  # any device, after DEVICE's own
    apns.script(OTHER_DEVICE, status=403, reason="ExpiredProviderToken")
    assert apns.scripts_pending == 6

    r = await push(apns_client, token)
    assert (r.status_code, r.json()) == (
        410,
        {"reason": "Unregistered", "timestamp": 1_700_000_000_000},
    )
    r = await push(apns_client, token)
    assert (r.status_code, r.json(), r.headers["retry-after"]) == (
        429,
        {"reason": "TooManyRequests"},
        "30",
    )
    for _ in range(2):
        r = await push(apns_client, token)
        assert (r.status_code, r.json(), r.headers["retry-after"]) == (
            503,
            {"reason": "ServiceUnavailable"},
            "5",
        )
    r = await push(apns_client, token, OTHER_DEVICE)
    assert (r.status_code, r.json()) == (403, {"reason": "ExpiredProviderToken"})
    r = await push(apns_client, token)
    assert (r.status_code, r.json()) == (400, {"reason": "DeviceTokenNotForTopic"})
    assert (await push(apns_client, token)).status_code == 200
    assert apns.scripts_pending == 0

    apns.script(DEVICE, status=410, reason="ExpiredToken")  # timestamp defaults to now
    r = await push(apns_client, token)
    assert r.json() == {"reason": "ExpiredToken", "timestamp": int(T0 * 1000)}

    # A request that fails a real check does not use up a scripted answer.
    apns.script(DEVICE, status=413, reason="PayloadTooLarge")
    assert (await push(apns_client, token, apns_topic="x")).json()["reason"] == "TopicDisallowed"
    assert (await push(apns_client, token)).json() == {"reason": "PayloadTooLarge"}

    assert apns.shown(DEVICE) == [alert()]
    assert sum(r.scripted for r in apns.rejected) == 8
    with pytest.raises(ValueError, match="status and reason"):
        apns.script(DEVICE)


async def test_apns_never_answer_times_out_on_the_client(
    apns: FakeAPNs, apns_client: httpx.AsyncClient, apns_key: ec.EllipticCurvePrivateKey
) -> None:
    token = provider_token(apns_key, T0)
    apns.script(DEVICE, never_answer=True)
    with pytest.raises(httpx.ReadTimeout):
        await push(apns_client, token, client_timeout=0.3)
    # The connection is still good for the next notification.
    assert (await push(apns_client, token)).status_code == 200
    # httpx leaves the timed-out stream open; closing the connection releases it.
    assert apns.waiting_never_answer == 1
    await apns_client.aclose()
    async with asyncio.timeout(2):
        while apns.waiting_never_answer:
            await asyncio.sleep(0.01)


async def test_apns_stop_releases_streams_that_never_answer(
    apns_key: ec.EllipticCurvePrivateKey, cert_dir: Path
) -> None:
    fake = FakeAPNs(
        team_id=TEAM_ID,
        key_id=KEY_ID,
        public_key=apns_key.private_bytes(  # a private PEM works too
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        topic=TOPIC,
        cert_dir=cert_dir,
    )
    await fake.start()
    fake.script(never_answer=True)
    async with client_for(fake, timeout=30) as client:
        pending = asyncio.create_task(push(client, provider_token(apns_key, time.time())))
        async with asyncio.timeout(2):
            while not fake.waiting_never_answer:
                await asyncio.sleep(0.01)
        stopping = asyncio.create_task(fake.stop())
        r = await asyncio.wait_for(pending, 2)
        assert (r.status_code, r.json()) == (503, {"reason": "Shutdown"})
    await asyncio.wait_for(stopping, 1)
    assert fake.waiting_never_answer == 0


async def test_stop_does_not_hang_on_a_client_left_open(cert_dir: Path) -> None:
    fake = FakeAPNs(
        team_id=TEAM_ID,
        key_id=KEY_ID,
        public_key=pem_public(ec.generate_private_key(ec.SECP256R1())),
        topic=TOPIC,
        cert_dir=cert_dir,
    )
    await fake.start()
    async with client_for(fake) as client:
        assert (await client.get("/_fake/stats")).status_code == 200
        started = time.monotonic()
        await fake.stop()
        assert time.monotonic() - started < 3


async def test_apns_collapse_id_replaces_what_the_phone_shows(
    apns: FakeAPNs, apns_client: httpx.AsyncClient, apns_key: ec.EllipticCurvePrivateKey
) -> None:
    token = provider_token(apns_key, T0)
    sends: list[tuple[dict[str, Any], dict[str, str | None]]] = [
        (alert("Call Ana?"), {"apns_collapse_id": "nudge-ana"}),
        (alert("Text Bo?"), {"apns_collapse_id": "nudge-bo"}),
        (alert("Call Ana? (again)"), {"apns_collapse_id": "nudge-ana"}),
        (alert("No collapse id"), {}),
        (alert("No collapse id"), {}),
        ({"aps": {"content-available": 1}}, {"apns_push_type": "background", "apns_priority": "5"}),
    ]
    for payload, headers in sends:
        assert (
            await push(apns_client, token, payload=payload, more_headers=headers)
        ).status_code == 200
    assert apns.shown(DEVICE) == [
        alert("Call Ana? (again)"),
        alert("Text Bo?"),
        alert("No collapse id"),
        alert("No collapse id"),
    ]
    assert len(apns.notifications(DEVICE)) == 6
    assert apns.shown(OTHER_DEVICE) == []


# --- FCM -------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def fcm(sa_key: rsa.RSAPrivateKey, cert_dir: Path, clock: Clock) -> AsyncIterator[FakeFCM]:
    fake = FakeFCM(
        project_id=PROJECT,
        client_email=CLIENT_EMAIL,
        public_key=pem_public(sa_key),
        clock=clock,
        cert_dir=cert_dir,
    )
    async with fake:
        yield fake


@pytest_asyncio.fixture
async def fcm_client(fcm: FakeFCM) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(fcm) as client:
        yield client


def assertion(
    key: rsa.RSAPrivateKey, aud: str, iat: float = T0, lifetime: int = 3600, **claims: Any
) -> str:
    body = {
        "iss": CLIENT_EMAIL,
        "scope": MESSAGING_SCOPE,
        "aud": aud,
        "iat": int(iat),
        "exp": int(iat) + lifetime,
        **claims,
    }
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": "sa-key-1"})


async def get_token(
    client: httpx.AsyncClient, jwt_assertion: str, grant: str = JWT_BEARER
) -> httpx.Response:
    form = urlencode({"grant_type": grant, "assertion": jwt_assertion})
    return await client.post(
        "/token",
        content=form,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )


def fcm_message(token: str | None = FCM_TOKEN, **fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "token": token,
        "notification": {"title": "Call Ana?", "body": "It has been a while"},
        "data": {"nudge_id": "n-1"},
        "android": {"collapse_key": "n-1", "priority": "high", "ttl": "86400s"},
        "apns": {"headers": {"apns-collapse-id": "n-1"}, "payload": {"aps": {"category": "K"}}},
    }
    message.update(fields)
    return {k: v for k, v in message.items() if v is not None}


@pytest_asyncio.fixture
async def access_token(
    fcm: FakeFCM, fcm_client: httpx.AsyncClient, sa_key: rsa.RSAPrivateKey
) -> str:
    r = await get_token(fcm_client, assertion(sa_key, fcm.token_url))
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


async def send(
    client: httpx.AsyncClient, access: str | None, body: Any, project: str = PROJECT
) -> httpx.Response:
    headers = {"authorization": f"Bearer {access}"} if access else {}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.post(
        f"/v1/projects/{project}/messages:send",
        content=content,
        headers={"content-type": "application/json", **headers},
    )


async def test_fcm_oauth_then_send_over_http2(
    fcm: FakeFCM, fcm_client: httpx.AsyncClient, sa_key: rsa.RSAPrivateKey
) -> None:
    r = await get_token(fcm_client, assertion(sa_key, fcm.token_url))
    assert (r.status_code, r.http_version) == (200, "HTTP/2")
    grant = r.json()
    assert (grant["expires_in"], grant["token_type"]) == (3600, "Bearer")
    assert fcm.tokens_issued == 1

    r = await send(fcm_client, grant["access_token"], {"message": fcm_message()})
    assert (r.status_code, r.http_version) == (200, "HTTP/2")
    assert r.json()["name"].startswith(f"projects/{PROJECT}/messages/")
    (m,) = fcm.messages(FCM_TOKEN)
    assert (m.name, m.collapse_key, m.arrived_at) == (r.json()["name"], "n-1", T0)
    assert fcm.shown(FCM_TOKEN) == [fcm_message()]
    assert fcm.stats() == {
        "accepted": 1,
        "rejected": {},
        "tokens_issued": 1,
        "assertions": 1,
        "waiting_never_answer": 0,
    }


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("signed by another key", "invalid_grant"),
        ("wrong aud", "invalid_grant"),
        ("wrong iss", "invalid_grant"),
        ("lifetime over an hour", "invalid_grant"),
        ("expired", "invalid_grant"),
        ("RS256 only", "invalid_grant"),
        ("no messaging scope", "invalid_scope"),
        ("wrong grant type", "unsupported_grant_type"),
    ],
)
async def test_fcm_token_endpoint_refuses_bad_assertions(
    fcm: FakeFCM,
    fcm_client: httpx.AsyncClient,
    sa_key: rsa.RSAPrivateKey,
    other_sa_key: rsa.RSAPrivateKey,
    apns_key: ec.EllipticCurvePrivateKey,
    case: str,
    error: str,
) -> None:
    aud = fcm.token_url
    match case:
        case "signed by another key":
            r = await get_token(fcm_client, assertion(other_sa_key, aud))
        case "wrong aud":
            r = await get_token(fcm_client, assertion(sa_key, "https://elsewhere.test/token"))
        case "wrong iss":
            r = await get_token(fcm_client, assertion(sa_key, aud, iss="x@y.test"))
        case "lifetime over an hour":
            r = await get_token(fcm_client, assertion(sa_key, aud, lifetime=3601))
        case "expired":
            r = await get_token(fcm_client, assertion(sa_key, aud, iat=T0 - 3600))
        case "RS256 only":
            es = jwt.encode({"iss": CLIENT_EMAIL, "aud": aud}, apns_key, algorithm="ES256")
            r = await get_token(fcm_client, es)
        case "no messaging scope":
            scope = "https://www.googleapis.com/auth/cloud-platform"
            r = await get_token(fcm_client, assertion(sa_key, aud, scope=scope))
        case "wrong grant type":
            r = await get_token(fcm_client, assertion(sa_key, aud), grant="client_credentials")
        case _:
            raise AssertionError(case)
    assert r.status_code == 400
    assert r.json()["error"] == error
    assert r.json()["error_description"]
    assert fcm.tokens_issued == 0


async def test_fcm_access_tokens_expire_and_can_be_scripted_to_fail(
    fcm: FakeFCM,
    fcm_client: httpx.AsyncClient,
    sa_key: rsa.RSAPrivateKey,
    access_token: str,
    clock: Clock,
) -> None:
    assert (await send(fcm_client, access_token, {"message": fcm_message()})).status_code == 200
    clock.now = T0 + 3600
    r = await send(fcm_client, access_token, {"message": fcm_message()})
    assert r.status_code == 401
    assert r.json()["error"]["status"] == "UNAUTHENTICATED"

    fcm.script_oauth(status=500, error="internal_failure", description="Backend Error")
    r = await get_token(fcm_client, assertion(sa_key, fcm.token_url, iat=clock.now))
    assert (r.status_code, r.json()["error"]) == (500, "internal_failure")
    r = await get_token(fcm_client, assertion(sa_key, fcm.token_url, iat=clock.now))
    assert r.status_code == 200
    fresh = r.json()["access_token"]
    assert (await send(fcm_client, fresh, {"message": fcm_message()})).status_code == 200
    fcm.revoke_access_tokens()
    assert (await send(fcm_client, fresh, {"message": fcm_message()})).status_code == 401
    assert fcm.tokens_issued == 2


def _violations(r: httpx.Response) -> list[str]:
    return [
        v["field"]
        for d in r.json()["error"].get("details", [])
        if d["@type"].endswith("google.rpc.BadRequest")
        for v in d["fieldViolations"]
    ]


@pytest.mark.parametrize(
    ("case", "status", "rpc_status", "field"),
    [
        ("no authorization", 401, "UNAUTHENTICATED", None),
        ("unknown access token", 401, "UNAUTHENTICATED", None),
        ("other project", 403, "PERMISSION_DENIED", None),
        ("not json", 400, "INVALID_ARGUMENT", None),
        ("no token", 400, "INVALID_ARGUMENT", None),
        ("malformed token", 400, "INVALID_ARGUMENT", "message.token"),
        ("data value not a string", 400, "INVALID_ARGUMENT", "message.data[count]"),
        ("reserved data key from", 400, "INVALID_ARGUMENT", "message.data[from]"),
        ("reserved data key google.*", 400, "INVALID_ARGUMENT", "message.data[google.x]"),
        ("reserved data key gcm", 400, "INVALID_ARGUMENT", "message.data[gcm]"),
        ("message over 4096 bytes", 400, "INVALID_ARGUMENT", "message"),
        ("bad ttl", 400, "INVALID_ARGUMENT", "message.android.ttl"),
        ("bad priority", 400, "INVALID_ARGUMENT", "message.android.priority"),
        ("unknown field", 400, "INVALID_ARGUMENT", None),
    ],
)
async def test_fcm_answers_each_mistake_as_google_does(
    fcm: FakeFCM,
    fcm_client: httpx.AsyncClient,
    access_token: str,
    case: str,
    status: int,
    rpc_status: str,
    field: str | None,
) -> None:
    c, tok = fcm_client, access_token
    match case:
        case "no authorization":
            r = await send(c, None, {"message": fcm_message()})
        case "unknown access token":
            r = await send(c, "ya29.made-up", {"message": fcm_message()})
        case "other project":
            r = await send(c, tok, {"message": fcm_message()}, project="someone-else")
        case "not json":
            r = await send(c, tok, b"{message:")
        case "no token":
            r = await send(c, tok, {"message": fcm_message(token=None)})
        case "malformed token":
            r = await send(c, tok, {"message": fcm_message(token="has spaces in it")})
        case "data value not a string":
            r = await send(c, tok, {"message": fcm_message(data={"count": 3})})
        case "reserved data key from":
            r = await send(c, tok, {"message": fcm_message(data={"from": "me"})})
        case "reserved data key google.*":
            r = await send(c, tok, {"message": fcm_message(data={"google.x": "1"})})
        case "reserved data key gcm":
            r = await send(c, tok, {"message": fcm_message(data={"gcm": "1"})})
        case "message over 4096 bytes":
            r = await send(c, tok, {"message": fcm_message(data={"pad": "p" * 4096})})
        case "bad ttl":
            android = {"collapse_key": "n-1", "ttl": "1 day"}
            r = await send(c, tok, {"message": fcm_message(android=android)})
        case "bad priority":
            android = {"collapse_key": "n-1", "priority": "urgent"}
            r = await send(c, tok, {"message": fcm_message(android=android)})
        case "unknown field":
            r = await send(c, tok, {"message": fcm_message(priority="high")})
        case _:
            raise AssertionError(case)
    error = r.json()["error"]
    assert (r.status_code, error["code"], error["status"]) == (status, status, rpc_status)
    assert error["message"]
    assert _violations(r) == ([field] if field else [])
    assert r.http_version == "HTTP/2"
    assert fcm.accepted_count == 0


async def test_fcm_scripted_errors(
    fcm: FakeFCM, fcm_client: httpx.AsyncClient, access_token: str
) -> None:
    fcm.script(FCM_TOKEN, error="UNREGISTERED")
    fcm.script(FCM_TOKEN, error="INVALID_ARGUMENT")
    fcm.script(FCM_TOKEN, error="INVALID_ARGUMENT", variant="payload")
    fcm.script(FCM_TOKEN, error="SENDER_ID_MISMATCH")
    fcm.script(FCM_TOKEN, error="QUOTA_EXCEEDED", retry_after=60)
    fcm.script(FCM_TOKEN, error="UNAVAILABLE", retry_after=2.5)
    fcm.script(error="INTERNAL", times=2)
    expected = [
        (404, "NOT_FOUND", "UNREGISTERED", []),
        (400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", ["message.token"]),
        (400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", ["message.data"]),
        (403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", []),
        (429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", []),
        (503, "UNAVAILABLE", "UNAVAILABLE", []),
        (500, "INTERNAL", "INTERNAL", []),
        (500, "INTERNAL", "INTERNAL", []),
    ]
    for status, rpc_status, code, fields in expected:
        r = await send(fcm_client, access_token, {"message": fcm_message()})
        error = r.json()["error"]
        assert (r.status_code, error["status"]) == (status, rpc_status)
        fcm_errors = [d for d in error["details"] if d["@type"].endswith("fcm.v1.FcmError")]
        assert fcm_errors == [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}
        ]
        assert _violations(r) == fields
        if code == "QUOTA_EXCEEDED":
            assert r.headers["retry-after"] == "60"
        if code == "UNAVAILABLE":
            assert r.headers["retry-after"] == "2.5"
    assert (await send(fcm_client, access_token, {"message": fcm_message()})).status_code == 200
    assert [r.error for r in fcm.rejected] == [e[2] for e in expected]
    with pytest.raises(ValueError, match="error must be one of"):
        fcm.script(FCM_TOKEN)


async def test_fcm_never_answer_times_out_on_the_client(
    fcm: FakeFCM, fcm_client: httpx.AsyncClient, access_token: str
) -> None:
    fcm.script(FCM_TOKEN, never_answer=True)
    with pytest.raises(httpx.ReadTimeout):
        await fcm_client.post(
            f"/v1/projects/{PROJECT}/messages:send",
            json={"message": fcm_message()},
            headers={"authorization": f"Bearer {access_token}"},
            timeout=0.3,
        )
    assert (await send(fcm_client, access_token, {"message": fcm_message()})).status_code == 200


async def test_fcm_collapse_key_replaces_what_the_phone_shows(
    fcm: FakeFCM, fcm_client: httpx.AsyncClient, access_token: str
) -> None:
    first = fcm_message()
    second = fcm_message(
        notification={"title": "Text Bo?", "body": "!"}, android={"collapse_key": "n-2"}
    )
    again = fcm_message(notification={"title": "Call Ana? (again)", "body": "!"})
    data_only = fcm_message(notification=None, android={"priority": "normal"})
    for m in (first, second, again, data_only):
        assert (await send(fcm_client, access_token, {"message": m})).status_code == 200
    assert fcm.shown(FCM_TOKEN) == [again, second]
    assert len(fcm.messages(FCM_TOKEN)) == 4


# --- as a separate process ---------------------------------------------------------------


async def _run_fake(args: list[str]) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    async with asyncio.timeout(10):
        line = (await proc.stdout.readline()).decode()
    assert line.startswith("READY "), line
    ready: dict[str, Any] = json.loads(line.removeprefix("READY "))
    return proc, ready


async def _finish(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    proc.terminate()
    assert proc.stdout is not None
    out = (await asyncio.wait_for(proc.stdout.read(), 10)).decode()
    assert await proc.wait() == 0
    (stats,) = [line for line in out.splitlines() if line.startswith("STATS ")]
    result: dict[str, Any] = json.loads(stats.removeprefix("STATS "))
    return result


async def test_fakes_run_as_processes(
    tmp_path: Path, apns_key: ec.EllipticCurvePrivateKey, sa_key: rsa.RSAPrivateKey
) -> None:
    (tmp_path / "apns.pem").write_bytes(pem_public(apns_key))
    (tmp_path / "sa.pem").write_bytes(pem_public(sa_key))
    certs = tmp_path / "certs"
    apns_args = ["-m", "tests.fakes.apns", "--cert-dir", str(certs), "--key-file"]
    apns_args += [str(tmp_path / "apns.pem"), "--team-id", TEAM_ID, "--key-id", KEY_ID]
    apns_args += ["--topic", TOPIC, "--no-record"]
    fcm_args = ["-m", "tests.fakes.fcm", "--cert-dir", str(certs), "--key-file"]
    fcm_args += [str(tmp_path / "sa.pem"), "--project-id", PROJECT]
    fcm_args += ["--client-email", CLIENT_EMAIL]
    (apns_proc, apns_ready), (fcm_proc, fcm_ready) = await asyncio.gather(
        _run_fake(apns_args), _run_fake(fcm_args)
    )
    try:
        assert apns_ready["ca_file"] == fcm_ready["ca_file"] == str(certs / "ca.pem")
        verify = ssl.create_default_context(cafile=apns_ready["ca_file"])
        async with httpx.AsyncClient(http2=True, verify=verify) as client:
            token = provider_token(apns_key, time.time())
            r = await client.post(
                f"{apns_ready['url']}/3/device/{DEVICE}",
                json=alert(),
                headers=apns_headers(token),
            )
            assert (r.status_code, r.http_version) == (200, "HTTP/2")
            stats = (await client.get(f"{apns_ready['url']}/_fake/stats")).json()
            assert (stats["accepted"], stats["provider_tokens"]) == (1, 1)

            form = {
                "grant_type": JWT_BEARER,
                "assertion": assertion(sa_key, f"{fcm_ready['url']}/token", iat=time.time()),
            }
            r = await client.post(f"{fcm_ready['url']}/token", data=form)
            assert r.status_code == 200, r.text
    finally:
        apns_stats, fcm_stats = await asyncio.gather(_finish(apns_proc), _finish(fcm_proc))
    assert apns_stats["accepted"] == 1
    assert fcm_stats["tokens_issued"] == 1

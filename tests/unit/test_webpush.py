"""Web Push: the bytes (RFC 8291 vector, an independent implementation), VAPID, and sends to a
fake push service over TLS + HTTP/2 that decrypts what it gets like a browser would."""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator

import http_ece  # type: ignore[import-untyped]
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from service.push.base import Address, Notification, SendResult
from service.push.webpush import (
    MAX_PLAINTEXT,
    PayloadTooLarge,
    Vapid,
    WebPushProvider,
    b64url_decode,
    b64url_encode,
    encrypt,
    generate_vapid_keys,
    origin_of,
    topic_for,
)
from tests.fakes.webpush import NEVER_ANSWER, FakeWebPush, Reply, decrypt

SUBJECT = "mailto:ops@kith.example"
REGISTERED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

# RFC 8291, Appendix A.
RFC_PLAINTEXT = b"When I grow up, I want to be a watermelon"
RFC_AS_PRIVATE = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
RFC_UA_PRIVATE = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
RFC_UA_PUBLIC = (
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
)
RFC_SALT = "DGv6ra1nlYgDCS1FRnbzlw"
RFC_AUTH = "BTBZMqHH6r4Tts7J_aSIgg"
RFC_BODY = (
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmY"
    "WAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSg"
    "Sxsj_Qulcy4a-fN"
)


def _private(b64: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(b64url_decode(b64), "big"), ec.SECP256R1())


def _point(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def _nudge(
    collapse_id: str = "nudge-1", body: str = "It's been a while — coffee this week?"
) -> Notification:
    return Notification(
        collapse_id=collapse_id, title="Maya", body=body, data={"contact_id": "c-42"}, ttl_s=3600
    )


def _jwt_claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    claims: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return claims


# --- the bytes ------------------------------------------------------------------------


def test_rfc8291_appendix_a_vector_is_reproduced_exactly() -> None:
    body = encrypt(
        RFC_PLAINTEXT,
        RFC_UA_PUBLIC,
        RFC_AUTH,
        salt=b64url_decode(RFC_SALT),
        server_private_key=_private(RFC_AS_PRIVATE),
    )
    assert b64url_encode(body) == RFC_BODY
    # ...and the fake's decryptor reads the RFC's body back.
    assert decrypt(b64url_decode(RFC_BODY), _private(RFC_UA_PRIVATE), b64url_decode(RFC_AUTH)) == (
        RFC_PLAINTEXT
    )


@pytest.mark.parametrize("size", [0, 1, 100, MAX_PLAINTEXT])
def test_encrypt_decrypts_with_http_ece(size: int) -> None:
    ua = ec.generate_private_key(ec.SECP256R1())
    auth = b"0123456789abcdef"
    plaintext = bytes(i % 251 for i in range(size))
    body = encrypt(plaintext, b64url_encode(_point(ua)), b64url_encode(auth))
    assert len(body) == 86 + size + 1 + 16  # one record: header, data, delimiter, tag
    assert len(body) <= 4096
    assert http_ece.decrypt(body, private_key=ua, auth_secret=auth, version="aes128gcm") == (
        plaintext
    )


def test_every_message_gets_a_fresh_salt_and_key_and_oversize_is_refused() -> None:
    ua = ec.generate_private_key(ec.SECP256R1())
    p256dh, auth = b64url_encode(_point(ua)), b64url_encode(b"A" * 16)
    one, two = encrypt(b"hi", p256dh, auth), encrypt(b"hi", p256dh, auth)
    assert one[:16] != two[:16]  # salt
    assert one[21:86] != two[21:86]  # ephemeral public key (keyid)
    assert one[16:21] == b"\x00\x00\x10\x00\x41"  # rs = 4096, idlen = 65
    with pytest.raises(PayloadTooLarge):
        encrypt(b"x" * (MAX_PLAINTEXT + 1), p256dh, auth)
    with pytest.raises(ValueError, match="p256dh"):
        encrypt(b"hi", b64url_encode(b"\x04" + b"\x01" * 10), auth)
    with pytest.raises(ValueError, match="auth"):
        encrypt(b"hi", p256dh, b64url_encode(b"short"))


def test_fake_decrypts_what_http_ece_encrypts_across_records() -> None:
    """The fake's decryptor is checked too, with multi-record bodies from http_ece."""
    ua, sender = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    auth = b"fedcba9876543210"
    plaintext = b"record after record " * 20
    body = http_ece.encrypt(
        plaintext, private_key=sender, dh=_point(ua), auth_secret=auth, rs=64, version="aes128gcm"
    )
    assert decrypt(body, ua, auth) == plaintext
    with pytest.raises(ValueError, match="authenticate"):
        decrypt(body, ua, b"wrong secret 16b")


def test_origin_and_topic() -> None:
    assert origin_of("https://Push.Example.com/wpush/v2/abc?x=1") == "https://push.example.com"
    assert origin_of("https://push.example.com:443/a") == "https://push.example.com"
    assert origin_of("https://127.0.0.1:8443/a") == "https://127.0.0.1:8443"
    assert origin_of("https://[::1]:8443/a") == "https://[::1]:8443"
    with pytest.raises(ValueError, match="https"):
        origin_of("http://push.example.com/a")
    topic = topic_for("0b9f6a1e-7d33-4c1e-9f2b-2f1f6f1d9a10")
    assert len(topic) == 32
    assert topic == topic_for("0b9f6a1e-7d33-4c1e-9f2b-2f1f6f1d9a10")
    assert set(topic) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert topic != topic_for("another-nudge")


def test_vapid_jwt_is_cached_per_origin_and_re_minted_an_hour_before_exp() -> None:
    now = [1_800_000_000.0]
    pem, public = generate_vapid_keys()
    vapid = Vapid(pem, SUBJECT, clock=lambda: now[0])
    assert vapid.public_key == public
    first = vapid.token("https://push.example.com/wpush/a")
    assert _jwt_claims(first) == {
        "aud": "https://push.example.com",
        "exp": 1_800_000_000 + 12 * 3600,
        "sub": SUBJECT,
    }
    assert vapid.token("https://push.example.com/wpush/b") == first  # same origin
    other = vapid.token("https://fcm.example.net/fcm/send/x")
    assert _jwt_claims(other)["aud"] == "https://fcm.example.net"
    assert vapid.minted == 2
    now[0] += 10.5 * 3600  # 1.5 h left: still reused
    assert vapid.token("https://push.example.com/wpush/a") == first
    now[0] += 0.6 * 3600  # under an hour left: re-minted
    renewed = vapid.token("https://push.example.com/wpush/a")
    assert renewed != first
    assert _jwt_claims(renewed)["exp"] == int(now[0]) + 12 * 3600
    assert vapid.authorization("https://push.example.com/x") == f"vapid t={renewed}, k={public}"
    with pytest.raises(ValueError, match="subject"):
        Vapid(pem, "ops@kith.example")


# --- against the fake push service ------------------------------------------------------


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeWebPush]:
    async with FakeWebPush() as server:
        yield server


@pytest.fixture(scope="module")
def trust(fake: FakeWebPush) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(fake.ca_file))


@pytest.fixture(scope="module")
def vapid_keys() -> tuple[str, str]:
    return generate_vapid_keys()


@pytest.fixture
async def provider(
    trust: ssl.SSLContext, vapid_keys: tuple[str, str]
) -> AsyncIterator[WebPushProvider]:
    p = WebPushProvider(
        vapid_keys[0], SUBJECT, timeout_s=5.0, verify=trust, allow_private_hosts=True
    )
    yield p
    await p.aclose()


def _address(endpoint: str, p256dh: str, auth: str) -> Address:
    return Address(
        device_id="dev-1",
        provider="webpush",
        token=endpoint,
        registered_at=REGISTERED,
        keys={"p256dh": p256dh, "auth": auth},
    )


async def test_delivered_and_decrypted_with_the_right_headers(
    fake: FakeWebPush, provider: WebPushProvider, vapid_keys: tuple[str, str]
) -> None:
    endpoint, p256dh, auth = fake.subscribe(application_server_key=vapid_keys[1])
    result = await provider.send(_address(endpoint, p256dh, auth), _nudge("n-1"))

    assert result.ok
    assert result.status == 201
    assert result.provider_id is not None
    assert result.provider_id.startswith(fake.url + "/m/")
    assert fake.delivered(endpoint) == [
        {
            "title": "Maya",
            "body": "It's been a while — coffee this week?",
            "nudge_id": "n-1",
            "category": "KITH_NUDGE",
            "data": {"contact_id": "c-42"},
        }
    ]
    (seen,) = fake.requests(endpoint)
    assert seen.http_version == "2"
    assert seen.headers["ttl"] == "3600"
    assert seen.headers["urgency"] == "normal"
    assert seen.headers["topic"] == topic_for("n-1")
    assert seen.headers["content-encoding"] == "aes128gcm"
    assert seen.headers["content-type"] == "application/octet-stream"
    assert seen.vapid_key == vapid_keys[1]
    assert seen.claims is not None
    assert seen.claims["aud"] == fake.url
    assert seen.claims["sub"] == SUBJECT
    assert 11.9 * 3600 < int(seen.claims["exp"]) - time.time() <= 12 * 3600


async def test_vapid_jwt_is_reused_and_topic_collapses_retries(
    fake: FakeWebPush, provider: WebPushProvider
) -> None:
    endpoint, p256dh, auth = fake.subscribe()
    address = _address(endpoint, p256dh, auth)
    first = await provider.send(address, _nudge("n-2", body="first try"))
    retry = await provider.send(address, _nudge("n-2", body="retried"))
    other = await provider.send(address, _nudge("n-3", body="another nudge"))
    assert [first.ok, retry.ok, other.ok] == [True, True, True]

    tokens = {r.vapid_token for r in fake.requests(endpoint)}
    assert len(tokens) == 1
    assert provider.vapid.minted == 1
    # The retried nudge replaced the pending one; the other nudge stands on its own.
    assert [m["body"] for m in fake.shown(endpoint)] == ["retried", "another nudge"]
    assert len(fake.delivered(endpoint)) == 3


async def test_oversize_payload_is_refused_without_sending(
    fake: FakeWebPush, provider: WebPushProvider
) -> None:
    endpoint, p256dh, auth = fake.subscribe()
    fits = _nudge("n-4", body="")
    room = MAX_PLAINTEXT - len(WebPushProvider.payload(fits))
    assert (
        await provider.send(_address(endpoint, p256dh, auth), _nudge("n-4", body="x" * room))
    ).ok
    too_big = _nudge("n-5", body="x" * (room + 1))
    result = await provider.send(_address(endpoint, p256dh, auth), too_big)
    assert result == SendResult(status=413, reason="PayloadTooLarge")
    assert len(fake.requests(endpoint)) == 1  # only the one that fit


@pytest.mark.parametrize(
    ("reply", "status", "reason", "retry_after"),
    [
        (Reply(410), 410, "Gone", None),
        (Reply(404), 404, "NotFound", None),
        (Reply(429, retry_after="7"), 429, "TooManyRequests", 7.0),
        (Reply(503, retry_after="120"), 503, "ServiceUnavailable", 120.0),
        (Reply(500, body=b"oops, something broke\n"), 500, "InternalServerError", None),
        (Reply(403, body=b'{"reason":"BadJwtToken"}'), 403, "BadJwtToken", None),
        (Reply(502, body=b"<html>" + b"x" * 500_000), 502, "BadGateway", None),  # read capped
    ],
)
async def test_answers_map_into_send_result(
    fake: FakeWebPush,
    provider: WebPushProvider,
    reply: Reply,
    status: int,
    reason: str,
    retry_after: float | None,
) -> None:
    endpoint, p256dh, auth = fake.subscribe()
    fake.script(endpoint, reply)
    result = await provider.send(_address(endpoint, p256dh, auth), _nudge())
    assert result == SendResult(status=status, reason=reason, retry_after_s=retry_after)
    assert not result.ok
    assert (await provider.send(_address(endpoint, p256dh, auth), _nudge())).ok  # script used up


async def test_retry_after_as_http_date_and_dead_subscription(
    fake: FakeWebPush, trust: ssl.SSLContext, vapid_keys: tuple[str, str]
) -> None:
    now = time.time()
    provider = WebPushProvider(
        vapid_keys[0], SUBJECT, 5.0, verify=trust, clock=lambda: now, allow_private_hosts=True
    )
    try:
        endpoint, p256dh, auth = fake.subscribe()
        address = _address(endpoint, p256dh, auth)
        fake.script(endpoint, Reply(429, retry_after=email.utils.formatdate(now + 90, usegmt=True)))
        result = await provider.send(address, _nudge())
        assert result.status == 429
        assert result.retry_after_s is not None
        assert 89 <= result.retry_after_s <= 91
        fake.unsubscribe(endpoint)
        assert await provider.send(address, _nudge()) == SendResult(status=410, reason="Gone")
        assert await provider.send(address, _nudge()) == SendResult(status=410, reason="Gone")
    finally:
        await provider.aclose()


async def test_a_push_service_that_never_answers_times_out(
    fake: FakeWebPush, trust: ssl.SSLContext, vapid_keys: tuple[str, str]
) -> None:
    provider = WebPushProvider(
        vapid_keys[0], SUBJECT, timeout_s=0.5, verify=trust, allow_private_hosts=True
    )
    try:
        endpoint, p256dh, auth = fake.subscribe()
        address = _address(endpoint, p256dh, auth)
        fake.script(endpoint, NEVER_ANSWER)
        started = time.monotonic()
        result = await provider.send(address, _nudge())
        assert time.monotonic() - started < 1.5
        assert result == SendResult(status=0, reason="Timeout")
        assert (await provider.send(address, _nudge())).ok  # the client is still usable
    finally:
        await provider.aclose()


async def test_connection_errors_and_bad_subscriptions_do_not_raise(
    fake: FakeWebPush, provider: WebPushProvider
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    endpoint, p256dh, auth = fake.subscribe()
    nowhere = _address(f"https://127.0.0.1:{closed_port}/wpush/x", p256dh, auth)
    assert await provider.send(nowhere, _nudge()) == SendResult(status=0, reason="ConnectionError")

    bad = SendResult(status=400, reason="InvalidSubscription")
    assert await provider.send(_address(endpoint, "not-a-key", auth), _nudge()) == bad
    no_keys = Address("dev-2", "webpush", endpoint, REGISTERED)
    assert await provider.send(no_keys, _nudge()) == bad
    plain_http = _address(endpoint.replace("https:", "http:"), p256dh, auth)
    assert await provider.send(plain_http, _nudge()) == bad
    assert fake.requests(endpoint) == []


async def test_the_fake_refuses_what_a_push_service_refuses(
    fake: FakeWebPush, trust: ssl.SSLContext, vapid_keys: tuple[str, str]
) -> None:
    """So a passing send above means the request really was right."""
    endpoint, p256dh, auth = fake.subscribe(application_server_key=vapid_keys[1])
    body = encrypt(b'{"title":"x"}', p256dh, auth)
    good_auth = Vapid(vapid_keys[0], SUBJECT).authorization(endpoint)
    good = {"TTL": "60", "Content-Encoding": "aes128gcm", "Authorization": good_auth}
    stale = Vapid(vapid_keys[0], SUBJECT, clock=lambda: time.time() - 13 * 3600)
    wrong_key = Vapid(generate_vapid_keys()[0], SUBJECT)
    elsewhere = Vapid(vapid_keys[0], SUBJECT).authorization("https://push.example.com/x")
    cases: list[tuple[dict[str, str], bytes, int]] = [
        ({**good, "Authorization": ""}, body, 401),
        ({**good, "Authorization": stale.authorization(endpoint)}, body, 403),
        ({**good, "Authorization": wrong_key.authorization(endpoint)}, body, 403),
        ({**good, "Authorization": elsewhere}, body, 403),
        ({**good, "Authorization": good_auth.replace("k=B", "k=A")}, body, 403),
        ({k: v for k, v in good.items() if k != "TTL"}, body, 400),
        ({**good, "Topic": "x" * 33}, body, 400),
        ({**good, "Content-Encoding": "aesgcm"}, body, 415),
        (good, body + b"\x00" * (4097 - len(body)), 413),
        (good, body[:-1] + bytes([body[-1] ^ 1]), 400),
        (good, body, 201),
    ]
    for http2 in (True, False):
        async with httpx.AsyncClient(http2=http2, verify=trust) as client:
            for headers, content, want in cases:
                response = await client.post(endpoint, headers=headers, content=content)
                assert response.status_code == want, (http2, headers, response.text)
    versions = {r.http_version for r in fake.requests(endpoint)}
    assert versions == {"2", "1.1"}


async def test_an_endpoint_on_a_private_address_is_never_contacted(
    vapid_keys: tuple[str, str], fake: FakeWebPush, trust: ssl.SSLContext
) -> None:
    """A browser's endpoint aimed at our own network (127.0.0.1 here) is refused before any
    request leaves, unless private hosts are allowed (tests only)."""
    provider = WebPushProvider(vapid_keys[0], SUBJECT, timeout_s=5.0, verify=trust)
    try:
        endpoint, p256dh, auth = fake.subscribe()
        before = len(fake.received)
        result = await provider.send(_address(endpoint, p256dh, auth), _nudge())
        assert (result.status, result.reason) == (400, "InvalidSubscription")
        assert len(fake.received) == before
    finally:
        await provider.aclose()

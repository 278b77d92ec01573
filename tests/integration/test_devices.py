"""Devices over the real API: push addresses for APNs, FCM and Web Push, the device list,
and signing a device out."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from tests.helpers import Account, expect_problem, login, new_id, register

APNS = "0f" * 32  # a 32-byte device token in hex, as iOS hands it over
FCM = "dGVzdC1kZXZpY2U:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx_test-token_value"
WEBPUSH_ENDPOINT = "https://updates.push.services.mozilla.com/wpush/v2/gAAAAABnTestEndpoint"
P256DH = "B" + "A" * 86  # 65 bytes, unpadded base64url, as PushSubscription.toJSON() gives
AUTH = "k9yWy0r6pYVZ2v7BjJqZ3A"  # 16 bytes


async def _put(
    http: httpx.AsyncClient, account: Account, body: dict[str, Any], device_id: str | None = None
) -> httpx.Response:
    return await http.put(
        f"/v1/devices/{device_id or account.device_id}/push-token",
        headers=account.headers,
        json=body,
    )


async def _stored(db: asyncpg.Connection, account: Account, device_id: str | None = None) -> Any:
    row = await db.fetchrow(
        """
        SELECT push_provider, push_token, push_environment, push_topic, push_keys::text AS keys,
               push_token_updated_at
        FROM devices WHERE user_id = $1 AND id = $2
        """,
        account.user_id,
        device_id or account.device_id,
    )
    assert row is not None
    return row


async def test_an_apns_token_is_stored_with_its_environment_and_topic(
    http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    ana = await register(http)
    r = await _put(
        http,
        ana,
        {"provider": "apns", "token": APNS, "environment": "sandbox", "topic": "org.kith.app"},
    )
    assert r.status_code == 204, r.text
    row = await _stored(db, ana)
    assert (row["push_provider"], row["push_token"]) == ("apns", APNS)
    assert (row["push_environment"], row["push_topic"]) == ("sandbox", "org.kith.app")
    assert row["push_token_updated_at"] is not None


async def test_an_uppercase_apns_token_is_the_same_token(
    http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """iOS apps format the token with %02x or %02X; both name one phone, which must not
    end up registered twice (and nudged twice)."""
    ana = await register(http)
    ben = await register(http)
    token = new_id("x").encode().hex()
    assert (await _put(http, ana, {"provider": "apns", "token": token.upper()})).status_code == 204
    assert (await _stored(db, ana))["push_token"] == token
    assert (await _put(http, ben, {"provider": "apns", "token": token})).status_code == 204
    assert (await _stored(db, ana))["push_token"] is None


async def test_an_fcm_token_is_stored(http: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    ana = await register(http)
    r = await _put(http, ana, {"provider": "fcm", "token": FCM})
    assert r.status_code == 204, r.text
    row = await _stored(db, ana)
    assert (row["push_provider"], row["push_token"], row["push_environment"]) == (
        "fcm",
        FCM,
        None,
    )


async def test_a_web_push_subscription_is_stored_with_its_keys(
    http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    ana = await register(http)
    r = await _put(
        http,
        ana,
        {
            "provider": "webpush",
            "token": WEBPUSH_ENDPOINT,
            "keys": {"p256dh": P256DH, "auth": AUTH},
        },
    )
    assert r.status_code == 204, r.text
    row = await _stored(db, ana)
    assert (row["push_provider"], row["push_token"]) == ("webpush", WEBPUSH_ENDPOINT)
    assert msgspec.json.decode(row["keys"]) == {"p256dh": P256DH, "auth": AUTH}


async def test_a_new_address_replaces_the_old_one(
    http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    ana = await register(http)
    assert (await _put(http, ana, {"provider": "apns", "token": APNS})).status_code == 204
    assert (await _put(http, ana, {"provider": "fcm", "token": FCM})).status_code == 204
    row = await _stored(db, ana)
    assert (row["push_provider"], row["push_token"], row["push_environment"]) == (
        "fcm",
        FCM,
        None,
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"provider": "apns", "token": "zz" * 32}, "token"),
        ({"provider": "apns", "token": "abc"}, "token"),
        ({"provider": "apns", "token": "ab cd ef 01 23 45 67 89"}, "token"),
        ({"provider": "apns", "token": ""}, "token"),
        ({"provider": "apns", "token": APNS, "environment": "staging"}, "environment"),
        ({"provider": "apns", "token": APNS, "topic": "org.kith app"}, "topic"),
        ({"provider": "fcm", "token": ""}, "token"),
        ({"provider": "fcm", "token": "has a space"}, "token"),
        ({"provider": "fcm", "token": FCM + "\n"}, "token"),
        ({"provider": "fcm", "token": "x" * 5000}, "token"),
        ({"provider": "fcm", "token": 12345}, "token"),
        ({"provider": "webpush", "token": "http://push.example.org/x", "keys": None}, "token"),
        (
            {
                "provider": "webpush",
                "token": "http://push.example.org/x",
                "keys": {"p256dh": P256DH, "auth": AUTH},
            },
            "token",
        ),
        (
            {
                "provider": "webpush",
                "token": "https://127.0.0.1/wpush",
                "keys": {"p256dh": P256DH, "auth": AUTH},
            },
            "token",
        ),
        (
            {
                "provider": "webpush",
                "token": "https://localhost/wpush",
                "keys": {"p256dh": P256DH, "auth": AUTH},
            },
            "token",
        ),
        (
            {
                "provider": "webpush",
                "token": "https://[::1]/wpush",
                "keys": {"p256dh": P256DH, "auth": AUTH},
            },
            "token",
        ),
        ({"provider": "webpush", "token": WEBPUSH_ENDPOINT}, "keys"),
        (
            {"provider": "webpush", "token": WEBPUSH_ENDPOINT, "keys": {"p256dh": P256DH}},
            "keys.auth",
        ),
        (
            {
                "provider": "webpush",
                "token": WEBPUSH_ENDPOINT,
                "keys": {"p256dh": "a b", "auth": AUTH},
            },
            "keys.p256dh",
        ),
        ({"provider": "sms", "token": "+351900000000"}, "provider"),
        ({"token": APNS}, "provider"),
        ({"provider": "apns"}, "token"),
        ({"provider": "apns", "token": APNS, "colour": "blue"}, "colour"),
    ],
)
async def test_an_invalid_push_address_is_refused_naming_the_field(
    http: httpx.AsyncClient, db: asyncpg.Connection, body: dict[str, Any], field: str
) -> None:
    ana = await register(http)
    problem = expect_problem(await _put(http, ana, body), 422, "invalid_field")
    assert [e["field"] for e in problem["errors"]] == [field], problem
    assert (await _stored(db, ana))["push_token"] is None


async def test_a_malformed_device_id_in_the_path_is_refused(http: httpx.AsyncClient) -> None:
    ana = await register(http)
    r = await _put(http, ana, {"provider": "fcm", "token": FCM}, device_id="a%20b")
    problem = expect_problem(r, 422, "invalid_field")
    assert [e["field"] for e in problem["errors"]] == ["device_id"]


async def test_a_token_moves_to_the_device_that_registers_it_last(
    http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """A phone that changed hands (or an app reinstalled under another account) must not
    keep delivering the previous owner's nudges."""
    ana = await register(http)
    ana_tablet = await login(http, ana.email, new_id("dev"))
    ben = await register(http)
    token = new_id("fcm")

    assert (await _put(http, ana, {"provider": "fcm", "token": token})).status_code == 204
    assert (await _put(http, ana_tablet, {"provider": "fcm", "token": token})).status_code == 204
    assert (await _stored(db, ana))["push_token"] is None
    assert (await _stored(db, ana_tablet))["push_token"] == token

    assert (await _put(http, ben, {"provider": "fcm", "token": token})).status_code == 204
    assert (await _stored(db, ana_tablet))["push_token"] is None
    assert (await _stored(db, ben))["push_token"] == token
    holders = await db.fetchval("SELECT count(*) FROM devices WHERE push_token = $1", token)
    assert holders == 1

    # Registering it again on the device that holds it keeps it there.
    assert (await _put(http, ben, {"provider": "fcm", "token": token})).status_code == 204
    assert (await _stored(db, ben))["push_token"] == token


async def test_the_device_list_marks_the_calling_device(http: httpx.AsyncClient) -> None:
    phone = await register(http)
    tablet = await login(http, phone.email, new_id("dev"))
    await _put(http, tablet, {"provider": "fcm", "token": new_id("fcm")})

    r = await http.get("/v1/devices", headers=tablet.headers)
    assert r.status_code == 200, r.text
    devices = {d["id"]: d for d in r.json()["devices"]}
    assert set(devices) == {phone.device_id, tablet.device_id}
    assert devices[tablet.device_id]["current"] is True
    assert devices[phone.device_id]["current"] is False
    assert devices[tablet.device_id]["push_provider"] == "fcm"
    assert devices[phone.device_id]["push_provider"] is None
    assert devices[phone.device_id]["platform"] == "ios"
    assert devices[tablet.device_id]["platform"] == "android"
    assert "push_token" not in devices[tablet.device_id]  # addresses are not echoed back


async def test_deleting_a_device_signs_it_out_and_forgets_its_address(
    http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    phone = await register(http)
    tablet = await login(http, phone.email, new_id("dev"))
    assert (await _put(http, phone, {"provider": "apns", "token": APNS})).status_code == 204

    assert (
        await http.delete(f"/v1/devices/{phone.device_id}", headers=tablet.headers)
    ).status_code == 204

    r = await http.get("/v1/devices", headers=tablet.headers)
    assert [d["id"] for d in r.json()["devices"]] == [tablet.device_id]
    expect_problem(await http.get("/v1/devices", headers=phone.headers), 401, "session_revoked")
    row = await _stored(db, phone)
    assert (row["push_provider"], row["push_token"], row["keys"]) == (None, None, None)
    revoked = await db.fetchval(
        "SELECT revoked_at FROM devices WHERE user_id = $1 AND id = $2",
        phone.user_id,
        phone.device_id,
    )
    assert revoked is not None

    # A revoked device cannot be given an address, and a second delete finds nothing.
    expect_problem(
        await _put(http, tablet, {"provider": "apns", "token": APNS}, device_id=phone.device_id),
        404,
        "not_found",
    )
    expect_problem(await http.delete(f"/v1/devices/{phone.device_id}", headers=tablet.headers), 404)

    # Logging in with the password again re-admits the phone.
    again = await login(http, phone.email, phone.device_id)
    r = await http.get("/v1/devices", headers=again.headers)
    assert {d["id"] for d in r.json()["devices"]} == {phone.device_id, tablet.device_id}


async def test_a_device_can_sign_itself_out(http: httpx.AsyncClient) -> None:
    phone = await register(http)
    r = await http.delete(f"/v1/devices/{phone.device_id}", headers=phone.headers)
    assert r.status_code == 204, r.text
    expect_problem(await http.get("/v1/devices", headers=phone.headers), 401)
    r = await http.post("/v1/auth/refresh", json={"refresh_token": phone.refresh_token})
    expect_problem(r, 401)

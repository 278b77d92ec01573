"""Signing in with the fake Apple and Google (tests/fakes/oidc.py) over the real API."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from tests.fakes.oidc import FakeProvider
from tests.helpers import Account, new_id

__all__ = ["link", "new_nonce", "new_subject", "provider_sign_in", "sign_in_body"]

TERMS: dict[str, Any] = {
    "time_zone": "Europe/Lisbon",
    "display_name": "Ana",
    "wellbeing_consent": True,
}


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def new_subject(provider: FakeProvider) -> str:
    """A subject shaped like the provider's (Apple: ``001234.<hex>.0123``; Google: digits)."""
    if provider.name == "apple":
        return f"001234.{secrets.token_hex(16)}.0{secrets.randbelow(1000):03d}"
    return str(10**20 + secrets.randbelow(10**20))


def sign_in_body(
    token: str, nonce: str, device_id: str | None = None, **fields: Any
) -> dict[str, Any]:
    return {
        "id_token": token,
        "nonce": nonce,
        "device": {"id": device_id or new_id("dev"), "platform": "ios", "name": "phone"},
        **fields,
    }


async def provider_sign_in(
    http: httpx.AsyncClient,
    provider: FakeProvider,
    subject: str,
    *,
    email: str | None = None,
    device_id: str | None = None,
    expect_created: bool | None = None,
    **fields: Any,
) -> Account:
    """Sign in with a fresh token for ``subject``; new accounts get the fields
    registration would ask for unless ``fields`` says otherwise."""
    nonce = new_nonce()
    token = provider.token(subject, nonce, email=email)
    body = sign_in_body(token, nonce, device_id, **{**TERMS, **fields})
    r = await http.post(f"/v1/auth/{provider.name}", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    if expect_created is not None:
        assert out["created"] is expect_created, out
    return Account(
        email or "",
        out["user_id"],
        body["device"]["id"],
        out["access_token"],
        out["refresh_token"],
    )


async def link(
    http: httpx.AsyncClient,
    account: Account,
    provider: FakeProvider,
    subject: str,
    *,
    email: str | None = None,
    password: str | None = None,
) -> httpx.Response:
    """``POST /v1/account/identities`` with a fresh token for ``subject``."""
    nonce = new_nonce()
    body: dict[str, Any] = {
        "provider": provider.name,
        "id_token": provider.token(subject, nonce, email=email),
        "nonce": nonce,
    }
    if password is not None:
        body["password"] = password
    return await http.post("/v1/account/identities", headers=account.headers, json=body)

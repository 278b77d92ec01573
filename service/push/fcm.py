"""Firebase Cloud Messaging HTTP v1, with an OAuth access token from a service account.

The access token comes from an RS256 assertion exchanged at Google's token endpoint; it is
cached in :class:`~service.push.credentials.SharedToken` (shared by all workers) until
shortly before it expires. Errors are read from the v1 error body's ``errorCode``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import jwt
import msgspec

from schemas.auth import ProviderName
from service.config import FcmSettings
from service.push.base import Address, Credentials, Notification, SendResult, Shared, collapse_key
from service.push.credentials import Minted, SharedToken
from service.push.verdict import Action, Verdict, retry_after_s, retry_verdict

__all__ = [
    "REUSE",
    "SCOPE",
    "FCMProvider",
    "build",
    "fcm_message",
    "fcm_minter",
    "judge",
]

#: Google's access tokens live an hour; take a new one 5 minutes before.
REUSE = dt.timedelta(minutes=55)

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
_encode = msgspec.json.encode
_decode = msgspec.json.decode


class TokenError(Exception):
    """Google's token endpoint refused the service account's assertion."""


def fcm_minter(
    client_email: str,
    private_key_pem: str,
    token_url: str,
    client: httpx.AsyncClient,
    timeout_s: float = 10.0,
) -> Callable[[dt.datetime], Awaitable[Minted]]:
    async def mint(now: dt.datetime) -> Minted:
        iat = int(now.timestamp())
        assertion = jwt.encode(
            {"iss": client_email, "scope": SCOPE, "aud": token_url, "iat": iat, "exp": iat + 3600},
            private_key_pem,
            algorithm="RS256",
        )
        async with asyncio.timeout(timeout_s):
            r = await client.post(
                token_url,
                data={
                    "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                    "assertion": assertion,
                },
            )
        if r.status_code != 200:
            raise TokenError(f"token endpoint answered {r.status_code}")
        doc = r.json()
        return Minted(str(doc["access_token"]), now + dt.timedelta(seconds=int(doc["expires_in"])))

    return mint


def fcm_message(address: Address, n: Notification) -> dict[str, Any]:
    collapse = collapse_key(n.collapse_id)
    data = {"nudge_id": n.collapse_id, "category": n.category, **n.data}
    return {
        "message": {
            "token": address.token,
            "notification": {"title": n.title, "body": n.body},
            "data": data,
            "android": {
                "collapse_key": collapse,
                "priority": "high" if n.time_sensitive else "normal",
                "ttl": f"{n.ttl_s}s",
                # tag replaces a notification already shown; click_action = the buttons' activity
                "notification": {"tag": collapse, "click_action": n.category},
            },
            "apns": {
                "headers": {"apns-collapse-id": collapse, "apns-push-type": "alert"},
                "payload": {"aps": {"category": n.category}},
            },
        }
    }


def _error_reason(doc: Any) -> str | None:
    """``errorCode`` from the details, or the canonical status (e.g. UNAUTHENTICATED).
    INVALID_ARGUMENT about ``message.token`` becomes ``INVALID_ARGUMENT:token``: only
    that one means the token is bad rather than the message."""
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, dict):
        return None
    code: str | None = None
    token_violation = False
    for detail in error.get("details") or []:
        if not isinstance(detail, dict):
            continue
        if isinstance(detail.get("errorCode"), str):
            code = detail["errorCode"]
        for violation in detail.get("fieldViolations") or []:
            if isinstance(violation, dict) and violation.get("field") == "message.token":
                token_violation = True
    code = code or (error.get("status") if isinstance(error.get("status"), str) else None)
    if code == "INVALID_ARGUMENT" and token_violation:
        return "INVALID_ARGUMENT:token"
    return code


class FCMProvider:
    name: ProviderName = "fcm"

    def __init__(
        self,
        credentials: Credentials,
        settings: FcmSettings,
        shared: Shared,
        client: httpx.AsyncClient,
    ) -> None:
        """``client`` (base URL ``settings.url``) also mints the access token: one
        connection pool to Google."""
        self.credentials: Credentials | None = credentials
        self._token = credentials
        self._path = f"/v1/projects/{settings.project_id}/messages:send"
        self._timeout_s = shared.timeout_s
        self._client = client

    async def send(self, address: Address, notification: Notification) -> SendResult:
        token = await self._token.get()
        try:
            async with asyncio.timeout(self._timeout_s):
                r = await self._client.post(
                    self._path,
                    content=_encode(fcm_message(address, notification)),
                    headers={
                        "authorization": f"Bearer {token}",
                        "content-type": "application/json",
                    },
                )
                body = await r.aread()
        except TimeoutError:
            return SendResult(0, "Timeout", credential=token)
        except httpx.HTTPError as exc:
            return SendResult(0, type(exc).__name__, credential=token)
        try:
            doc = _decode(body) if body else {}
        except msgspec.DecodeError:
            doc = {}
        if r.status_code == 200:
            name = doc.get("name") if isinstance(doc, dict) else None
            return SendResult(200, provider_id=name, credential=token)
        return SendResult(
            r.status_code,
            _error_reason(doc),
            retry_after_s(r.headers.get("retry-after")),
            credential=token,
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def build(settings: FcmSettings, shared: Shared) -> FCMProvider:
    """The FCM provider, its OAuth access token shared by every worker (decision 0006)."""
    client = httpx.AsyncClient(
        base_url=settings.url, http2=True, verify=shared.verify, timeout=shared.timeout_s
    )
    token = SharedToken(
        shared.pool,
        f"fcm:{settings.client_email}",
        fcm_minter(
            settings.client_email,
            settings.private_key,
            settings.token_url,
            client,
            shared.timeout_s,
        ),
        reuse_for=REUSE,
        clock=shared.clock,
    )
    return FCMProvider(token, settings, shared, client)


_FCM_DEAD_TOKEN = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH", "INVALID_ARGUMENT:token"})
QUOTA_MIN_DELAY_S = 60.0  # FCM: "exponential backoff with a minimum initial delay of 1 minute"


def judge(result: SendResult, registered_at: dt.datetime | None) -> Verdict:
    """What an FCM HTTP v1 answer means."""
    status, reason = result.status, result.reason or ""
    if reason in _FCM_DEAD_TOKEN or status == 404:
        return Verdict(Action.DROP_TOKEN)
    if status == 401 and reason != "THIRD_PARTY_AUTH_ERROR":
        return Verdict(Action.REMINT)  # our OAuth access token
    if reason == "THIRD_PARTY_AUTH_ERROR" or status == 403:
        return Verdict(Action.CREDENTIALS)
    if status == 429 or reason == "QUOTA_EXCEEDED":
        return retry_verdict(result, QUOTA_MIN_DELAY_S)
    if status == 400:
        return Verdict(Action.BAD_MESSAGE)
    return retry_verdict(result)

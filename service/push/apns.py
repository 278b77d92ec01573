"""Apple Push Notification service: HTTP/2 with an ES256 provider token.

One :class:`~service.push.h2client.H2Client` (HTTP/2: many streams share one connection;
see that module for why not httpx) per environment; the provider token comes from
:class:`~service.push.credentials.SharedToken`, minted once per team/key for every worker
and reused ~45 minutes. Every request has a deadline: APNs is known to leave a stream
unanswered (the client then resets that stream).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
import msgspec

from schemas.auth import ProviderName
from service.config import ApnsSettings
from service.push.base import Address, Credentials, Notification, SendResult, Shared, collapse_key
from service.push.credentials import Minted, SharedToken
from service.push.h2client import H2Client, H2Error, H2Timeout
from service.push.verdict import Action, Verdict, retry_after_s, retry_verdict

__all__ = [
    "REUSE",
    "APNsProvider",
    "apns_minter",
    "apns_payload",
    "build",
    "judge",
]

#: Apple: refresh no more often than every 20 minutes, no less than every 60; reuse ~45.
REUSE = dt.timedelta(minutes=45)
MIN_INTERVAL = dt.timedelta(minutes=20)

TOKEN_LIFETIME = dt.timedelta(hours=1)  # APNs refuses a token whose iat is over an hour old
_encode = msgspec.json.encode
_decode = msgspec.json.decode


def apns_minter(
    team_id: str, key_id: str, private_key_pem: str
) -> Callable[[dt.datetime], Awaitable[Minted]]:
    """Mints ``{"alg": "ES256", "kid": key_id}.{"iss": team_id, "iat": now}``."""

    async def mint(now: dt.datetime) -> Minted:
        token = jwt.encode(
            {"iss": team_id, "iat": int(now.timestamp())},
            private_key_pem,
            algorithm="ES256",
            headers={"kid": key_id},
        )
        return Minted(token, now + TOKEN_LIFETIME)

    return mint


def apns_payload(n: Notification) -> bytes:
    """The JSON body: ``aps`` for the system (alert, category = the action buttons), the
    rest for the app (which nudge, which contact)."""
    aps: dict[str, Any] = {
        "alert": {"title": n.title, "body": n.body},
        "sound": "default",
        "category": n.category,
        "thread-id": "kith-care" if n.time_sensitive else "kith-nudges",
    }
    if n.time_sensitive:
        aps["interruption-level"] = "time-sensitive"
    return _encode({"aps": aps, **n.data})


class APNsProvider:
    name: ProviderName = "apns"

    def __init__(self, credentials: Credentials, settings: ApnsSettings, shared: Shared) -> None:
        self.credentials: Credentials | None = credentials
        self._token = credentials
        self._topic = settings.topic
        self._timeout_s = shared.timeout_s
        self._clock = shared.clock
        self._clients = {
            env: H2Client(url, verify=shared.verify, connect_timeout_s=shared.timeout_s)
            for env, url in (("production", settings.url), ("sandbox", settings.sandbox_url))
        }

    async def send(self, address: Address, notification: Notification) -> SendResult:
        env = address.environment or "production"
        client = self._clients["sandbox" if env == "sandbox" else "production"]
        token = await self._token.get()
        now = self._clock()
        collapse = collapse_key(notification.collapse_id)
        headers = [
            ("authorization", f"bearer {token}"),
            ("apns-topic", address.topic or self._topic),
            ("apns-push-type", "alert"),
            ("apns-priority", "10"),
            ("apns-expiration", str(int(now.timestamp()) + notification.ttl_s)),
            ("apns-collapse-id", collapse),
            # The same id on every retry of this nudge to this device: Apple's logs and ours
            # can be matched, and a resend is recognisable as one.
            ("apns-id", str(uuid.uuid5(uuid.NAMESPACE_URL, f"{collapse}/{address.device_id}"))),
        ]
        try:
            r = await client.request(
                "POST",
                f"/3/device/{address.token}",
                headers,
                apns_payload(notification),
                timeout_s=self._timeout_s,
            )
        except H2Timeout:
            return SendResult(0, "Timeout", credential=token)
        except H2Error as exc:
            return SendResult(0, type(exc).__name__, credential=token)
        if r.status == 200:
            return SendResult(200, provider_id=r.headers.get("apns-id"), credential=token)
        reason, timestamp = None, None
        try:
            doc = _decode(r.body) if r.body else {}
            reason = doc.get("reason")
            timestamp = doc.get("timestamp")
        except (msgspec.DecodeError, AttributeError):
            pass
        return SendResult(
            r.status,
            reason if isinstance(reason, str) else None,
            retry_after_s(r.headers.get("retry-after")),
            int(timestamp) if isinstance(timestamp, int | float) else None,
            r.headers.get("apns-id"),
            credential=token,
        )

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()


def build(settings: ApnsSettings, shared: Shared) -> APNsProvider:
    """The APNs provider, its provider token shared by every worker (decision 0006)."""
    token = SharedToken(
        shared.pool,
        f"apns:{settings.team_id}:{settings.key_id}",
        apns_minter(settings.team_id, settings.key_id, settings.private_key),
        reuse_for=REUSE,
        min_interval=MIN_INTERVAL,
        clock=shared.clock,
    )
    return APNsProvider(token, settings, shared)


_APNS_CREDENTIALS = frozenset(
    {
        "InvalidProviderToken",
        "MissingProviderToken",
        "BadCertificate",
        "BadCertificateEnvironment",
        "Forbidden",
        "BadTopic",
        "MissingTopic",
        "TopicDisallowed",
        "InvalidPushType",
    }
)
_APNS_BAD_MESSAGE = frozenset(
    {
        "PayloadTooLarge",
        "PayloadEmpty",
        "BadCollapseId",
        "BadExpirationDate",
        "BadMessageId",
        "BadPriority",
        "DuplicateHeaders",
        "BadPath",
        "MethodNotAllowed",
        "MissingDeviceToken",
    }
)
TOKEN_LIMIT_WAIT_S = 20 * 60.0


def judge(result: SendResult, registered_at: dt.datetime | None) -> Verdict:
    """What an APNs answer means (Apple's documented reasons; anything new is retried)."""
    status, reason = result.status, result.reason or ""
    if status == 410:
        if result.timestamp_ms is None or registered_at is None:
            return Verdict(Action.DROP_TOKEN)
        invalid_since = dt.datetime.fromtimestamp(result.timestamp_ms / 1000, dt.UTC)
        return Verdict(Action.DROP_TOKEN if registered_at < invalid_since else Action.KEEP_TOKEN)
    if reason == "DeviceTokenNotForTopic":
        return Verdict(Action.DROP_TOKEN)
    if reason == "BadDeviceToken":
        return Verdict(Action.OTHER_ENVIRONMENT)
    if reason == "ExpiredProviderToken":
        return Verdict(Action.REMINT)
    if reason == "TooManyProviderTokenUpdates":
        return Verdict(Action.WAIT_TOKEN_LIMIT, TOKEN_LIMIT_WAIT_S)
    if reason in _APNS_CREDENTIALS:
        return Verdict(Action.CREDENTIALS)
    if reason in _APNS_BAD_MESSAGE or status == 413:
        return Verdict(Action.BAD_MESSAGE)
    # 429 TooManyRequests (this device), 500, 503 ServiceUnavailable/Shutdown, IdleTimeout,
    # and anything Apple adds later: not our fault, try again later.
    return retry_verdict(result)

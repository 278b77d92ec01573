"""Web Push for the web client: RFC 8291 payload encryption, RFC 8292 VAPID, RFC 8030 delivery.

The subscription's ``endpoint`` URL is the :class:`~service.push.base.Address` token and its
``p256dh`` / ``auth`` keys travel in ``Address.keys``. One VAPID JWT per push-service origin is
minted and reused until about an hour before it expires, never per request. What an answer
*means* (forget the subscription, retry, alarm) is decided in ``policy.py``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import ipaddress
import os
import re
import socket
import ssl
import struct
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import msgspec
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from schemas.auth import ProviderName
from service.config import WebPushSettings
from service.push.base import Address, Credentials, Notification, SendResult, Shared
from service.push.verdict import Action, Verdict, retry_after_s, retry_verdict

__all__ = [
    "MAX_PLAINTEXT",
    "RECORD_SIZE",
    "PayloadTooLarge",
    "Vapid",
    "WebPushProvider",
    "b64url_decode",
    "b64url_encode",
    "build",
    "encrypt",
    "generate_vapid_keys",
    "judge",
    "origin_of",
    "topic_for",
]

#: RFC 8188 record size we write; RFC 8291 §4 has push services accept at least 4096 octets.
RECORD_SIZE = 4096
_HEADER_LEN = 16 + 4 + 1 + 65  # salt | rs | idlen | keyid (uncompressed P-256 point)
_TAG_LEN = 16
#: RFC 8291 §4: 4096 - 86 (header) - 16 (AEAD tag) - 1 (padding delimiter) = 3993 octets.
MAX_PLAINTEXT = RECORD_SIZE - _HEADER_LEN - _TAG_LEN - 1

VAPID_LIFETIME_S = 12 * 3600  # RFC 8292 §2: exp MUST NOT be more than 24 h after the request
VAPID_REFRESH_BEFORE_S = 3600  # re-mint when less than this is left

_OK_STATUSES = frozenset({200, 201, 202})
_STATUS_NAMES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    410: "Gone",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
_MAX_ERROR_BODY = 4096
_REASON_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_payload_encoder = msgspec.json.Encoder()
_reason_decoder = msgspec.json.Decoder(dict[str, Any])


class PayloadTooLarge(ValueError):
    """The plaintext does not fit the single 4096-octet record RFC 8291 allows."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url, padding optional (browsers send it without)."""
    stripped = text.rstrip("=")
    standard = stripped.translate(str.maketrans("-_", "+/")) + "=" * (-len(stripped) % 4)
    try:
        return base64.b64decode(standard, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64url: {exc}") from exc


def _uncompressed(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def _hkdf(ikm: bytes, *, salt: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def encrypt(
    plaintext: bytes,
    p256dh_b64url: str,
    auth_b64url: str,
    *,
    salt: bytes | None = None,
    server_private_key: ec.EllipticCurvePrivateKey | None = None,
) -> bytes:
    """Encrypt one push message for a subscription (RFC 8291, ``aes128gcm``, one record).

    ``salt`` and ``server_private_key`` exist for test vectors only: by default every
    message gets a fresh salt and a fresh ephemeral key, as RFC 8291 §3.1 requires.
    Raises :class:`ValueError` for unusable keys, :class:`PayloadTooLarge` past 3993 octets.
    """
    if len(plaintext) > MAX_PLAINTEXT:
        raise PayloadTooLarge(f"{len(plaintext)} octets > {MAX_PLAINTEXT}")
    ua_public = b64url_decode(p256dh_b64url)
    auth_secret = b64url_decode(auth_b64url)
    if len(ua_public) != 65 or ua_public[0] != 0x04:
        raise ValueError("p256dh is not an uncompressed P-256 point")
    if len(auth_secret) != 16:
        raise ValueError("auth secret is not 16 octets")
    ua_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), ua_public)
    salt = os.urandom(16) if salt is None else salt
    if len(salt) != 16:
        raise ValueError("salt is not 16 octets")
    as_private = server_private_key or ec.generate_private_key(ec.SECP256R1())
    as_public = _uncompressed(as_private.public_key())

    # RFC 8291 §3.4: the auth secret and both public keys go into the input keying material.
    ecdh_secret = as_private.exchange(ec.ECDH(), ua_key)
    key_info = b"WebPush: info\x00" + ua_public + as_public
    ikm = _hkdf(ecdh_secret, salt=auth_secret, info=key_info, length=32)
    cek = _hkdf(ikm, salt=salt, info=b"Content-Encoding: aes128gcm\x00", length=16)
    nonce = _hkdf(ikm, salt=salt, info=b"Content-Encoding: nonce\x00", length=12)

    # A single, last record: the 0x02 delimiter and no further padding (RFC 8188 §2).
    ciphertext = AESGCM(cek).encrypt(nonce, plaintext + b"\x02", None)
    return salt + struct.pack("!IB", RECORD_SIZE, len(as_public)) + as_public + ciphertext


def origin_of(endpoint: str) -> str:
    """The RFC 6454 origin of a push endpoint (the VAPID ``aud``): default port omitted."""
    parts = urlsplit(endpoint)
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme != "https" or not host:
        raise ValueError("a push endpoint must be an https URL")
    port = parts.port  # raises ValueError on a bad port
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" if port in (None, 443) else f"{scheme}://{host}:{port}"


def topic_for(collapse_id: str) -> str:
    """A ``Topic`` (RFC 8030 §5.4: ≤ 32 URL-safe base64 characters) naming the nudge, so a
    retried send replaces the pending one instead of arriving twice."""
    return b64url_encode(hashlib.sha256(collapse_id.encode()).digest())[:32]


def generate_vapid_keys() -> tuple[str, str]:
    """A new VAPID key pair: (PKCS#8 PEM private key, base64url public key for the client's
    ``applicationServerKey``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    return pem, b64url_encode(_uncompressed(key.public_key()))


class Vapid:
    """RFC 8292 application server identity: an ES256 JWT per push-service origin, cached."""

    def __init__(
        self,
        private_key_pem: str,
        subject: str,
        *,
        clock: Callable[[], float] = time.time,
        lifetime_s: int = VAPID_LIFETIME_S,
    ) -> None:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("the VAPID key must be a P-256 (prime256v1) EC private key")
        if not subject.startswith(("mailto:", "https:")):
            raise ValueError("the VAPID subject must be a mailto: or https: URI")
        if not VAPID_REFRESH_BEFORE_S < lifetime_s <= 24 * 3600:
            raise ValueError("the VAPID lifetime must be between 1 h and 24 h")
        self._key = key
        self._subject = subject
        self._clock = clock
        self._lifetime_s = lifetime_s
        self.public_key = b64url_encode(_uncompressed(key.public_key()))
        self._tokens: dict[str, tuple[str, int]] = {}  # origin -> (jwt, exp)
        self.minted = 0  # how many JWTs were signed (tests check reuse)

    def token(self, endpoint: str) -> str:
        origin = origin_of(endpoint)
        now = self._clock()
        cached = self._tokens.get(origin)
        if cached is not None and cached[1] - now > VAPID_REFRESH_BEFORE_S:
            return cached[0]
        exp = int(now) + self._lifetime_s
        claims = {"aud": origin, "exp": exp, "sub": self._subject}
        token = jwt.encode(claims, self._key, algorithm="ES256")
        # Keep the cache to live origins: a handful of push services in practice.
        self._tokens = {o: t for o, t in self._tokens.items() if t[1] > now}
        self._tokens[origin] = (token, exp)
        self.minted += 1
        return token

    def authorization(self, endpoint: str) -> str:
        return f"vapid t={self.token(endpoint)}, k={self.public_key}"


def _reason(status: int, head: bytes) -> str:
    """A stable reason code: the service's own token if it sent one (Apple: ``{"reason":
    "BadJwtToken"}``, a bare ``Unregistered``), else the status name (``Gone``)."""
    candidate: object = None
    if head.lstrip().startswith(b"{"):
        try:
            body = _reason_decoder.decode(head)
        except msgspec.DecodeError:
            body = {}
        candidate = body.get("reason") or body.get("error")
        if isinstance(candidate, str):
            candidate = candidate.replace(" ", "")  # autopush: "Not Found"
    else:
        candidate = head.decode("utf-8", "replace").strip()
    if isinstance(candidate, str) and _REASON_TOKEN.fullmatch(candidate):
        return candidate
    return _STATUS_NAMES.get(status, f"HTTP{status}")


async def _read_head(response: httpx.Response) -> bytes:
    """At most ``_MAX_ERROR_BODY`` octets of an answer: the endpoint URL comes from the
    browser, so whatever it points at must not make the worker buffer a huge body."""
    buf = b""
    async for chunk in response.aiter_bytes():
        buf += chunk
        if len(buf) >= _MAX_ERROR_BODY:
            break
    return buf[:_MAX_ERROR_BODY]


async def _public_host(endpoint: str) -> bool:
    """Whether every address the endpoint's host resolves to is a public one."""
    try:
        parts = urlsplit(endpoint)
        host, port = parts.hostname or "", parts.port or 443
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError):
        return False
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            return False
    return bool(infos)


class WebPushProvider:
    """Sends a :class:`Notification` to one browser subscription over one HTTP/1.1-or-2 client.

    Results: 200/201/202 delivered (``provider_id`` = the message's ``Location``); otherwise
    the status with a reason code and ``Retry-After``; status 0 ``Timeout`` /
    ``ConnectionError``; never sent: 413 ``PayloadTooLarge`` and 400 ``InvalidSubscription``
    (keys that are not a P-256 point and a 16-octet secret, or a non-https endpoint).
    """

    name: ProviderName = "webpush"
    #: VAPID needs no shared token: each worker signs its own JWT with the configured key.
    credentials: Credentials | None = None

    def __init__(
        self,
        vapid_private_key_pem: str,
        vapid_subject: str,
        timeout_s: float,
        *,
        verify: ssl.SSLContext | bool = True,
        clock: Callable[[], float] = time.time,
        allow_private_hosts: bool = False,
    ) -> None:
        self.vapid = Vapid(vapid_private_key_pem, vapid_subject, clock=clock)
        self._allow_private = allow_private_hosts
        self._timeout_s = timeout_s
        self._clock = clock
        self._client = httpx.AsyncClient(
            http2=True,
            verify=verify,
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
        )

    @staticmethod
    def payload(notification: Notification) -> bytes:
        """The plaintext the service worker receives: compact JSON."""
        return _payload_encoder.encode(
            {
                "title": notification.title,
                "body": notification.body,
                "nudge_id": notification.collapse_id,
                "category": notification.category,
                "data": notification.data,
            }
        )

    async def send(self, address: Address, notification: Notification) -> SendResult:
        plaintext = self.payload(notification)
        if len(plaintext) > MAX_PLAINTEXT:
            return SendResult(status=413, reason="PayloadTooLarge")
        keys = address.keys or {}
        try:
            body = encrypt(plaintext, keys["p256dh"], keys["auth"])
            authorization = self.vapid.authorization(address.token)
        except (KeyError, ValueError):
            # Never sent: the subscription itself is unusable, so no answer will change.
            return SendResult(status=400, reason="InvalidSubscription")
        if not self._allow_private and not await _public_host(address.token):
            # The endpoint came from a browser: never let it aim the worker at our own
            # network (registration refuses such names; this catches what DNS says now).
            return SendResult(status=400, reason="InvalidSubscription")
        headers = {
            "TTL": str(max(0, notification.ttl_s)),
            "Urgency": "normal",
            "Topic": topic_for(notification.collapse_id),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "Authorization": authorization,
        }
        try:
            # httpx's timeout bounds each phase; this bounds the whole exchange.
            async with (
                asyncio.timeout(self._timeout_s),
                self._client.stream("POST", address.token, content=body, headers=headers) as r,
            ):
                status, answer = r.status_code, r.headers
                head = b"" if status in _OK_STATUSES else await _read_head(r)
        except (TimeoutError, httpx.TimeoutException):
            return SendResult(status=0, reason="Timeout")
        except httpx.RequestError:  # connect/TLS/protocol failures, a body that won't decode
            return SendResult(status=0, reason="ConnectionError")
        except httpx.InvalidURL:
            return SendResult(status=400, reason="InvalidSubscription")

        if status in _OK_STATUSES:
            return SendResult(status=status, provider_id=answer.get("Location"))
        return SendResult(
            status=status,
            reason=_reason(status, head),
            retry_after_s=retry_after_s(
                answer.get("Retry-After"), dt.datetime.fromtimestamp(self._clock(), dt.UTC)
            ),
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def build(settings: WebPushSettings, shared: Shared) -> WebPushProvider:
    """The Web Push provider (VAPID needs no shared token: each request signs its own)."""
    clock = shared.clock
    return WebPushProvider(
        vapid_private_key_pem=settings.vapid_private_key,
        vapid_subject=settings.vapid_subject,
        timeout_s=shared.timeout_s,
        verify=shared.verify,
        clock=lambda: clock().timestamp(),
        allow_private_hosts=settings.allow_private_hosts,
    )


#: Web Push answers about one subscription, not our key: a malformed subscription, or one
#: a browser made under an earlier VAPID key (Apple's push service names it).
_WEBPUSH_DEAD = frozenset({"InvalidSubscription", "VapidPkHashMismatch"})


def judge(result: SendResult, registered_at: dt.datetime | None) -> Verdict:
    """What a push service's answer (RFC 8030) means."""
    status, reason = result.status, result.reason or ""
    if status in {404, 410} or reason in _WEBPUSH_DEAD:
        return Verdict(Action.DROP_TOKEN)
    if status in {401, 403}:
        return Verdict(Action.CREDENTIALS)  # our VAPID key or claims are refused
    if status in {400, 413}:
        return Verdict(Action.BAD_MESSAGE)
    return retry_verdict(result)

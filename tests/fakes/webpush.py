"""A fake Web Push service (think Mozilla autopush or FCM's web push endpoint) that is also
the browser: it mints subscriptions, keeps their private keys and decrypts what arrives.

It checks what a real push service checks (RFC 8030 / 8291 / 8292): a valid VAPID
``Authorization`` (ES256 over the ``k`` key, ``aud`` = this origin, ``exp`` in the future and
at most 24 h ahead, a ``sub``) else 401/403; a ``TTL`` else 400; ``Content-Encoding:
aes128gcm`` else 415; a body of at most 4096 octets else 413. Success is ``201`` with a
``Location``. The decryption is written here from the RFCs, independently of the provider.

Per subscription a test can script answers (``Reply(410)``, ``Reply(429, retry_after="7")``,
``Reply(503)``, ``NEVER_ANSWER``) or kill it for good (``unsubscribe``). ``shown()`` is what
the user would see: a later message with the same ``Topic`` replaces the pending one.

Run alone with ``python -m tests.fakes.webpush`` (see :func:`tests.fakes.tls.run_process`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope

from tests.fakes.tls import FakeServer, read_body, respond, run_process, wait_for_disconnect_or

__all__ = ["NEVER_ANSWER", "FakeWebPush", "Received", "Reply", "decrypt"]

MAX_BODY = 4096  # RFC 8291 §4: push services MUST accept up to 4096 octets
MAX_VAPID_LIFETIME_S = 24 * 3600  # RFC 8292 §2
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")
_URGENCIES = frozenset({"very-low", "low", "normal", "high"})
_PHRASES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    410: "Gone",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class Reply:
    """A scripted answer. ``body`` replaces the autopush-style JSON error (e.g. Apple's
    ``{"reason": "BadJwtToken"}``); ``never_answer`` holds the stream until the client gives
    up or the fake stops."""

    status: int
    retry_after: str | None = None
    body: bytes | None = None
    never_answer: bool = False


NEVER_ANSWER = Reply(0, never_answer=True)


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the fake saw it, accepted or not."""

    subscription: str  # the endpoint URL
    status: int  # what the fake answered (0: never answered)
    http_version: str
    headers: dict[str, str]  # lower-case names
    error: str | None = None  # why it was refused
    vapid_token: str | None = None
    vapid_key: str | None = None
    claims: dict[str, Any] | None = None
    message: dict[str, Any] | None = None  # the decrypted JSON, when delivered


@dataclass(slots=True)
class _Subscription:
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    public: bytes
    auth: bytes
    server_key: bytes | None  # applicationServerKey: only this VAPID key may send
    script: deque[Reply] = field(default_factory=deque)
    dead: int | None = None
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)  # topic/id -> message


class _Refused(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def decrypt(body: bytes, ua_private: ec.EllipticCurvePrivateKey, auth_secret: bytes) -> bytes:
    """RFC 8291 §3 / RFC 8188 ``aes128gcm`` decryption, as the user agent does it."""
    if len(body) < 21:
        raise ValueError("shorter than the aes128gcm header")
    salt = body[:16]
    rs, idlen = struct.unpack("!IB", body[16:21])
    as_public = body[21 : 21 + idlen]
    records = body[21 + idlen :]
    if idlen != 65 or rs < 18 or not records:
        raise ValueError("bad aes128gcm header")
    as_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), as_public)
    ua_public = _point(ua_private.public_key())
    ecdh = ua_private.exchange(ec.ECDH(), as_key)

    def hkdf(ikm: bytes, salt_: bytes, info: bytes, n: int) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=n, salt=salt_, info=info).derive(ikm)

    ikm = hkdf(ecdh, auth_secret, b"WebPush: info\x00" + ua_public + as_public, 32)
    aead = AESGCM(hkdf(ikm, salt, b"Content-Encoding: aes128gcm\x00", 16))
    base_nonce = hkdf(ikm, salt, b"Content-Encoding: nonce\x00", 12)

    out = bytearray()
    chunks = [records[i : i + rs] for i in range(0, len(records), rs)]
    for seq, chunk in enumerate(chunks):
        nonce = base_nonce[:4] + (int.from_bytes(base_nonce[4:], "big") ^ seq).to_bytes(8, "big")
        try:
            padded = aead.decrypt(nonce, chunk, None)
        except InvalidTag as exc:
            raise ValueError("record does not authenticate") from exc
        data = padded.rstrip(b"\x00")
        want = 2 if seq == len(chunks) - 1 else 1
        if not data or data[-1] != want:
            raise ValueError(f"record {seq}: padding delimiter is not {want}")
        out += data[:-1]
    return bytes(out)


class FakeWebPush(FakeServer):
    """The push service and the browser behind it, over TLS with HTTP/2 (and HTTP/1.1)."""

    name = "webpush"

    def __init__(
        self, *, clock: Callable[[], float] = time.time, cert_dir: str | Path | None = None
    ) -> None:
        super().__init__(cert_dir=cert_dir)
        self._clock = clock
        self._subs: dict[str, _Subscription] = {}  # path -> subscription
        self.received: list[Received] = []

    # -- what tests call

    @property
    def origin(self) -> str:
        return self.url

    def subscribe(self, *, application_server_key: str | None = None) -> tuple[str, str, str]:
        """A new subscription: ``(endpoint, p256dh, auth)`` as ``PushSubscription.toJSON()``
        gives them. With ``application_server_key`` only that VAPID key may send to it."""
        key = ec.generate_private_key(ec.SECP256R1())
        path = f"/wpush/v2/{secrets.token_urlsafe(24)}"
        sub = _Subscription(
            endpoint=self.url + path,
            private_key=key,
            public=_point(key.public_key()),
            auth=secrets.token_bytes(16),
            server_key=_unb64url(application_server_key) if application_server_key else None,
        )
        self._subs[path] = sub
        return sub.endpoint, _b64url(sub.public), _b64url(sub.auth)

    def script(self, endpoint: str, *replies: Reply) -> None:
        """Answer the next requests to ``endpoint`` with ``replies``, then normally again."""
        self._sub(endpoint).script.extend(replies)

    def unsubscribe(self, endpoint: str, status: int = 410) -> None:
        """The user revoked it: every later request gets ``status`` (404 or 410)."""
        self._sub(endpoint).dead = status

    def requests(self, endpoint: str | None = None) -> list[Received]:
        return [r for r in self.received if endpoint is None or r.subscription == endpoint]

    def delivered(self, endpoint: str) -> list[dict[str, Any]]:
        """Every message accepted for ``endpoint``, decrypted, in arrival order."""
        return [r.message for r in self.requests(endpoint) if r.message is not None]

    def shown(self, endpoint: str) -> list[dict[str, Any]]:
        """What the user sees: one message per ``Topic`` (the latest), untopiced ones all."""
        return list(self._sub(endpoint).pending.values())

    def stats(self) -> dict[str, Any]:
        by_status: dict[str, int] = {}
        for r in self.received:
            by_status[str(r.status)] = by_status.get(str(r.status), 0) + 1
        return {"requests": len(self.received), "by_status": by_status}

    def _sub(self, endpoint: str) -> _Subscription:
        return self._subs[urlsplit(endpoint).path]

    # -- the push service

    async def handle(
        self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        got = await read_body(receive, MAX_BODY)
        if got is None:
            return
        body, size = got
        sub = self._subs.get(scope["path"])
        seen: dict[str, Any] = {
            "subscription": sub.endpoint if sub else self.url + scope["path"],
            "http_version": scope["http_version"],
            "headers": headers,
        }
        try:
            if sub is None:
                raise _Refused(404, "no such subscription")
            if scope["method"] != "POST":
                raise _Refused(405, "push with POST")
            if sub.dead is not None:
                raise _Refused(sub.dead, "subscription expired or unsubscribed")
            seen.update(self._check_vapid(headers.get("authorization"), sub))
            self._check_headers(headers)
            if size > MAX_BODY:
                raise _Refused(413, f"body of {size} octets > {MAX_BODY}")
        except _Refused as refused:
            self.received.append(Received(status=refused.status, error=refused.error, **seen))
            await respond(send, refused.status, _error_body(refused.status, refused.error))
            return

        reply = sub.script.popleft() if sub.script else None
        if reply is not None and reply.never_answer:
            self.received.append(Received(status=0, error="never answered", **seen))
            if await wait_for_disconnect_or(receive, self.released):
                await respond(send, 503, _error_body(503, "shutting down"))
            return
        if reply is not None:
            self.received.append(Received(status=reply.status, error="scripted", **seen))
            extra = [(b"retry-after", reply.retry_after.encode())] if reply.retry_after else []
            error = reply.body if reply.body is not None else _error_body(reply.status, "scripted")
            await respond(send, reply.status, error, extra)
            return

        try:
            message = json.loads(decrypt(body, sub.private_key, sub.auth))
        except ValueError as exc:
            self.received.append(Received(status=400, error=f"undecryptable: {exc}", **seen))
            await respond(send, 400, _error_body(400, f"undecryptable: {exc}"))
            return
        self.received.append(Received(status=201, message=message, **seen))
        message_id = secrets.token_urlsafe(12)
        topic = headers.get("topic")
        if topic is not None:  # RFC 8030 §5.4: replaces the pending message with this topic
            sub.pending.pop(topic, None)
        sub.pending[topic or message_id] = message
        location = f"{self.url}/m/{message_id}".encode()
        await respond(send, 201, headers=[(b"location", location)])

    def _check_vapid(self, value: str | None, sub: _Subscription) -> dict[str, Any]:
        if not value:
            raise _Refused(401, "no VAPID Authorization")
        scheme, _, rest = value.partition(" ")
        params: dict[str, str] = {}
        for param in rest.split(","):
            name, _, val = param.strip().partition("=")
            params[name.lower()] = val
        token, k = params.get("t"), params.get("k")
        if scheme.lower() != "vapid" or not token or not k:
            raise _Refused(401, "Authorization is not 'vapid t=..., k=...'")
        try:
            key_bytes = _unb64url(k)
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key_bytes)
            head_b64, claims_b64, sig_b64 = token.split(".")
            head = json.loads(_unb64url(head_b64))
            claims = json.loads(_unb64url(claims_b64))
            sig = _unb64url(sig_b64)
        except (ValueError, binascii.Error) as exc:
            raise _Refused(403, f"malformed VAPID: {exc}") from exc
        if not isinstance(head, dict) or not isinstance(claims, dict):
            raise _Refused(403, "VAPID JWT parts are not JSON objects")
        if head.get("alg") != "ES256" or len(sig) != 64:
            raise _Refused(403, "VAPID JWT is not ES256")
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        try:
            key.verify(der, f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature as exc:
            raise _Refused(403, "VAPID signature does not verify with k") from exc
        now = self._clock()
        exp = claims.get("exp")
        if claims.get("aud") != self.origin:
            raise _Refused(403, f"aud {claims.get('aud')!r} is not {self.origin!r}")
        if not isinstance(exp, int) or exp <= now:
            raise _Refused(403, "VAPID JWT expired")
        if exp > now + MAX_VAPID_LIFETIME_S:
            raise _Refused(403, "VAPID exp more than 24 h ahead")
        sub_claim = claims.get("sub")
        if not isinstance(sub_claim, str) or not sub_claim.startswith(("mailto:", "https:")):
            raise _Refused(403, "VAPID sub is not a mailto: or https: contact")
        if sub.server_key is not None and key_bytes != sub.server_key:
            raise _Refused(403, "VAPID key is not the subscription's applicationServerKey")
        return {"vapid_token": token, "vapid_key": k, "claims": claims}

    @staticmethod
    def _check_headers(headers: dict[str, str]) -> None:
        ttl = headers.get("ttl")
        if ttl is None or not ttl.isdigit():
            raise _Refused(400, "TTL header missing or not a non-negative integer")
        topic = headers.get("topic")
        if topic is not None and not _TOPIC.fullmatch(topic):
            raise _Refused(400, "Topic must be 1-32 URL-safe base64 characters")
        urgency = headers.get("urgency")
        if urgency is not None and urgency not in _URGENCIES:
            raise _Refused(400, f"bad Urgency {urgency!r}")
        if headers.get("content-encoding") != "aes128gcm":
            raise _Refused(415, "Content-Encoding must be aes128gcm")


def _error_body(status: int, message: str) -> bytes:
    """Errors the way autopush words them."""
    phrase = _PHRASES.get(status, "Error")
    return json.dumps({"code": status, "errno": 999, "error": phrase, "message": message}).encode()


if __name__ == "__main__":
    run_process(FakeWebPush())

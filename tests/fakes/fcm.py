"""A fake FCM: Google's OAuth token endpoint and FCM HTTP v1 ``messages:send``, over real
TLS with HTTP/2.

``POST /token`` (form ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=``)
checks the assertion: RS256 signed by the configured service-account key, ``iss`` = the
``client_email``, ``aud`` = ``{url}/token`` (or one of ``extra_audiences``), ``scope``
containing ``https://www.googleapis.com/auth/firebase.messaging``, ``exp - iat <= 3600``
and ``exp`` not passed by ``clock()``. Answers ``{"access_token", "expires_in": 3600,
"token_type": "Bearer"}``; errors are Google's OAuth JSON, 400 ``{"error": "invalid_grant",
"error_description": ...}`` (``unsupported_grant_type`` / ``invalid_request`` for a bad
form, ``invalid_scope`` when the messaging scope is missing).

``POST /v1/projects/{project_id}/messages:send`` checks, answering in FCM v1's error
format (``{"error": {"code", "message", "status", "details": [...]}}``):

- ``Authorization: Bearer <access token>`` issued here and not expired → else 401
  UNAUTHENTICATED; the project id is this fake's → else 403 PERMISSION_DENIED;
- the body is JSON ``{"message": {...}}`` with only FCM's message fields; a ``token``
  (else 400 INVALID_ARGUMENT, no field violation), well formed (printable, no spaces,
  ≤ 4096 chars; else 400 INVALID_ARGUMENT with a ``google.rpc.BadRequest`` field violation
  on ``message.token`` — the one INVALID_ARGUMENT that means "forget this token");
- ``data`` / ``android.data`` values all strings, no reserved key (``from``,
  ``message_type``, ``google*``, ``gcm*``); ``notification`` fields strings;
  ``android.priority`` normal/high; ``android.ttl`` like ``"3.5s"``, at most 28 days;
  the compact message JSON at most 4096 bytes — each else 400 INVALID_ARGUMENT with a
  field violation on the offending payload field.

Then a scripted answer (see :meth:`FakeFCM.script`), else 200 ``{"name":
"projects/{id}/messages/{id}"}``.

Run as a process: ``python -m tests.fakes.fcm --cert-dir D --key-file SA_PUBKEY.pem
--project-id P --client-email E [--port N] [--latency-ms MS] [--no-record]``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope

from tests.fakes.tls import (
    FakeServer,
    Scripts,
    read_body,
    respond,
    run_process,
    wait_for_disconnect_or,
)

__all__ = ["FCMMessage", "FCMRejection", "FakeFCM", "FcmErrorCode", "ScriptedError"]

MESSAGING_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MAX_MESSAGE = 4096
MAX_TTL_S = 28 * 24 * 3600
MAX_ASSERTION_LIFETIME_S = 3600
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"

FcmErrorCode = Literal[
    "UNREGISTERED",
    "INVALID_ARGUMENT",
    "SENDER_ID_MISMATCH",
    "QUOTA_EXCEEDED",
    "UNAVAILABLE",
    "INTERNAL",
    "THIRD_PARTY_AUTH_ERROR",
]

#: FCM error code → (HTTP status, google.rpc status, message Google sends).
ERRORS: dict[str, tuple[int, str, str]] = {
    "UNREGISTERED": (404, "NOT_FOUND", "Requested entity was not found."),
    "INVALID_ARGUMENT": (400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED", "SenderId mismatch"),
    "QUOTA_EXCEEDED": (429, "RESOURCE_EXHAUSTED", "Quota exceeded for sending messages."),
    "UNAVAILABLE": (503, "UNAVAILABLE", "The service is currently unavailable."),
    "INTERNAL": (500, "INTERNAL", "Internal error encountered."),
    "THIRD_PARTY_AUTH_ERROR": (401, "UNAUTHENTICATED", "Auth error from APNS or Web Push."),
}
BAD_TOKEN_MESSAGE = "The registration token is not a valid FCM registration token"

_SEND_PATH = re.compile(r"/v1/projects/([^/]+)/messages:send")
_TTL = re.compile(r"(\d+)(\.\d{1,9})?s")
_MESSAGE_FIELDS = frozenset(
    {"name", "data", "notification", "android", "webpush", "apns", "fcm_options", "fcmOptions"}
    | {"token", "topic", "condition"}
)
_ANDROID_FIELDS = frozenset(
    {"collapse_key", "collapseKey", "priority", "ttl", "restricted_package_name"}
    | {"restrictedPackageName", "data", "notification", "fcm_options", "fcmOptions"}
    | {"direct_boot_ok", "directBootOk", "bandwidth_constrained_ok", "bandwidthConstrainedOk"}
    | {"restricted_satellite_ok", "restrictedSatelliteOk"}
)


@dataclass(frozen=True, slots=True)
class FCMMessage:
    """One accepted message, as the fake received it."""

    token: str
    name: str  # what the fake answered: projects/{id}/messages/{id}
    message: dict[str, Any]  # the request's "message" object
    collapse_key: str | None  # android.collapse_key
    arrived_at: float  # clock()

    @property
    def displayed(self) -> bool:
        """A notification message (the phone shows it); data-only messages are not."""
        android = self.message.get("android") or {}
        return bool(self.message.get("notification") or android.get("notification"))


@dataclass(frozen=True, slots=True)
class FCMRejection:
    token: str | None
    status: int
    error: str  # FCM error code (UNREGISTERED, ...), else the google.rpc status
    message: str
    arrived_at: float
    scripted: bool = False


@dataclass(frozen=True, slots=True)
class ScriptedError:
    error: str
    variant: Literal["token", "payload"] = "token"
    retry_after: float | None = None
    never_answer: bool = False


@dataclass(frozen=True, slots=True)
class ScriptedOAuth:
    status: int
    error: str
    description: str
    never_answer: bool = False


@dataclass(slots=True)
class _Error:
    status: int
    rpc_status: str
    message: str
    fcm_code: str | None = None
    bad_field: str | None = None  # a google.rpc.BadRequest field violation
    headers: list[tuple[bytes, bytes]] = dataclasses.field(default_factory=list)

    def body(self) -> bytes:
        details: list[dict[str, Any]] = []
        if self.fcm_code is not None:
            details.append({"@type": FCM_ERROR, "errorCode": self.fcm_code})
        if self.bad_field is not None:
            violation = {"field": self.bad_field, "description": self.message}
            details.append({"@type": BAD_REQUEST, "fieldViolations": [violation]})
        error: dict[str, Any] = {
            "code": self.status,
            "message": self.message,
            "status": self.rpc_status,
        }
        if details:
            error["details"] = details
        return json.dumps({"error": error}).encode()


def _invalid(message: str, field: str | None) -> _Error:
    return _Error(400, "INVALID_ARGUMENT", message, "INVALID_ARGUMENT", field)


RSAKey = str | bytes | rsa.RSAPublicKey | rsa.RSAPrivateKey


def load_rsa_public_key(key: RSAKey) -> rsa.RSAPublicKey:
    """An RSA public key from a PEM (public, or the private key it belongs to) or a key."""
    if isinstance(key, rsa.RSAPrivateKey):
        key = key.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        loaded: object = key
    else:
        data = key.encode() if isinstance(key, str) else key
        try:
            loaded = serialization.load_pem_public_key(data)
        except ValueError:
            loaded = serialization.load_pem_private_key(data, password=None).public_key()
    if not isinstance(loaded, rsa.RSAPublicKey):
        raise ValueError("service-account keys are RSA")
    return loaded


class FakeFCM(FakeServer):
    """Fake FCM for one Firebase project and one service account.

    Records, for the tests: ``accepted`` (:class:`FCMMessage`), ``rejected``
    (:class:`FCMRejection`), ``tokens_issued`` (access tokens minted at ``/token``) and
    ``assertions`` (every assertion string presented there). With ``record=False`` only
    counters are kept (:meth:`stats`). ``latency_s`` delays every ``messages:send`` answer.
    """

    name = "fcm"

    def __init__(
        self,
        *,
        project_id: str,
        client_email: str,
        public_key: RSAKey,
        clock: Callable[[], float] = time.time,
        access_token_ttl_s: int = 3600,
        extra_audiences: Iterable[str] = (),
        cert_dir: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_concurrent_streams: int = 1000,
        latency_s: float = 0.0,
        record: bool = True,
    ) -> None:
        super().__init__(
            cert_dir=cert_dir, host=host, port=port, max_concurrent_streams=max_concurrent_streams
        )
        self.project_id = project_id
        self.client_email = client_email
        self.public_key = load_rsa_public_key(public_key)
        self.clock = clock
        self.access_token_ttl_s = access_token_ttl_s
        self.extra_audiences = frozenset(extra_audiences)
        self.latency_s = latency_s
        self.record = record

        self.accepted: list[FCMMessage] = []
        self.rejected: list[FCMRejection] = []
        self.assertions: list[str] = []
        self.tokens_issued = 0
        self.accepted_count = 0
        self.rejected_counts: dict[str, int] = {}
        self.waiting_never_answer = 0
        self._by_device: dict[str, list[FCMMessage]] = {}
        self._access_tokens: dict[str, float] = {}  # token → expires at (clock)
        self._scripts: Scripts[ScriptedError] = Scripts()
        self._oauth_scripts: Scripts[ScriptedOAuth] = Scripts()
        self._serial = 0

    @property
    def token_url(self) -> str:
        """What the client's service account ``token_uri`` must be."""
        return f"{self.url}/token"

    # -- scripting -----------------------------------------------------------------

    def script(
        self,
        token: str | None = None,
        *,
        error: FcmErrorCode | None = None,
        variant: Literal["token", "payload"] = "token",
        retry_after: float | None = None,
        never_answer: bool = False,
        times: int = 1,
    ) -> None:
        """Queue an answer for the next ``times`` valid sends to ``token`` (or to any
        token, if ``None``): ``error="UNREGISTERED"`` (404), ``"INVALID_ARGUMENT"`` (400;
        ``variant="token"`` adds the ``message.token`` field violation, ``"payload"`` one
        on ``message.data``), ``"SENDER_ID_MISMATCH"`` (403), ``"QUOTA_EXCEEDED"`` (429,
        with ``retry_after``), ``"UNAVAILABLE"`` (503), ``"INTERNAL"`` (500),
        ``"THIRD_PARTY_AUTH_ERROR"`` (401); or ``never_answer=True``."""
        if not never_answer and error not in ERRORS:
            raise ValueError(f"error must be one of {sorted(ERRORS)}, or never_answer=True")
        self._scripts.add(
            token, ScriptedError(error or "", variant, retry_after, never_answer), times
        )

    def script_oauth(
        self,
        *,
        status: int = 400,
        error: str = "invalid_grant",
        description: str = "Scripted failure.",
        never_answer: bool = False,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` valid ``/token`` requests fail (or hang)."""
        self._oauth_scripts.add(
            None, ScriptedOAuth(status, error, description, never_answer), times
        )

    def clear_scripts(self) -> None:
        self._scripts.clear()
        self._oauth_scripts.clear()

    def revoke_access_tokens(self) -> None:
        """Every access token issued so far stops working (401 on the next send)."""
        self._access_tokens.clear()

    # -- what the tests look at ----------------------------------------------------

    def messages(self, token: str) -> list[FCMMessage]:
        return list(self._by_device.get(token, ()))

    def shown(self, token: str) -> list[dict[str, Any]]:
        """What the phone displays: its notification messages (data-only ones are not
        shown), where a later one with the same ``android.collapse_key`` (else
        ``android.notification.tag``) replaces the earlier in place."""
        out: list[dict[str, Any]] = []
        where: dict[str, int] = {}
        for m in self._by_device.get(token, ()):
            if not m.displayed:
                continue
            key = m.collapse_key
            if key is None:
                tag = ((m.message.get("android") or {}).get("notification") or {}).get("tag")
                key = tag if isinstance(tag, str) else None
            if key is not None:
                at = where.get(key)
                if at is not None:
                    out[at] = m.message
                    continue
                where[key] = len(out)
            out.append(m.message)
        return out

    def rejections(self, error: str | None = None) -> list[FCMRejection]:
        return [r for r in self.rejected if error is None or r.error == error]

    async def wait_accepted(self, count: int, within_s: float = 5.0) -> None:
        async with asyncio.timeout(within_s):
            while self.accepted_count < count:
                await asyncio.sleep(0.005)

    def clear_records(self) -> None:
        self.accepted.clear()
        self.rejected.clear()
        self._by_device.clear()
        self.accepted_count = 0
        self.rejected_counts.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted_count,
            "rejected": dict(self.rejected_counts),
            "tokens_issued": self.tokens_issued,
            "assertions": len(self.assertions),
            "waiting_never_answer": self.waiting_never_answer,
        }

    # -- request handling ----------------------------------------------------------

    async def handle(
        self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        got = await read_body(receive, 1 << 16)
        if got is None:
            return
        body, size = got
        path: str = scope["path"]
        if path == "/token":
            await self._token(scope, receive, send, body)
            return

        now = self.clock()
        match = _SEND_PATH.fullmatch(path)
        if match is None or scope["method"] != "POST":
            err = _Error(404, "NOT_FOUND", f"Not found: {scope['method']} {path}")
            self._reject(None, err, now, scripted=False)
            await respond(send, err.status, err.body())
            return

        authorization = ""
        for k, v in scope["headers"]:
            if k == b"authorization":
                authorization = v.decode("latin-1")
                break
        checked = self._check(match.group(1), authorization, body, size, now)
        if isinstance(checked, _Error):
            self._reject(None, checked, now, scripted=False)
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            await respond(send, checked.status, checked.body(), checked.headers)
            return

        token, message = checked
        scripted = self._scripts.take(token)
        if scripted is None:
            name = self._accept(token, message, now)
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            await respond(send, 200, json.dumps({"name": name}).encode())
            return
        if scripted.never_answer:
            self.waiting_never_answer += 1
            try:
                if await wait_for_disconnect_or(receive, self.released):
                    err = _Error(503, "UNAVAILABLE", "The service is shutting down.", "UNAVAILABLE")
                    await respond(send, err.status, err.body())
            finally:
                self.waiting_never_answer -= 1
            return
        status, rpc_status, text = ERRORS[scripted.error]
        err = _Error(status, rpc_status, text, scripted.error)
        if scripted.error == "INVALID_ARGUMENT":
            if scripted.variant == "token":
                err.message, err.bad_field = BAD_TOKEN_MESSAGE, "message.token"
            else:
                err.bad_field = "message.data"
        if scripted.retry_after is not None:
            err.headers.append((b"retry-after", f"{scripted.retry_after:g}".encode()))
        self._reject(token, err, now, scripted=True)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        await respond(send, err.status, err.body(), err.headers)

    def _check(
        self, project_id: str, authorization: str, body: bytes, size: int, now: float
    ) -> tuple[str, dict[str, Any]] | _Error:
        scheme, _, access_token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not access_token:
            return _Error(
                401,
                "UNAUTHENTICATED",
                "Request is missing required authentication credential. "
                "Expected OAuth 2 access token, login cookie or other valid authentication "
                "credential.",
                headers=[(b"www-authenticate", b"Bearer")],
            )
        expires_at = self._access_tokens.get(access_token.strip())
        if expires_at is None or now >= expires_at:
            return _Error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
                headers=[(b"www-authenticate", b'Bearer error="invalid_token"')],
            )
        if project_id != self.project_id:
            return _Error(
                403,
                "PERMISSION_DENIED",
                f"Permission 'cloudmessaging.messages.create' denied on resource "
                f"'//cloudresourcemanager.googleapis.com/projects/{project_id}' "
                "(or it may not exist).",
            )

        if size > len(body):
            return _invalid("Message is too big", "message")
        try:
            request = json.loads(body)
        except ValueError:
            return _Error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        message = request.get("message") if isinstance(request, dict) else None
        if not isinstance(message, dict):
            return _Error(400, "INVALID_ARGUMENT", "Invalid JSON payload: no 'message'.")
        unknown = set(message) - _MESSAGE_FIELDS
        if unknown:
            name = sorted(unknown)[0]
            return _Error(
                400,
                "INVALID_ARGUMENT",
                f"Invalid JSON payload received. Unknown name \"{name}\" at 'message': "
                "Cannot find field.",
            )

        token = message.get("token")
        if token is None:
            if "topic" in message or "condition" in message:
                return _invalid("This fake delivers to registration tokens only.", None)
            return _invalid("Recipient of the message is not set.", None)
        if (
            not isinstance(token, str)
            or not token
            or len(token) > 4096
            or not token.isprintable()
            or not token.isascii()
            or " " in token
        ):
            return _invalid(BAD_TOKEN_MESSAGE, "message.token")

        problem = self._check_payload(message)
        if problem is not None:
            return problem
        if size > MAX_MESSAGE:  # measured as FCM does: the message, compact
            compact = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
            if len(compact.encode()) > MAX_MESSAGE:
                return _invalid("Message is too big", "message")
        return token, message

    @staticmethod
    def _check_payload(message: dict[str, Any]) -> _Error | None:
        def check_data(data: Any, where: str) -> _Error | None:
            if data is None:
                return None
            if not isinstance(data, dict):
                return _invalid(f"Invalid value at '{where}': expected a map.", where)
            for key, value in data.items():
                if not isinstance(value, str):
                    return _invalid(
                        f"Invalid value at '{where}[{key}]' (TYPE_STRING), {value!r}",
                        f"{where}[{key}]",
                    )
                low = key.lower()
                if low in ("from", "message_type") or low.startswith(("google", "gcm")):
                    return _invalid(f"Invalid data payload key: {key}", f"{where}[{key}]")
            return None

        def check_strings(obj: Any, where: str) -> _Error | None:
            if obj is None:
                return None
            if not isinstance(obj, dict):
                return _invalid(f"Invalid value at '{where}': expected an object.", where)
            for key, value in obj.items():
                if isinstance(value, dict | list):
                    continue
                if not isinstance(value, str | bool | int):
                    return _invalid(f"Invalid value at '{where}.{key}'", f"{where}.{key}")
            return None

        problem = check_data(message.get("data"), "message.data")
        if problem is not None:
            return problem
        notification = message.get("notification")
        if notification is not None and (
            not isinstance(notification, dict)
            or not all(isinstance(v, str) for v in notification.values())
        ):
            return _invalid("Invalid value at 'message.notification'", "message.notification")

        android = message.get("android")
        if android is not None:
            if not isinstance(android, dict):
                return _invalid("Invalid value at 'message.android'", "message.android")
            unknown = set(android) - _ANDROID_FIELDS
            if unknown:
                name = sorted(unknown)[0]
                return _Error(
                    400,
                    "INVALID_ARGUMENT",
                    f'Invalid JSON payload received. Unknown name "{name}" at '
                    "'message.android': Cannot find field.",
                )
            collapse_key = android.get("collapse_key", android.get("collapseKey"))
            if collapse_key is not None and not isinstance(collapse_key, str):
                return _invalid(
                    "Invalid value at 'message.android.collapse_key'",
                    "message.android.collapse_key",
                )
            priority = android.get("priority")
            if priority is not None and (
                not isinstance(priority, str) or priority.lower() not in ("normal", "high")
            ):
                return _invalid(
                    f"Invalid value at 'message.android.priority', {priority!r}",
                    "message.android.priority",
                )
            ttl = android.get("ttl")
            if ttl is not None:
                m = _TTL.fullmatch(ttl) if isinstance(ttl, str) else None
                if m is None or int(m.group(1)) > MAX_TTL_S:
                    return _invalid(
                        f"Invalid value at 'message.android.ttl' (type.googleapis.com/"
                        f"google.protobuf.Duration), {ttl!r}",
                        "message.android.ttl",
                    )
            problem = check_data(android.get("data"), "message.android.data")
            if problem is not None:
                return problem
            problem = check_strings(android.get("notification"), "message.android.notification")
            if problem is not None:
                return problem

        apns = message.get("apns")
        if apns is not None:
            if not isinstance(apns, dict):
                return _invalid("Invalid value at 'message.apns'", "message.apns")
            headers = apns.get("headers")
            if headers is not None and (
                not isinstance(headers, dict)
                or not all(isinstance(v, str) for v in headers.values())
            ):
                return _invalid("Invalid value at 'message.apns.headers'", "message.apns.headers")
            payload = apns.get("payload")
            if payload is not None and not isinstance(payload, dict):
                return _invalid("Invalid value at 'message.apns.payload'", "message.apns.payload")
        return None

    def _accept(self, token: str, message: dict[str, Any], now: float) -> str:
        self.accepted_count += 1
        self._serial += 1
        name = f"projects/{self.project_id}/messages/0:{self._serial}%{secrets.token_hex(8)}"
        if self.record:
            android = message.get("android") or {}
            collapse_key = android.get("collapse_key", android.get("collapseKey"))
            m = FCMMessage(token, name, message, collapse_key, now)
            self.accepted.append(m)
            self._by_device.setdefault(token, []).append(m)
        return name

    def _reject(self, token: str | None, err: _Error, now: float, *, scripted: bool) -> None:
        code = err.fcm_code or err.rpc_status
        self.rejected_counts[code] = self.rejected_counts.get(code, 0) + 1
        if self.record:
            self.rejected.append(FCMRejection(token, err.status, code, err.message, now, scripted))

    # -- the OAuth token endpoint --------------------------------------------------

    async def _token(
        self,
        scope: HTTPScope,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
        body: bytes,
    ) -> None:
        def oauth_error(status: int, error: str, description: str) -> Any:
            payload = {"error": error, "error_description": description}
            return respond(send, status, json.dumps(payload).encode())

        if scope["method"] != "POST":
            await oauth_error(405, "invalid_request", "Use POST.")
            return
        form = parse_qs(body.decode("latin-1"), keep_blank_values=True)
        grant_type = form.get("grant_type", [""])[0]
        assertion = form.get("assertion", [""])[0]
        if grant_type != JWT_BEARER:
            await oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")
            return
        if not assertion:
            await oauth_error(400, "invalid_request", "Missing required parameter: assertion")
            return
        self.assertions.append(assertion)
        refused = self._check_assertion(assertion)
        if refused is not None:
            await oauth_error(400, *refused)
            return
        scripted = self._oauth_scripts.take("")
        if scripted is not None:
            if scripted.never_answer:
                self.waiting_never_answer += 1
                try:
                    if await wait_for_disconnect_or(receive, self.released):
                        await oauth_error(503, "temporarily_unavailable", "Shutting down.")
                finally:
                    self.waiting_never_answer -= 1
                return
            await oauth_error(scripted.status, scripted.error, scripted.description)
            return

        access_token = "ya29.fake-" + secrets.token_urlsafe(32)
        self._access_tokens[access_token] = self.clock() + self.access_token_ttl_s
        self.tokens_issued += 1
        payload = {
            "access_token": access_token,
            "expires_in": self.access_token_ttl_s,
            "token_type": "Bearer",
        }
        await respond(send, 200, json.dumps(payload).encode(), [(b"cache-control", b"no-store")])

    def _check_assertion(self, assertion: str) -> tuple[str, str] | None:
        """``(error, description)`` if the assertion is refused."""
        try:
            header = jwt.get_unverified_header(assertion)
            if header.get("alg") != "RS256":
                return "invalid_grant", "Invalid JWT Signature."
            claims = jwt.decode(
                assertion,
                self.public_key,
                algorithms=["RS256"],
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
        except jwt.PyJWTError:
            return "invalid_grant", "Invalid JWT Signature."
        if claims.get("iss") != self.client_email:
            return "invalid_grant", "Invalid grant: account not found"
        aud = claims.get("aud")
        if aud != self.token_url and aud not in self.extra_audiences:
            return "invalid_grant", f"Invalid JWT: Failed audience check. Expected {self.token_url}"
        iat, exp = claims.get("iat"), claims.get("exp")
        if (
            type(iat) is not int
            or type(exp) is not int
            or exp <= iat
            or exp - iat > MAX_ASSERTION_LIFETIME_S
            or exp <= self.clock()
        ):
            return (
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                "reasonable timeframe. Check your iat and exp values in the JWT claim.",
            )
        scope = claims.get("scope")
        if not isinstance(scope, str) or MESSAGING_SCOPE not in scope.split():
            return "invalid_scope", "Invalid OAuth scope or ID token audience provided."
        return None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.fcm", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (see READY)")
    parser.add_argument("--cert-dir", required=True, help="CA/cert/key are made here if absent")
    parser.add_argument("--key-file", required=True, help="the service account's public PEM")
    parser.add_argument("--project-id", required=True)
    parser.add_argument("--client-email", required=True)
    parser.add_argument(
        "--audience", action="append", default=[], help="also accept this assertion aud"
    )
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--max-streams", type=int, default=1000)
    parser.add_argument("--no-record", action="store_true", help="keep counters only")
    args = parser.parse_args(argv)
    run_process(
        FakeFCM(
            project_id=args.project_id,
            client_email=args.client_email,
            public_key=Path(args.key_file).read_bytes(),
            extra_audiences=args.audience,
            cert_dir=args.cert_dir,
            host=args.host,
            port=args.port,
            max_concurrent_streams=args.max_streams,
            latency_s=args.latency_ms / 1000,
            record=not args.no_record,
        )
    )


if __name__ == "__main__":
    main()

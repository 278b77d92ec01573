"""A fake APNs: Apple's HTTP/2 provider API (``POST /3/device/<token>``) over real TLS.

Checks, in this order, each answered as Apple does (status, JSON ``{"reason": ...}``,
the ``apns-id`` header; 410 adds ``"timestamp"`` in ms):

- method POST (405 MethodNotAllowed), path ``/3/device/<token>`` (404 BadPath), no header
  sent twice (400 DuplicateHeaders);
- provider token (``authorization: bearer <jwt>``): missing → 403 MissingProviderToken;
  not ES256 / wrong ``kid`` / wrong ``iss`` / bad signature / no integer ``iat`` → 403
  InvalidProviderToken; ``iat`` more than 1 h before ``clock()`` → 403
  ExpiredProviderToken; a token string different from the last accepted one of the team
  and minted (``iat``) less than 20 min after it → 429 TooManyProviderTokenUpdates. That
  token stays refused (its ``iat`` never moves); the previously accepted one keeps working
  until it expires. A token is verified once per distinct string (cached), so a benchmark
  pays for one signature check, not one per notification;
- ``apns-topic`` missing → 400 MissingTopic, not the configured bundle id → 400
  TopicDisallowed; ``apns-push-type`` missing or not ``alert``/``background`` → 400
  InvalidPushType; ``apns-priority`` not 5/10 → 400 BadPriority; ``apns-expiration`` not
  an integer → 400 BadExpirationDate; ``apns-id`` not a UUID → 400 BadMessageId;
  ``apns-collapse-id`` over 64 bytes → 400 BadCollapseId;
- device token not 64 hex characters → 400 BadDeviceToken (empty → MissingDeviceToken);
- body empty → 400 PayloadEmpty; over 4096 bytes → 413 PayloadTooLarge; not a JSON object
  with an ``aps`` object → 400 **BadPayload** (not an Apple reason: Apple's answer to
  malformed JSON is undocumented; this one makes a worker bug obvious).

Then a scripted answer, if one is queued for the token (or globally), is given instead of
success: see :meth:`FakeAPNs.script`. Success is 200 with an empty body and ``apns-id``
(the request's, else a new UUID).

Not modelled: sandbox vs production (one fake = one environment), GOAWAY frames,
certificate auth, push types other than alert/background, the 5120-byte VoIP limit.

Two engines: Hypercorn (the default) or, with ``engine="h2"``, the raw-h2 server of
:mod:`tests.fakes.h2server` (same checks and scripting, a fraction of the CPU per request:
for benchmarks).

Run as a process: ``python -m tests.fakes.apns --cert-dir D --key-file PUBKEY.pem
--team-id T --key-id K --topic BUNDLE [--port N] [--latency-ms MS] [--no-record]
[--engine h2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope

from tests.fakes.h2server import Engine, H2FakeServer, H2Request
from tests.fakes.tls import (
    Scripts,
    read_body,
    respond,
    run_process,
    wait_for_disconnect_or,
)

__all__ = ["APNsNotification", "APNsRejection", "FakeAPNs", "ProviderToken", "ScriptedAnswer"]

MAX_PAYLOAD = 4096
MAX_COLLAPSE_ID = 64
TOKEN_MAX_AGE_S = 3600
TOKEN_MIN_REFRESH_S = 20 * 60
PUSH_TYPES = frozenset({"alert", "background"})

_DEVICE_TOKEN = re.compile(r"[0-9a-fA-F]{64}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_PATH_PREFIX = "/3/device/"


@dataclass(frozen=True, slots=True)
class APNsNotification:
    """One accepted notification, as the fake received it."""

    token: str
    apns_id: str
    collapse_id: str | None
    push_type: str
    priority: int
    topic: str
    expiration: int | None
    headers: dict[str, str]  # every request header but ``authorization`` and pseudo-headers
    payload: dict[str, Any]
    arrived_at: float  # clock()


@dataclass(frozen=True, slots=True)
class APNsRejection:
    token: str | None
    status: int
    reason: str
    arrived_at: float
    scripted: bool = False


@dataclass(slots=True)
class ProviderToken:
    """A distinct provider-token string presented to the fake (in first-seen order)."""

    token: str
    iat: int | None  # None when the token could not be verified
    first_seen: float  # clock()
    first_answer: str  # "accepted", or the reason of the first refusal
    accepted: bool = False
    uses: int = 0


@dataclass(frozen=True, slots=True)
class ScriptedAnswer:
    status: int
    reason: str
    timestamp_ms: int | None = None
    retry_after: float | None = None
    never_answer: bool = False


@dataclass(frozen=True, slots=True)
class _Verified:
    iat: int


@dataclass(slots=True)
class _Answer:
    status: int
    reason: str
    extra_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    timestamp_ms: int | None = None


_HOLD = _Answer(0, "")  # sentinel: a scripted stream that is never answered
_SHUTDOWN = _Answer(503, "Shutdown")  # what a held stream gets when the fake stops


ECKey = str | bytes | ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey


def load_ec_public_key(key: ECKey) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from a PEM (public, or the private key it belongs to) or a key."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        key = key.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        loaded: object = key
    else:
        data = key.encode() if isinstance(key, str) else key
        try:
            loaded = serialization.load_pem_public_key(data)
        except ValueError:
            loaded = serialization.load_pem_private_key(data, password=None).public_key()
    if not isinstance(loaded, ec.EllipticCurvePublicKey) or loaded.curve.name != "secp256r1":
        raise ValueError("APNs keys are EC P-256")
    return loaded


class FakeAPNs(H2FakeServer):
    """Fake APNs for one team, one signing key and one app (bundle id = ``topic``).

    Records, for the tests: ``accepted`` (every accepted :class:`APNsNotification`),
    ``rejected`` (every :class:`APNsRejection`, scripted or not), ``provider_tokens``
    (every distinct provider token, :class:`ProviderToken`). With ``record=False`` only
    the counters are kept (see :meth:`stats`), for long benchmarks. ``latency_s`` delays
    every answer, like the real round trip to Apple. ``engine="h2"`` serves without
    Hypercorn (see :mod:`tests.fakes.h2server`).
    """

    name = "apns"

    def __init__(
        self,
        *,
        team_id: str,
        key_id: str,
        public_key: ECKey,
        topic: str,
        clock: Callable[[], float] = time.time,
        cert_dir: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_concurrent_streams: int = 1000,
        latency_s: float = 0.0,
        record: bool = True,
        engine: Engine = "hypercorn",
    ) -> None:
        super().__init__(
            engine=engine,
            max_body=MAX_PAYLOAD,
            cert_dir=cert_dir,
            host=host,
            port=port,
            max_concurrent_streams=max_concurrent_streams,
        )
        self.team_id = team_id
        self.key_id = key_id
        self.public_key = load_ec_public_key(public_key)
        self.topic = topic
        self.clock = clock
        self.latency_s = latency_s
        self.record = record

        self.accepted: list[APNsNotification] = []
        self.rejected: list[APNsRejection] = []
        self.provider_tokens: dict[str, ProviderToken] = {}
        self.accepted_count = 0
        self.rejected_counts: dict[str, int] = {}
        self.waiting_never_answer = 0
        self._by_device: dict[str, list[APNsNotification]] = {}
        self._verified: dict[str, _Verified | str] = {}  # token string → claims or reason
        self._latest_iat: int | None = None  # of the team's last accepted provider token
        self._scripts: Scripts[ScriptedAnswer] = Scripts()

    # -- scripting -----------------------------------------------------------------

    def script(
        self,
        token: str | None = None,
        *,
        status: int = 0,
        reason: str = "",
        timestamp_ms: int | None = None,
        retry_after: float | None = None,
        never_answer: bool = False,
        times: int = 1,
    ) -> None:
        """Queue an answer for the next ``times`` valid requests to ``token`` (or to any
        token, if ``None``): ``script(t, status=410, reason="Unregistered",
        timestamp_ms=...)`` (timestamp defaults to now), ``status=429,
        reason="TooManyRequests", retry_after=30``, ``never_answer=True`` (the stream is
        accepted but never answered until the client gives up or the fake stops). Scripted
        answers come after every check passes; per-token ones before global ones."""
        if not never_answer and not (status and reason):
            raise ValueError("give status and reason, or never_answer=True")
        answer = ScriptedAnswer(status, reason, timestamp_ms, retry_after, never_answer)
        self._scripts.add(token, answer, times)

    def clear_scripts(self) -> None:
        self._scripts.clear()

    @property
    def scripts_pending(self) -> int:
        return len(self._scripts)

    # -- what the tests look at ----------------------------------------------------

    def notifications(self, token: str) -> list[APNsNotification]:
        """Every accepted notification for one device, in arrival order."""
        return list(self._by_device.get(token, ()))

    def shown(self, token: str) -> list[dict[str, Any]]:
        """What the phone displays: the payloads of its ``alert`` notifications, where a
        later one with the same ``apns-collapse-id`` replaces the earlier in place."""
        out: list[dict[str, Any]] = []
        where: dict[str, int] = {}
        for n in self._by_device.get(token, ()):
            if n.push_type != "alert":
                continue
            if n.collapse_id is not None:
                at = where.get(n.collapse_id)
                if at is not None:
                    out[at] = n.payload
                    continue
                where[n.collapse_id] = len(out)
            out.append(n.payload)
        return out

    @property
    def provider_token_count(self) -> int:
        """How many distinct provider-token strings were presented."""
        return len(self.provider_tokens)

    def rejections(self, reason: str | None = None) -> list[APNsRejection]:
        return [r for r in self.rejected if reason is None or r.reason == reason]

    async def wait_accepted(self, count: int, within_s: float = 5.0) -> None:
        """Wait until at least ``count`` notifications were accepted."""
        async with asyncio.timeout(within_s):
            while self.accepted_count < count:
                await asyncio.sleep(0.005)

    def clear_records(self) -> None:
        """Forget what was received (not the provider-token state, not the scripts)."""
        self.accepted.clear()
        self.rejected.clear()
        self._by_device.clear()
        self.accepted_count = 0
        self.rejected_counts.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted_count,
            "rejected": dict(self.rejected_counts),
            "provider_tokens": len(self.provider_tokens),
            "provider_tokens_accepted": sum(t.accepted for t in self.provider_tokens.values()),
            "waiting_never_answer": self.waiting_never_answer,
        }

    # -- the request handler -------------------------------------------------------

    async def handle(
        self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        got = await read_body(receive, MAX_PAYLOAD)
        if got is None:
            return
        body, size = got
        apns_id, answer = self._process(
            scope["method"], scope["path"], scope["headers"], body, size
        )
        if answer is _HOLD:
            self.waiting_never_answer += 1
            try:
                if await wait_for_disconnect_or(receive, self.released):
                    await respond(send, *self._response(apns_id, _SHUTDOWN))
            finally:
                self.waiting_never_answer -= 1
            return
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        await respond(send, *self._response(apns_id, answer))

    def handle_h2(self, request: H2Request) -> None:
        """The same, for the raw-h2 engine: the answer goes out without a task."""
        apns_id, answer = self._process(
            request.method, request.path, request.headers, request.body, request.size
        )
        if answer is _HOLD:
            self.waiting_never_answer += 1

            def end(released: bool) -> None:
                self.waiting_never_answer -= 1
                if released:
                    request.respond(*self._response(apns_id, _SHUTDOWN))

            request.hold(end)
        elif self.latency_s:
            request.respond_later(self.latency_s, *self._response(apns_id, answer))
        else:
            request.respond(*self._response(apns_id, answer))

    def _process(
        self,
        method: str,
        path: str,
        raw_headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        size: int,
    ) -> tuple[str, _Answer | None]:
        """Check and record one request (both engines): its ``apns-id`` and the answer,
        ``None`` for success, :data:`_HOLD` for a stream never to be answered."""
        headers: dict[str, str] = {}
        duplicate = False
        for k, v in raw_headers:
            name = k.decode("latin-1")
            if name in headers:
                duplicate = True
            headers[name] = v.decode("latin-1")
        now = self.clock()
        token = path[len(_PATH_PREFIX) :] if path.startswith(_PATH_PREFIX) else None
        apns_id = headers.get("apns-id") or str(uuid.uuid4())

        answer = self._check(method, token, headers, duplicate, body, size, now)
        if isinstance(answer, dict):
            assert token is not None
            scripted = self._scripts.take(token)
            if scripted is None:
                self._accept(token, apns_id, headers, answer, now)
                return apns_id, None
            if scripted.never_answer:
                return apns_id, _HOLD
            extra = []
            if scripted.retry_after is not None:
                extra.append((b"retry-after", f"{scripted.retry_after:g}".encode()))
            ts = scripted.timestamp_ms
            if scripted.status == 410 and ts is None:
                ts = int(now * 1000)
            answer = _Answer(scripted.status, scripted.reason, extra, ts)
            self._reject(token, answer, now, scripted=True)
        else:
            self._reject(token, answer, now, scripted=False)
        return apns_id, answer

    def _check(
        self,
        method: str,
        token: str | None,
        headers: dict[str, str],
        duplicate: bool,
        body: bytes,
        size: int,
        now: float,
    ) -> dict[str, Any] | _Answer:
        """The decoded payload if the request is good, else Apple's answer."""
        if method != "POST":
            return _Answer(405, "MethodNotAllowed")
        if token is None:
            return _Answer(404, "BadPath")
        if duplicate:
            return _Answer(400, "DuplicateHeaders")

        refused = self._check_provider_token(headers.get("authorization"), now)
        if refused is not None:
            return refused

        topic = headers.get("apns-topic")
        if not topic:
            return _Answer(400, "MissingTopic")
        if topic != self.topic:
            return _Answer(400, "TopicDisallowed")
        if headers.get("apns-push-type") not in PUSH_TYPES:
            return _Answer(400, "InvalidPushType")
        if headers.get("apns-priority", "10") not in ("5", "10"):
            return _Answer(400, "BadPriority")
        expiration = headers.get("apns-expiration")
        if expiration is not None and not expiration.isdigit():
            return _Answer(400, "BadExpirationDate")
        apns_id = headers.get("apns-id")
        if apns_id is not None and not _UUID.fullmatch(apns_id):
            return _Answer(400, "BadMessageId")
        collapse_id = headers.get("apns-collapse-id")
        if collapse_id is not None and len(collapse_id.encode("latin-1")) > MAX_COLLAPSE_ID:
            return _Answer(400, "BadCollapseId")

        if not token:
            return _Answer(400, "MissingDeviceToken")
        if not _DEVICE_TOKEN.fullmatch(token):
            return _Answer(400, "BadDeviceToken")

        if size == 0:
            return _Answer(400, "PayloadEmpty")
        if size > MAX_PAYLOAD:
            return _Answer(413, "PayloadTooLarge")
        try:
            payload = json.loads(body)
        except ValueError:
            return _Answer(400, "BadPayload")
        if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
            return _Answer(400, "BadPayload")
        return payload

    def _check_provider_token(self, authorization: str | None, now: float) -> _Answer | None:
        if not authorization:
            return _Answer(403, "MissingProviderToken")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _Answer(403, "InvalidProviderToken")

        verified = self._verified.get(token)
        seen = self.provider_tokens.get(token)
        if verified is None:
            verified = self._verify(token)
            if len(self._verified) > 100_000:  # a runaway client: bound the cache
                self._verified.clear()
            self._verified[token] = verified
        if seen is None:
            iat = verified.iat if isinstance(verified, _Verified) else None
            seen = ProviderToken(token, iat, now, first_answer="")
            self.provider_tokens[token] = seen
        seen.uses += 1

        answer: _Answer | None
        if isinstance(verified, str):
            answer = _Answer(403, verified)
        elif now - verified.iat > TOKEN_MAX_AGE_S:
            answer = _Answer(403, "ExpiredProviderToken")
        elif seen.accepted:
            answer = None
        elif self._latest_iat is not None and verified.iat - self._latest_iat < TOKEN_MIN_REFRESH_S:
            answer = _Answer(429, "TooManyProviderTokenUpdates")
        else:
            seen.accepted = True
            self._latest_iat = verified.iat
            answer = None
        if not seen.first_answer:
            seen.first_answer = "accepted" if answer is None else answer.reason
        return answer

    def _verify(self, token: str) -> _Verified | str:
        """Claims of a well-signed token for this team and key, else the refusal reason."""
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != "ES256" or header.get("kid") != self.key_id:
                return "InvalidProviderToken"
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=["ES256"],
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
            return "InvalidProviderToken"
        iat = claims.get("iat")
        if claims.get("iss") != self.team_id or type(iat) is not int:
            return "InvalidProviderToken"
        return _Verified(iat)

    def _accept(
        self,
        token: str,
        apns_id: str,
        headers: dict[str, str],
        payload: dict[str, Any],
        now: float,
    ) -> None:
        self.accepted_count += 1
        if not self.record:
            return
        expiration = headers.get("apns-expiration")
        n = APNsNotification(
            token=token,
            apns_id=apns_id,
            collapse_id=headers.get("apns-collapse-id"),
            push_type=headers["apns-push-type"],
            priority=int(headers.get("apns-priority", "10")),
            topic=headers["apns-topic"],
            expiration=int(expiration) if expiration is not None else None,
            headers={
                k: v for k, v in headers.items() if k != "authorization" and not k.startswith(":")
            },
            payload=payload,
            arrived_at=now,
        )
        self.accepted.append(n)
        self._by_device.setdefault(token, []).append(n)

    def _reject(self, token: str | None, answer: _Answer, now: float, *, scripted: bool) -> None:
        self.rejected_counts[answer.reason] = self.rejected_counts.get(answer.reason, 0) + 1
        if self.record:
            self.rejected.append(APNsRejection(token, answer.status, answer.reason, now, scripted))

    @staticmethod
    def _response(
        apns_id: str, answer: _Answer | None
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """Status, body and headers: 200 with an empty body for ``None``, else Apple's
        JSON reason."""
        if answer is None:
            return 200, b"", [(b"apns-id", apns_id.encode())]
        body: dict[str, Any] = {"reason": answer.reason}
        if answer.timestamp_ms is not None:
            body["timestamp"] = answer.timestamp_ms
        return (
            answer.status,
            json.dumps(body).encode(),
            [(b"apns-id", apns_id.encode()), *answer.extra_headers],
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.apns", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (see READY)")
    parser.add_argument("--cert-dir", required=True, help="CA/cert/key are made here if absent")
    parser.add_argument("--key-file", required=True, help="the signing key's public PEM")
    parser.add_argument("--team-id", required=True)
    parser.add_argument("--key-id", required=True)
    parser.add_argument("--topic", required=True, help="the app's bundle id")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--max-streams", type=int, default=1000)
    parser.add_argument("--no-record", action="store_true", help="keep counters only")
    parser.add_argument(
        "--engine", choices=["hypercorn", "h2"], default="hypercorn", help="h2: no Hypercorn"
    )
    args = parser.parse_args(argv)
    run_process(
        FakeAPNs(
            team_id=args.team_id,
            key_id=args.key_id,
            public_key=Path(args.key_file).read_bytes(),
            topic=args.topic,
            cert_dir=args.cert_dir,
            host=args.host,
            port=args.port,
            max_concurrent_streams=args.max_streams,
            latency_s=args.latency_ms / 1000,
            record=not args.no_record,
            engine=args.engine,
        )
    )


if __name__ == "__main__":
    main()

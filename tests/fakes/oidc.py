"""A fake Apple and Google for signing in: each publishes its keys as a JWKS document over
real HTTP, and signs ID tokens the way it does.

``GET /apple/auth/keys`` and ``GET /google/oauth2/v3/certs`` answer ``{"keys": [...]}`` —
RSA public keys as JWKs (``kty``, ``kid``, ``use: sig``, ``alg: RS256``, ``n``, ``e``), as
Apple's and Google's endpoints do. Each provider's keys are RSA 2048 keys generated here
with ``cryptography``; :meth:`FakeProvider.rotate` publishes a new one (and drops the old, as
a provider eventually does). :meth:`FakeProvider.token` signs claims shaped like the
provider's: Apple's ``nonce`` is the SHA-256 (hex) of the raw nonce and its booleans are
strings (``email_verified: "true"``); Google's nonce is the raw one and carries ``name``.

Every key-set request is counted per provider (``fetches``), so a test can see caching and
refetching. Nothing here reaches the internet.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

__all__ = ["APPLE_AUDIENCE", "GOOGLE_AUDIENCE", "FakeIdentityProviders", "FakeProvider"]

APPLE_AUDIENCE = "dev.kith.app"
GOOGLE_AUDIENCE = "123-kith.apps.googleusercontent.com"


def _key() -> tuple[str, rsa.RSAPrivateKey]:
    return uuid.uuid4().hex[:10], rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class FakeProvider:
    name: str  # apple | google
    issuer: str
    audience: str
    keys: list[tuple[str, rsa.RSAPrivateKey]] = field(default_factory=lambda: [_key()])
    fetches: int = 0

    @property
    def kid(self) -> str:
        return self.keys[-1][0]

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid, private in self.keys:
            jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
            out.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": out}

    def rotate(self) -> str:
        """Publish a new signing key in place of the current one; its kid."""
        self.keys = [_key()]
        return self.kid

    def claims(
        self, subject: str, nonce: str, *, email: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        """The claims the provider would put in a fresh token for ``subject``."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "exp": now + 600,
        }
        if self.name == "apple":
            claims["nonce"] = hashlib.sha256(nonce.encode()).hexdigest()
            claims["nonce_supported"] = True
            claims["auth_time"] = now
            if email is not None:
                claims["email"] = email
                claims["email_verified"] = "true"
                claims["is_private_email"] = (
                    "true" if email.endswith("@privaterelay.appleid.com") else "false"
                )
        else:
            claims["nonce"] = nonce
            claims["azp"] = self.audience
            if email is not None:
                claims["email"] = email
                claims["email_verified"] = True
        claims.update(extra)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(
        self,
        claims: dict[str, Any],
        *,
        key: rsa.RSAPrivateKey | None = None,
        kid: str | None = None,
        algorithm: str = "RS256",
    ) -> str:
        """``claims`` as a compact JWS signed with the current key (or ``key``)."""
        signing_key: Any = key if key is not None else self.keys[-1][1]
        return jwt.encode(
            claims, signing_key, algorithm=algorithm, headers={"kid": kid or self.kid}
        )

    def token(self, subject: str, nonce: str, *, email: str | None = None, **extra: Any) -> str:
        return self.sign(self.claims(subject, nonce, email=email, **extra))


class FakeIdentityProviders:
    """Apple's and Google's key endpoints on one local HTTP server (a thread)."""

    def __init__(self) -> None:
        self.apple = FakeProvider("apple", "https://appleid.apple.com", APPLE_AUDIENCE)
        self.google = FakeProvider("google", "https://accounts.google.com", GOOGLE_AUDIENCE)
        routes = {"/apple/auth/keys": self.apple, "/google/oauth2/v3/certs": self.google}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider = routes.get(self.path)
                if provider is None:
                    self.send_error(404)
                    return
                provider.fetches += 1
                body = json.dumps(provider.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def settings(self) -> dict[str, str]:
        """The API's settings that point both providers here."""
        return {
            "KITH_SIGNIN_APPLE_CLIENT_IDS": f"dev.kith.web,{APPLE_AUDIENCE}",
            "KITH_SIGNIN_APPLE_JWKS_URL": f"{self.base}/apple/auth/keys",
            "KITH_SIGNIN_GOOGLE_CLIENT_IDS": GOOGLE_AUDIENCE,
            "KITH_SIGNIN_GOOGLE_JWKS_URL": f"{self.base}/google/oauth2/v3/certs",
        }

    @contextmanager
    def running(self) -> Iterator[FakeIdentityProviders]:
        self._thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()

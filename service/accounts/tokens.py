"""Access tokens (EdDSA JWTs bound to a device) and opaque refresh tokens.

In development the Ed25519 key pair is generated once into the data folder; in production
it comes from ``KITH_JWT_PRIVATE_KEY`` / ``KITH_JWT_PUBLIC_KEY`` (PEM). Verification pins
the algorithm, so ``alg: none`` or an HS256 token signed with the public key is refused.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "LEEWAY_S",
    "AccessClaims",
    "InvalidToken",
    "TokenIssuer",
    "hash_refresh_token",
    "load_or_create_keys",
]

_ALGORITHM = "EdDSA"
_ISSUER = "kith"
_AUDIENCE = "kith-api"
LEEWAY_S = 5  # seconds of clock difference tolerated on exp/iat
_TIME_CLAIMS = ("exp", "nbf", "iat")


class InvalidToken(Exception):
    """The token is not one we issued, or it has expired."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: str
    device_id: str
    space_id: str
    family_id: str
    expires_at: int = 0  # the token's exp (set when a token is verified)
    #: The privacy terms version the person had accepted when the token was minted (``tv``):
    #: sync checks it against the required version with no database read.
    terms_version: str | None = None


def load_or_create_keys(
    private_pem: str | None, public_pem: str | None, key_dir: Path
) -> tuple[Ed25519PrivateKey, Ed25519PublicKey]:
    """Keys from the environment if given, else the dev pair under ``key_dir`` (made once)."""
    if private_pem and public_pem:
        private = serialization.load_pem_private_key(private_pem.encode(), password=None)
        public = serialization.load_pem_public_key(public_pem.encode())
        if not isinstance(private, Ed25519PrivateKey) or not isinstance(public, Ed25519PublicKey):
            raise ValueError("KITH_JWT_*_KEY must be an Ed25519 key pair in PEM")
        return private, public
    key_dir.mkdir(parents=True, exist_ok=True)
    private_path = key_dir / "jwt-ed25519.pem"
    if not private_path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # Create with 0600 atomically: the dev key never is world-readable, not even briefly.
        tmp = private_path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        os.replace(tmp, private_path)
    private = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    assert isinstance(private, Ed25519PrivateKey)
    return private, private.public_key()


def hash_refresh_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenIssuer:
    def __init__(
        self, private_key: Ed25519PrivateKey, public_key: Ed25519PublicKey, *, access_ttl_s: int
    ) -> None:
        self._private = private_key
        self._public = public_key
        self.access_ttl_s = access_ttl_s
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self._kid = hashlib.sha256(raw).hexdigest()[:16]

    def mint_access(self, claims: AccessClaims, *, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        payload = {
            "iss": _ISSUER,
            "aud": _AUDIENCE,
            "sub": claims.user_id,
            "did": claims.device_id,
            "spc": claims.space_id,
            "fam": claims.family_id,
            "iat": issued,
            "exp": issued + self.access_ttl_s,
        }
        if claims.terms_version is not None:
            payload["tv"] = claims.terms_version
        return jwt.encode(payload, self._private, algorithm=_ALGORITHM, headers={"kid": self._kid})

    def verify_access(self, token: str) -> AccessClaims:
        try:
            payload = jwt.decode(
                token,
                self._public,
                algorithms=[_ALGORITHM],
                audience=_AUDIENCE,
                issuer=_ISSUER,
                options={"require": ["exp", "iat", "sub", "did", "spc", "fam"]},
                leeway=LEEWAY_S,
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        # PyJWT reads the time claims with int(), so "exp": "9999999999" would pass: RFC 7519
        # makes them NumericDate (a JSON number), and we mint only numbers and strings.
        for name in _TIME_CLAIMS:
            value = payload.get(name)
            if name in payload and (type(value) is bool or not isinstance(value, int | float)):
                raise InvalidToken(f"{name} is not a number")
        ids = [payload[name] for name in ("sub", "did", "spc", "fam")]
        if not all(isinstance(v, str) for v in ids):
            raise InvalidToken("an id claim is not a string")
        user_id, device_id, space_id, family_id = ids
        return AccessClaims(
            user_id=user_id,
            device_id=device_id,
            space_id=space_id,
            family_id=family_id,
            expires_at=int(payload["exp"]),
            terms_version=str(payload["tv"]) if "tv" in payload else None,
        )

    @staticmethod
    def new_refresh_token() -> str:
        return secrets.token_urlsafe(32)

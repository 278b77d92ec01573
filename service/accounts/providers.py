"""Verifying Apple's and Google's ID tokens: who the provider says signed in.

An app signs in with the provider's SDK and sends Kith the ID token it got (a JWT) and the
raw nonce it started the sign-in with. A token is believed only if every check passes
(decision 0020):

* its signature, **RS256 only** (``none`` and the HS family are refused before any key is
  looked up), with a key the provider publishes (its JWKS document). PyJWT's
  ``PyJWKClient`` fetches the key set, caches it, and refetches it when a token names a key
  it does not hold — at most once per cooldown, so tokens with invented key ids cannot make
  Kith hammer the provider. The client is synchronous (urllib): it runs in a thread, off
  the event loop;
* ``iss`` (Apple: ``https://appleid.apple.com``; Google: either of its two spellings),
  ``aud`` (one of the app's client ids), ``exp`` and ``iat`` with a small leeway, ``sub``;
* ``nonce``: Apple carries the SHA-256 (hex) of the raw nonce the app gave it, Google the
  raw nonce. A token lifted from another sign-in does not carry this one's nonce.

The email is taken only when the provider says it is verified (``email_verified``; Apple
writes it as the string ``"true"``). Apple's private relay addresses are verified
addresses like any other (``is_private_email``).

A provider whose keys cannot be fetched (unreachable, timing out, answering an error or not
a key set) is an outage, not a bad token: ``503 provider_unavailable`` with ``Retry-After``
(decision 0014). Nothing of the token is ever logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import PyJWKClient
from jwt.exceptions import (
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidAudienceError,
    InvalidIssuedAtError,
    InvalidIssuerError,
    InvalidSignatureError,
    MissingRequiredClaimError,
    PyJWKClientConnectionError,
    PyJWKClientError,
    PyJWKSetError,
    PyJWTError,
)

from schemas.problem import FieldError
from service.config import SignInSettings
from service.errors import Code, NotAuthenticated, NotFound, Unavailable
from service.infra.outages import RETRY_AFTER_S

__all__ = ["ALGORITHM", "IdTokenVerifier", "ProviderIdentity", "Providers"]

log = logging.getLogger("kith.signin")

#: The one signature algorithm Apple and Google use for ID tokens.
ALGORITHM = "RS256"
#: The longest ``sub`` kept (Apple's are ~44 characters, Google's ~21 digits).
MAX_SUBJECT = 255


@dataclass(frozen=True, slots=True)
class ProviderIdentity:
    """A verified token's person: the provider's stable id for them, and their email if
    the provider vouches for it."""

    provider: str
    subject: str
    email: str | None
    private_email: bool
    name: str | None


def _invalid(field: str, message: str) -> NotAuthenticated:
    return NotAuthenticated(
        f"the ID token was not accepted: {field} {message}",
        code=Code.INVALID_ID_TOKEN,
        errors=[FieldError(field, message)],
    )


def _true(value: Any) -> bool:
    return value is True or value == "true"


def _name(value: Any) -> str | None:
    """The token's ``name`` as a display name: printable, at most 100 characters."""
    if not isinstance(value, str):
        return None
    name = "".join(c for c in value if c.isprintable()).strip()[:100]
    return name or None


class IdTokenVerifier:
    """One provider's checks, and its key set (fetched, cached, refetched on a new key)."""

    def __init__(
        self,
        provider: str,
        *,
        audiences: Sequence[str],
        issuers: Sequence[str],
        jwks_url: str,
        nonce_hashed: bool,
        leeway_s: int,
        keys_cache_s: int,
        keys_cooldown_s: int,
        keys_timeout_s: int,
    ) -> None:
        self.provider = provider
        self._audiences = list(audiences)
        self._issuers = tuple(issuers)
        self._nonce_hashed = nonce_hashed
        self._leeway_s = leeway_s
        self._keys = PyJWKClient(
            jwks_url,
            cache_jwk_set=True,
            lifespan=keys_cache_s,
            timeout=keys_timeout_s,
            cooldown_duration=keys_cooldown_s,
            headers={"User-Agent": "kith"},
        )

    async def verify(self, token: str, nonce: str) -> ProviderIdentity:
        """The identity in ``token``, or 401 ``invalid_id_token`` naming what failed
        (``id_token`` or ``nonce``); 503 ``provider_unavailable`` if the keys are out of
        reach."""
        try:
            header = jwt.get_unverified_header(token)
        except PyJWTError:
            raise _invalid("id_token", "is not a JWT") from None
        if header.get("alg") != ALGORITHM:
            raise _invalid("id_token", f"must be signed with {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _invalid("id_token", "names no signing key (kid)")
        key = await self._key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audiences,
                issuer=self._issuers,
                leeway=self._leeway_s,
                options={"require": ["iss", "aud", "exp", "iat", "sub"]},
            )
        except InvalidSignatureError:
            raise _invalid("id_token", "has a signature that does not verify") from None
        except ExpiredSignatureError:
            raise _invalid("id_token", "has expired (exp)") from None
        except InvalidAudienceError:
            raise _invalid("id_token", "was issued to another app (aud)") from None
        except InvalidIssuerError:
            raise _invalid("id_token", f"was not issued by {self.provider} (iss)") from None
        except (ImmatureSignatureError, InvalidIssuedAtError):
            raise _invalid("id_token", "is issued in the future (iat)") from None
        except MissingRequiredClaimError as exc:
            raise _invalid("id_token", f"lacks the {exc.claim} claim") from None
        except PyJWTError:
            raise _invalid("id_token", "cannot be verified") from None
        self._check_nonce(claims.get("nonce"), nonce)
        subject = claims["sub"]
        if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT:
            raise _invalid("id_token", "has no usable subject (sub)")
        email = claims.get("email")
        verified = isinstance(email, str) and _true(claims.get("email_verified"))
        return ProviderIdentity(
            provider=self.provider,
            subject=subject,
            email=email if verified and isinstance(email, str) else None,
            private_email=verified and _true(claims.get("is_private_email")),
            name=_name(claims.get("name")),
        )

    async def _key(self, kid: str) -> Any:
        try:
            # Sync (urllib under PyJWKClient's own lock): in a thread, off the event loop.
            signing_key = await asyncio.to_thread(self._keys.get_signing_key, kid)
        except (PyJWKClientConnectionError, PyJWKSetError) as exc:
            log.warning("%s keys unreachable (%s): answered 503", self.provider, type(exc).__name__)
            raise Unavailable(
                f"{self.provider} cannot be reached to check the sign-in; nothing was "
                "changed — retry in a few seconds",
                code=Code.PROVIDER_UNAVAILABLE,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            ) from None
        except PyJWKClientError:
            raise _invalid(
                "id_token", f"is signed with a key {self.provider} does not publish"
            ) from None
        return signing_key.key

    def _check_nonce(self, claimed: Any, raw: str) -> None:
        if not isinstance(claimed, str):
            raise _invalid("id_token", "carries no nonce (start the sign-in with one)")
        expected = hashlib.sha256(raw.encode()).hexdigest() if self._nonce_hashed else raw
        if not hmac.compare_digest(claimed.encode(), expected.encode()):
            raise _invalid("nonce", "is not the nonce this token was issued for")


class Providers:
    """The providers this server offers, from :class:`SignInSettings` (one with no client
    ids is off)."""

    def __init__(self, settings: SignInSettings) -> None:
        common = {
            "leeway_s": settings.leeway_s,
            "keys_cache_s": settings.keys_cache_s,
            "keys_cooldown_s": settings.keys_cooldown_s,
            "keys_timeout_s": settings.keys_timeout_s,
        }
        self._verifiers: dict[str, IdTokenVerifier] = {}
        if settings.apple.client_ids:
            self._verifiers["apple"] = IdTokenVerifier(
                "apple",
                audiences=settings.apple.client_ids,
                issuers=(settings.apple.issuer,),
                jwks_url=settings.apple.jwks_url,
                nonce_hashed=True,
                **common,
            )
        if settings.google.client_ids:
            self._verifiers["google"] = IdTokenVerifier(
                "google",
                audiences=settings.google.client_ids,
                issuers=settings.google.issuers,
                jwks_url=settings.google.jwks_url,
                nonce_hashed=False,
                **common,
            )

    @property
    def enabled(self) -> list[str]:
        return sorted(self._verifiers)

    async def verify(self, provider: str, token: str, nonce: str) -> ProviderIdentity:
        """Verify with ``provider``'s checks; 404 ``provider_disabled`` if it is off."""
        verifier = self._verifiers.get(provider)
        if verifier is None:
            raise NotFound(
                f"this server does not offer sign-in with {provider}",
                code=Code.PROVIDER_DISABLED,
            )
        return await verifier.verify(token, nonce)

"""Wire types of accounts, sessions and devices."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from msgspec import Meta, Struct

from schemas.common import Platform, RecordId, described

__all__ = [
    "ApnsAddress",
    "DeviceInfo",
    "DeviceOut",
    "DevicesResponse",
    "FcmAddress",
    "IdentityOut",
    "IdentityProvider",
    "LinkIdentityRequest",
    "LoginRequest",
    "OneTimeCode",
    "PasswordResetConfirm",
    "PasswordResetRequest",
    "ProviderName",
    "ProviderSignInRequest",
    "PushTokenRequest",
    "RefreshRequest",
    "RegisterRequest",
    "SignInResponse",
    "TokenResponse",
    "WebPushAddress",
    "WebPushKeys",
]


def _whole(pattern: str, words: str) -> str:
    """Anchor ``pattern`` to the whole string. Python's ``$`` also matches before a final
    newline, so ``"ana@example.org\\n"`` would pass (and become a second account); the
    lookahead closes that, and JSON Schema's ECMAScript regexes read it the same way.
    ``words`` say what it asks for, in the 422 of a value that does not match."""
    return described(f"^(?:{pattern})$(?!\\n)", words)


#: Text stored in PostgreSQL ``text`` columns: no NUL (PostgreSQL refuses it) and no
#: other control characters (they only ever arrive by mistake or from a fuzzer).
_PRINTABLE = r"[^\x00-\x1f\x7f]"
_TEXT = "text without control characters (no NUL, tab or line break)"
_ADDRESS = r"[^@\s\x00-\x1f\x7f]"  # a character of an email address

Email = Annotated[
    str,
    Meta(
        pattern=_whole(rf"{_ADDRESS}{{1,64}}@{_ADDRESS}+\.{_ADDRESS}+", "an email address"),
        max_length=254,
        examples=["ana@example.org"],
    ),
]
Password = Annotated[str, Meta(min_length=10, max_length=1024)]
#: The push services Kith sends through; each has its provider module in ``service/push/``.
ProviderName = Literal["apns", "fcm", "webpush"]
Name = Annotated[str, Meta(pattern=_whole(f"{_PRINTABLE}*", _TEXT), max_length=100)]
TermsVersion = Annotated[
    str,
    Meta(
        pattern=_whole(r"[A-Za-z0-9._-]{1,40}", "1 to 40 letters, digits, ., _ or -"),
        examples=["2026-12-01"],
    ),
]
TimeZone = Annotated[
    str,
    Meta(
        pattern=_whole(r"[A-Za-z0-9_+/-]{1,64}", "an IANA time zone name, as Europe/Lisbon"),
        max_length=64,
        examples=["Europe/Lisbon"],
    ),
]
#: The sign-in providers whose ID tokens Kith accepts (service/accounts/providers.py).
IdentityProvider = Literal["apple", "google"]
#: A provider's ID token, a JWS in compact form (three base64url parts).
IdToken = Annotated[
    str,
    Meta(
        pattern=_whole(
            r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*", "a JWT: three base64url parts"
        ),
        max_length=8192,
        description="the ID token the provider's SDK gave the app (a JWT)",
    ),
]
#: The raw nonce the app generated for this sign-in and gave the provider's SDK (Apple: its
#: SHA-256 in hex; Google: as is). Printable ASCII, 16 to 256 characters.
Nonce = Annotated[
    str,
    Meta(
        pattern=_whole(r"[\x21-\x7e]{16,256}", "16 to 256 printable ASCII characters"),
        description="the raw nonce this sign-in was started with (not its hash)",
    ),
]


class DeviceInfo(Struct, forbid_unknown_fields=True):
    id: RecordId
    platform: Platform
    name: Name = ""


class RegisterRequest(Struct, forbid_unknown_fields=True):
    email: Email
    password: Password
    display_name: Annotated[Name, Meta(min_length=1)]
    time_zone: TimeZone
    device: DeviceInfo
    #: The version of the privacy terms the person read and accepted (required, and must be
    #: the current one, when the server requires consent: ``KITH_TERMS_VERSION``).
    terms_version: TermsVersion | None = None
    #: Their explicit consent to Kith processing wellbeing data (moods, loneliness and
    #: wellbeing scores, check-ins); must be true when the server requires consent.
    wellbeing_consent: bool = False


OneTimeCode = Annotated[
    str, Meta(pattern=_whole(r"[0-9]{6}", "the 6 digits of the email"), examples=["042917"])
]


class PasswordResetRequest(Struct, forbid_unknown_fields=True):
    email: Email


class PasswordResetConfirm(Struct, forbid_unknown_fields=True):
    email: Email
    code: OneTimeCode
    new_password: Password


class LoginRequest(Struct, forbid_unknown_fields=True):
    # Any printable text: a login must not tell which shapes of email could exist.
    email: Annotated[str, Meta(pattern=_whole(f"{_PRINTABLE}*", _TEXT), max_length=254)]
    password: Annotated[str, Meta(max_length=1024)]
    device: DeviceInfo


class ProviderSignInRequest(Struct, forbid_unknown_fields=True):
    """Sign in (or up) with Apple's or Google's ID token. The other fields are used only
    when this sign-in creates the account, and are then what registration asks for."""

    id_token: IdToken
    nonce: Nonce
    device: DeviceInfo
    #: Required when the sign-in creates the account.
    time_zone: TimeZone | None = None
    #: The person's name; when absent, the token's ``name`` (Google sends it; Apple gives
    #: the app the name only on the first authorization, never in the token).
    display_name: Annotated[Name, Meta(min_length=1)] | None = None
    terms_version: TermsVersion | None = None
    wellbeing_consent: bool = False


class LinkIdentityRequest(Struct, forbid_unknown_fields=True):
    """Link a provider to the signed-in account: its ID token and the raw nonce; the
    password too unless this session was started by a sign-in within five minutes."""

    provider: IdentityProvider
    id_token: IdToken
    nonce: Nonce
    password: Annotated[str, Meta(min_length=1, max_length=1024)] | None = None


class IdentityOut(Struct):
    """A provider linked to the account (never a token)."""

    provider: str
    subject: str
    email: str | None
    private_email: bool
    linked_at: dt.datetime
    last_sign_in_at: dt.datetime | None


class RefreshRequest(Struct, forbid_unknown_fields=True):
    refresh_token: Annotated[str, Meta(min_length=1, max_length=200)]


class TokenResponse(Struct):
    user_id: str
    device_id: str
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"  # noqa: S105 - a scheme name, not a secret


class SignInResponse(TokenResponse):
    """A provider sign-in's answer: the tokens, and whether it created the account (show
    the new person's onboarding)."""

    created: bool = False


class WebPushKeys(Struct, forbid_unknown_fields=True):
    """A browser's push subscription keys, base64 as ``PushSubscription.toJSON()`` gives."""

    p256dh: Annotated[
        str,
        Meta(
            pattern=_whole(r"[A-Za-z0-9_+/-]{87}=?", "87 base64 characters (and =)"),
            description="The 65-byte P-256 public key, base64 or base64url",
        ),
    ]
    auth: Annotated[
        str,
        Meta(
            pattern=_whole(r"[A-Za-z0-9_+/-]{22}(==)?", "22 base64 characters (and ==)"),
            description="The 16-byte auth secret, base64 or base64url",
        ),
    ]


_APNS_TOKEN = re.compile(r"(?:[0-9a-f]{2}){8,100}")
_FCM_TOKEN = re.compile(r"[\x21-\x7e]+")


class ApnsAddress(Struct, tag_field="provider", tag="apns", forbid_unknown_fields=True):
    """An APNs device token, as the app got it from ``registerForRemoteNotifications``."""

    token: Annotated[str, Meta(min_length=1, max_length=4096, description="hexadecimal")]
    environment: Literal["production", "sandbox"] = "production"
    topic: (
        Annotated[
            str,
            Meta(
                pattern=_whole(r"[A-Za-z0-9.-]{1,255}", "a bundle id: letters, digits, . and -"),
                description="the app's bundle id (apns-topic), if not the configured one",
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        # One phone, one spelling: apps format the token with %02x or %02X.
        self.token = self.token.lower()
        if not _APNS_TOKEN.fullmatch(self.token):
            raise ValueError("token: an APNs device token is 8 to 100 bytes in hexadecimal")


class FcmAddress(Struct, tag_field="provider", tag="fcm", forbid_unknown_fields=True):
    """An FCM registration token."""

    token: Annotated[str, Meta(min_length=1, max_length=4096)]

    def __post_init__(self) -> None:
        if not _FCM_TOKEN.fullmatch(self.token):
            raise ValueError("token: an FCM registration token is printable ASCII, no spaces")


class WebPushAddress(Struct, tag_field="provider", tag="webpush", forbid_unknown_fields=True):
    """A Web Push subscription: its endpoint URL (``token``) and its keys."""

    token: Annotated[
        str, Meta(min_length=1, max_length=4096, description="the subscription's endpoint URL")
    ]
    keys: Annotated[WebPushKeys | None, Meta(description="required")] = None

    def __post_init__(self) -> None:
        problem = _webpush_endpoint_problem(self.token)
        if problem:
            raise ValueError(f"token: {problem}")
        if self.keys is None:
            raise ValueError("keys: a Web Push subscription needs its keys (p256dh, auth)")


#: Where one device receives pushes: one variant per provider, told apart by ``provider``
#: (a tagged union; each variant carries only the fields its provider uses).
PushTokenRequest = ApnsAddress | FcmAddress | WebPushAddress


def _webpush_endpoint_problem(url: str) -> str | None:
    """Why ``url`` cannot be a push service's endpoint, or None. The server will POST to
    it, so it must be https on a public host name: never a bare IP, localhost or an
    intranet name (the sender re-checks the resolved address before connecting)."""
    if not _FCM_TOKEN.fullmatch(url):
        return "a Web Push endpoint is a URL without spaces or control characters"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return "a Web Push endpoint is a URL"
    if parts.scheme != "https":
        return "a Web Push endpoint is the subscription's https:// URL"
    if parts.username is not None or parts.password is not None:
        return "a Web Push endpoint carries no credentials"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return "a Web Push endpoint names its push service's host, not an IP address"
    if "." not in host or host == "localhost" or host.endswith((".localhost", ".local")):
        return "a Web Push endpoint must be on a public host"
    return None


class DeviceOut(Struct):
    id: str
    platform: str
    name: str
    created_at: dt.datetime
    last_seen_at: dt.datetime | None
    push_provider: str | None
    current: bool


class DevicesResponse(Struct):
    devices: list[DeviceOut]

"""Kith's errors: what went wrong, as stable machine codes, with no HTTP in sight.

Code below the edge raises a :class:`KithError` subclass with a code from :class:`Code`;
the HTTP edge (``service/http/problems.py``) chooses the status and writes the RFC 9457
problem-details body. The tree, with the status the edge gives each branch::

    KithError
    ├── Malformed             400  malformed_json, invalid_cursor, bad_request
    ├── NotAuthenticated      401  unauthenticated, invalid_token, invalid_id_token, ...
    ├── Forbidden             403  device_mismatch, read_only_table, wrong_password, ...
    ├── NotFound              404  not_found, provider_disabled, ...
    ├── Conflict              409  email_taken, link_required, last_sign_in_method, ...
    ├── TooLarge              413  body_too_large
    ├── InvalidInput          422  invalid_field (with the field paths)
    ├── UnsupportedVersion    426  unsupported_schema_version
    ├── RateLimited           429  rate_limited
    └── Unavailable           503  unavailable (PostgreSQL or Redis down), provider_unavailable
                                   (Apple's or Google's keys unreachable); with Retry-After

Every code a client can meet is in :class:`Code` (and in docs/protocol.md's table); an app
branches on the code, never on the wording of ``detail``.
"""

from __future__ import annotations

import ast
import re
from enum import StrEnum

import msgspec

from schemas.common import FORMATS
from schemas.problem import FieldError

__all__ = [
    "Code",
    "Conflict",
    "Forbidden",
    "InvalidInput",
    "KithError",
    "Malformed",
    "NotAuthenticated",
    "NotFound",
    "RateLimited",
    "TooLarge",
    "Unavailable",
    "UnsupportedVersion",
    "field_error",
    "field_errors_from_msgspec",
]


class Code(StrEnum):
    """Every stable error code, once (Kinto's ``ERRORS``)."""

    # 400: the request cannot be read
    BAD_REQUEST = "bad_request"
    MALFORMED_JSON = "malformed_json"
    INVALID_CURSOR = "invalid_cursor"
    # 401: who is asking is not established
    UNAUTHENTICATED = "unauthenticated"
    INVALID_TOKEN = "invalid_token"
    INVALID_CREDENTIALS = "invalid_credentials"
    INVALID_REFRESH_TOKEN = "invalid_refresh_token"
    REFRESH_TOKEN_REUSED = "refresh_token_reused"
    SESSION_REVOKED = "session_revoked"
    INVALID_ID_TOKEN = "invalid_id_token"
    # 403: known, but not allowed
    FORBIDDEN = "forbidden"
    DEVICE_MISMATCH = "device_mismatch"
    READ_ONLY_TABLE = "read_only_table"
    REAUTHENTICATION_REQUIRED = "reauthentication_required"
    CONSENT_REQUIRED = "consent_required"
    INVALID_CODE = "invalid_code"
    WRONG_PASSWORD = "wrong_password"
    ALERTS_NOT_SHARED = "alerts_not_shared"
    # 404
    NOT_FOUND = "not_found"
    INVITATION_INVALID = "invitation_invalid"
    ALERT_NOT_FOUND = "alert_not_found"
    PROVIDER_DISABLED = "provider_disabled"
    # 405, and any other status the framework answers by itself
    METHOD_NOT_ALLOWED = "method_not_allowed"
    HTTP_ERROR = "http_error"
    # 409: the request contradicts what exists
    CONFLICT = "conflict"
    EMAIL_TAKEN = "email_taken"
    BATCH_ID_REUSED = "batch_id_reused"
    ALREADY_LINKED = "already_linked"
    OWN_INVITATION = "own_invitation"
    ALERT_RESOLVED = "alert_resolved"
    LINK_REQUIRED = "link_required"
    IDENTITY_TAKEN = "identity_taken"
    PROVIDER_ALREADY_LINKED = "provider_already_linked"
    LAST_SIGN_IN_METHOD = "last_sign_in_method"
    # 413, 422, 426, 429
    BODY_TOO_LARGE = "body_too_large"
    INVALID_FIELD = "invalid_field"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    RATE_LIMITED = "rate_limited"
    # 503: a server Kith depends on (PostgreSQL, Redis) is unreachable; retry after a while
    UNAVAILABLE = "unavailable"
    # 503: Apple's or Google's keys could not be fetched to check a sign-in; retry after a while
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    # 500: never raised on purpose; what the edge answers for a bug
    INTERNAL_ERROR = "internal_error"


class KithError(Exception):
    """The root. ``code`` defaults to the subclass's; ``errors`` name the fields at fault;
    ``headers`` are what the answer must carry (``Retry-After``, ``WWW-Authenticate``)."""

    code: str = Code.INTERNAL_ERROR
    title = "Internal error"

    def __init__(
        self,
        detail: str = "",
        *,
        code: Code | None = None,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.errors = errors or []
        self.headers = headers or {}


class Malformed(KithError):
    """The request cannot be read at all: not JSON, not UTF-8, nested too deeply (400)."""

    code, title = Code.BAD_REQUEST, "Bad request"


class NotAuthenticated(KithError):
    """No valid access token, or credentials that don't match (401)."""

    code, title = Code.UNAUTHENTICATED, "Not authenticated"


class Forbidden(KithError):
    """The caller is known but may not do this: another's record, a scope not shared (403)."""

    code, title = Code.FORBIDDEN, "Forbidden"


class NotFound(KithError):
    """Nothing of the caller's has this id; another person's records are never found (404)."""

    code, title = Code.NOT_FOUND, "Not found"


class Conflict(KithError):
    """The request clashes with what is stored: a reused batch id, an email taken (409)."""

    code, title = Code.CONFLICT, "Conflict"


class TooLarge(KithError):
    """The body is over the size limit; nothing was read past it (413)."""

    code, title = Code.BODY_TOO_LARGE, "Request body too large"


class InvalidInput(KithError):
    """A field's value is refused; ``errors`` names each field and why (422)."""

    code, title = Code.INVALID_FIELD, "Invalid field"


class UnsupportedVersion(KithError):
    """The app's schema version is one this server no longer speaks (426)."""

    code, title = Code.UNSUPPORTED_SCHEMA_VERSION, "Upgrade required"


class RateLimited(KithError):
    """Too many requests; ``Retry-After`` says when to try again (429)."""

    code, title = Code.RATE_LIMITED, "Too many requests"


class Unavailable(KithError):
    """PostgreSQL or Redis is unreachable (``service/infra/outages.py`` tells): nothing
    was done, and the same request will succeed once it is back."""

    code, title = Code.UNAVAILABLE, "Service unavailable"


_PATH_RE = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_NAMED_RE = re.compile(r"^(?P<field>[a-z_0-9]+): (?P<message>.+)$", re.DOTALL)
_NO_TRAILING_NEWLINE = "(?!\\n)"
_REGEX_RE = re.compile(r"^Expected `str` matching regex (?P<regex>'.*'|\".*\")$", re.DOTALL)
_OBJECT_FIELD_RE = re.compile(
    r"^Object (?:missing required|contains unknown) field `(?P<field>[^`]+)`"
)


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p).replace(".[", "[")


def field_error(path: str, message: str) -> FieldError:
    """Point a message at the field it is about. msgspec reports a missing or unknown
    field at the object holding it, and a Struct's ``__post_init__`` at the Struct (it
    names its field as "field_name: message"); both are moved down to the field itself,
    so a client can put the message next to the right input. A pattern's refusal is put
    in words."""
    message = _in_words(message)
    named = _NAMED_RE.match(message)
    if named:
        return FieldError(field=_join(path, named["field"]), message=named["message"])
    member = _OBJECT_FIELD_RE.match(message)
    if member:
        return FieldError(field=_join(path, member["field"]), message=message)
    return FieldError(field=path or "$", message=message)


def field_errors_from_msgspec(exc: msgspec.ValidationError, prefix: str = "") -> list[FieldError]:
    """Turn msgspec's "Expected `int`, got `str` - at `$.changes[0].id`" into a field path
    (``changes[0].id``) and a message, optionally under ``prefix``."""
    text = str(exc)
    match = _PATH_RE.search(text)
    path = match["path"].lstrip(".") if match else ""
    message = text[: match.start()] if match else text
    return [field_error(_join(prefix, path), message)]


def _in_words(message: str) -> str:
    """A pattern's refusal as a person reads it: "must be 8 to 64 letters, digits, _ or
    -" for a declared pattern (``schemas.common.FORMATS``), else the pattern without the
    lookahead that only guards against a trailing newline."""
    match = _REGEX_RE.match(message)
    if match is None:
        return message
    regex = str(ast.literal_eval(match["regex"]))  # msgspec quotes the pattern as repr() does
    words = FORMATS.get(regex)
    if words is not None:
        return f"must be {words}"
    return "must match " + regex.removesuffix(_NO_TRAILING_NEWLINE)

"""Kith's errors and how they reach clients.

Every error a client can see is a :class:`KithError` with a stable ``code``; the HTTP
status is chosen here, at the edge, and the body is RFC 9457 problem details::

    KithError
    ├── BadRequest            400  malformed_json, invalid_cursor, ...
    ├── Unauthorized          401  unauthenticated, invalid_token, invalid_credentials, ...
    ├── Forbidden             403  device_mismatch, read_only_table, ...
    ├── NotFound              404  not_found
    ├── Conflict              409  email_taken, ...
    ├── PayloadTooLarge       413  body_too_large
    ├── Unprocessable         422  invalid_field (with the field paths)
    ├── UpgradeRequired       426  unsupported_schema_version
    └── TooManyRequests       429  rate_limited

Framework exceptions (Litestar's validation, 404 routing, 413 body limit, a body that is
not UTF-8, a value PostgreSQL refuses to store, anything unexpected) are translated into
the same shape; an unexpected exception is logged with its type only — never the request
body — and answered 500 without details.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException

from schemas.problem import FieldError, Problem
from service.infra.asgi import Send

__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "KithError",
    "NotFound",
    "PayloadTooLarge",
    "TooManyRequests",
    "Unauthorized",
    "Unprocessable",
    "UpgradeRequired",
    "exception_handlers",
    "field_errors_from_msgspec",
    "problem_body",
    "send_problem",
]


log = logging.getLogger("kith.errors")


class KithError(Exception):
    status = 500
    code = "internal_error"
    title = "Internal error"

    def __init__(
        self,
        detail: str = "",
        *,
        code: str | None = None,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.errors = errors or []
        self.headers = headers or {}


class BadRequest(KithError):
    status, code, title = 400, "bad_request", "Bad request"


class Unauthorized(KithError):
    status, code, title = 401, "unauthenticated", "Not authenticated"


class Forbidden(KithError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(KithError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(KithError):
    status, code, title = 409, "conflict", "Conflict"


class PayloadTooLarge(KithError):
    status, code, title = 413, "body_too_large", "Request body too large"


class Unprocessable(KithError):
    status, code, title = 422, "invalid_field", "Invalid field"


class UpgradeRequired(KithError):
    status, code, title = 426, "unsupported_schema_version", "Upgrade required"


class TooManyRequests(KithError):
    status, code, title = 429, "rate_limited", "Too many requests"


_problem_encoder = msgspec.json.Encoder()
_PATH_RE = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_NAMED_RE = re.compile(r"^(?P<field>[a-z_0-9]+): (?P<message>.+)$", re.DOTALL)
_OBJECT_FIELD_RE = re.compile(
    r"^Object (?:missing required|contains unknown) field `(?P<field>[^`]+)`"
)


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p).replace(".[", "[")


def _locate(path: str, message: str) -> FieldError:
    """Point a message at the field it is about. msgspec reports a missing or unknown
    field at the object holding it, and a Struct's ``__post_init__`` at the Struct (it
    names its field as "field_name: message"); both are moved down to the field itself,
    so a client can put the message next to the right input."""
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
    return [_locate(_join(prefix, path), message)]


def _problem(
    status: int, code: str, title: str, detail: str = "", errors: list[FieldError] | None = None
) -> bytes:
    return _problem_encoder.encode(
        Problem(
            type=f"https://kith.dev/problems/{code}",
            title=title,
            status=status,
            code=code,
            detail=detail,
            errors=errors or [],
        )
    )


def problem_body(exc: KithError) -> bytes:
    """The problem-details body of ``exc``, for code that answers outside Litestar."""
    return _problem(exc.status, exc.code, exc.title, exc.detail, exc.errors)


async def send_problem(send: Send, exc: KithError) -> None:
    """Answer ``exc`` on a raw ASGI ``send``, as the exception handlers would."""
    body = problem_body(exc)
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", b"%d" % len(body)),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()),
    ]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _respond(
    status: int,
    code: str,
    title: str,
    detail: str = "",
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[bytes]:
    return Response(
        _problem(status, code, title, detail, errors),
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )


def _kith_error(_: Request[Any, Any, Any], exc: KithError) -> Response[bytes]:
    return _respond(exc.status, exc.code, exc.title, exc.detail, exc.errors, exc.headers)


def _parameter_names(request: Request[Any, Any, Any]) -> dict[str, str]:
    """Python parameter name -> the name the client sent (``record_id`` -> ``id``)."""
    try:
        parameters = request.route_handler.parsed_fn_signature.parameters
    except Exception:  # no handler resolved (routing failed): nothing to rename
        return {}
    names = {}
    for name, definition in parameters.items():
        alias = getattr(definition.kwarg_definition, "name", None)
        if isinstance(alias, str) and alias != name:
            names[name] = alias
    return names


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    aliases = _parameter_names(request)
    errors = []
    for item in extra:
        if isinstance(item, dict):
            key = str(item.get("key", "") or "")
            message = str(item.get("message", ""))
            if key == "data" or key.startswith("data."):
                key = key[5:]
            elif item.get("source") != "body":
                key = aliases.get(key, key)  # query/path errors use the wire name
            errors.append(_locate(key, message))
    if any(e.message.startswith("JSON is malformed") for e in errors) or (
        not errors and "malformed" in str(exc.detail).lower()
    ):
        return _malformed()
    return _respond(
        422, "invalid_field", "Invalid field", "the request does not match the schema", errors
    )


def _malformed(detail: str = "the request body is not valid JSON") -> Response[bytes]:
    return _respond(400, "malformed_json", "Malformed JSON", detail)


_STATUS_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthenticated", "Not authenticated"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    413: ("body_too_large", "Request body too large"),
    429: ("rate_limited", "Too many requests"),
}


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    if isinstance(exc.__cause__, SerializationException):
        return _malformed(f"the request body is not valid JSON: {exc.detail}")
    code, title = _STATUS_CODES.get(exc.status_code, ("http_error", "HTTP error"))
    detail = exc.detail if exc.status_code < 500 else ""
    return _respond(exc.status_code, code, title, str(detail), headers=dict(exc.headers or {}))


def _undecodable(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    # msgspec raises UnicodeDecodeError (not DecodeError) for invalid UTF-8 inside a JSON
    # string and RecursionError for nesting past its depth limit, and Litestar lets both
    # through. Only when they come from decoding the body are they the client's fault.
    if _raised_in(exc, "decode_json"):
        if isinstance(exc, UnicodeDecodeError):
            return _malformed("the request body is not valid UTF-8")
        return _malformed("the request body is nested too deeply")
    return _unexpected(request, exc)


def _unstorable(request: Request[Any, Any, Any], exc: asyncpg.DataError) -> Response[bytes]:
    # PostgreSQL refused a value (a NUL character, a number out of its range): the request
    # carried something validation at the edge should have named. Answer 4xx, never 500 —
    # and log it, because the schema on the wire types is missing a limit.
    log.warning(
        "unstorable value (%s) on %s %s: add the limit to the wire type",
        type(exc).__name__,
        request.method,
        request.scope["path"],
    )
    return _respond(
        422,
        "invalid_field",
        "Invalid field",
        "a value in the request cannot be stored (for example a NUL character)",
        [FieldError(field="$", message="contains a value that cannot be stored")],
    )


def _raised_in(exc: BaseException, function: str) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == function:
            return True
        tb = tb.tb_next
    return False


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    # Type and route only: exception text can carry user data (a value echoed by a driver).
    log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.scope["path"])
    return _respond(500, "internal_error", "Internal error", "something went wrong on our side")


exception_handlers: dict[type[Exception], Any] = {
    KithError: _kith_error,
    ValidationException: _validation,
    HTTPException: _http,
    UnicodeDecodeError: _undecodable,
    RecursionError: _undecodable,
    asyncpg.DataError: _unstorable,
    Exception: _unexpected,
}

"""Domain errors as HTTP answers: the status for each branch of ``service.errors``, and
RFC 9457 problem-details bodies for them and for the framework's own exceptions.

Framework exceptions (Litestar's validation, 404 routing, 413 body limit, a body that is
not UTF-8, a value PostgreSQL refuses to store, anything unexpected) are translated into
the same shape. An exception that says PostgreSQL or Redis is unreachable
(``service/infra/outages.py``) is an outage, not a bug: ``503 unavailable`` with
``Retry-After``, so a client knows to simply retry (decision 0014). Anything else
unexpected is logged with its type only — never the request body — and answered 500
without details.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException

from schemas.problem import FieldError, Problem
from service.errors import (
    Code,
    Conflict,
    Forbidden,
    InvalidInput,
    KithError,
    Malformed,
    NotAuthenticated,
    NotFound,
    RateLimited,
    TooLarge,
    Unavailable,
    UnsupportedVersion,
    field_error,
)
from service.infra.asgi import Send
from service.infra.outages import RETRY_AFTER_S, which

__all__ = [
    "STATUS",
    "exception_handlers",
    "problem_body",
    "send_problem",
    "status_of",
    "unavailable",
]

log = logging.getLogger("kith.errors")

#: The HTTP status of each branch of the error tree: chosen here, at the edge.
STATUS: dict[type[KithError], int] = {
    Malformed: 400,
    NotAuthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    InvalidInput: 422,
    UnsupportedVersion: 426,
    RateLimited: 429,
    Unavailable: 503,
}

_problem_encoder = msgspec.json.Encoder()


def status_of(exc: KithError) -> int:
    """The status for ``exc``: its nearest ancestor in :data:`STATUS` (500 for none)."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


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
    return _problem(status_of(exc), exc.code, exc.title, exc.detail, exc.errors)


async def send_problem(send: Send, exc: KithError) -> None:
    """Answer ``exc`` on a raw ASGI ``send``, as the exception handlers would."""
    body = problem_body(exc)
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", b"%d" % len(body)),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()),
    ]
    await send({"type": "http.response.start", "status": status_of(exc), "headers": headers})
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
    return _respond(status_of(exc), exc.code, exc.title, exc.detail, exc.errors, exc.headers)


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
            if key == "data" and message == "'data'":
                continue  # an optional body not sent, named only beside a real error
            if key == "data" or key.startswith("data."):
                key = key[5:]
            elif item.get("source") != "body":
                key = aliases.get(key, key)  # query/path errors use the wire name
            errors.append(field_error(key, message))
    if any(e.message.startswith("JSON is malformed") for e in errors) or (
        not errors and "malformed" in str(exc.detail).lower()
    ):
        return _malformed()
    return _respond(
        422, Code.INVALID_FIELD, "Invalid field", "the request does not match the schema", errors
    )


def _malformed(detail: str = "the request body is not valid JSON") -> Response[bytes]:
    return _respond(400, Code.MALFORMED_JSON, "Malformed JSON", detail)


#: What Litestar answers by itself (routing, the body limit), in Kith's codes.
_STATUS_CODES = {
    400: (Code.BAD_REQUEST, "Bad request"),
    401: (Code.UNAUTHENTICATED, "Not authenticated"),
    403: (Code.FORBIDDEN, "Forbidden"),
    404: (Code.NOT_FOUND, "Not found"),
    405: (Code.METHOD_NOT_ALLOWED, "Method not allowed"),
    413: (Code.BODY_TOO_LARGE, "Request body too large"),
    429: (Code.RATE_LIMITED, "Too many requests"),
}


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    if isinstance(exc.__cause__, SerializationException):
        return _malformed(f"the request body is not valid JSON: {exc.detail}")
    code, title = _STATUS_CODES.get(exc.status_code, (Code.HTTP_ERROR, "HTTP error"))
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
        Code.INVALID_FIELD,
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


def unavailable(dependency: str) -> Unavailable:
    """The answer while ``dependency`` ("database" or "redis") is unreachable."""
    return Unavailable(
        f"the {dependency} is unavailable; nothing was changed — retry in a few seconds",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    dependency = which(exc)
    if dependency is not None:
        log.warning(
            "%s unavailable (%s) on %s %s: answered 503",
            dependency,
            type(exc).__name__,
            request.method,
            request.scope["path"],
        )
        return _kith_error(request, unavailable(dependency))
    # Type and route only: exception text can carry user data (a value echoed by a driver).
    log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.scope["path"])
    return _respond(500, Code.INTERNAL_ERROR, "Internal error", "something went wrong on our side")


exception_handlers: dict[type[Exception], Any] = {
    KithError: _kith_error,
    ValidationException: _validation,
    HTTPException: _http,
    UnicodeDecodeError: _undecodable,
    RecursionError: _undecodable,
    asyncpg.DataError: _unstorable,
    Exception: _unexpected,
}

"""JSON bodies and integer query parameters read strictly: the documented type is the
accepted type.

Litestar converts a handler's ``data`` with msgspec's lax mode (``strict=False``), so
``{"limit": "5"}`` became ``5`` and a number became a datetime — a contract the OpenAPI
does not state and no client should come to rely on. :func:`strict_json_body` runs before
every handler and decodes a JSON body into the handler's declared type with msgspec's
default, strict rules (a string is never a number, a number never a string or a time);
a body that does not match is answered ``422 invalid_field`` naming the field. Litestar
still decodes the body afterwards (from the same cached bytes): a second pass over a
valid body costs microseconds against a request's database round trips, and keeps the
handlers' signatures — and so the OpenAPI — as they are. The push, whose bodies are the
largest, does not pay twice: its ``data`` is declared ``SkipValidation`` (Litestar only
parses the JSON) and it takes the typed value this check decoded (:func:`typed_body`).

Integer query parameters get the same treatment: lax conversion read ``limit=5.0`` as 5
and ``limit=1e2`` as 100; only decimal digits are an integer here (``-`` allowed).
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from litestar import Request
from litestar.enums import RequestEncodingType
from litestar.params import CookieParameter, HeaderParameter, ParameterKwarg, PathParameter
from litestar.typing import FieldDefinition

from schemas.problem import FieldError
from service.errors import Code, InvalidInput, Malformed, field_errors_from_msgspec
from service.http.guard import check_token

__all__ = ["strict_json_body", "typed_body"]

T = TypeVar("T")
_NONE = object()
_decoders: dict[int, Any] = {}  # id(route handler) -> its Decoder, or _NONE (no JSON body)
_int_queries: dict[int, frozenset[str]] = {}  # id(route handler) -> its integer query names
_INTEGER = re.compile(r"-?[0-9]+")
_DECODED = "kith_strict_body"  # request.state key: the body as this check decoded it


def _is_int(field: FieldDefinition) -> bool:
    if field.is_optional:
        inner = [t for t in field.inner_types if t.annotation is not type(None)]
        return len(inner) == 1 and inner[0].annotation is int
    return field.annotation is int


def _int_query_names(request: Request[Any, Any, Any]) -> frozenset[str]:
    handler = request.route_handler
    names = _int_queries.get(id(handler))
    if names is None:
        found = set()
        for name, field in handler.parsed_fn_signature.parameters.items():
            kwarg = field.kwarg_definition
            if isinstance(kwarg, HeaderParameter | CookieParameter | PathParameter):
                continue
            if isinstance(kwarg, ParameterKwarg) and (kwarg.header or kwarg.cookie):
                continue
            if _is_int(field) and name != "data":
                alias = getattr(kwarg, "query", None) or getattr(kwarg, "name", None)
                found.add(alias or name)
        names = _int_queries[id(handler)] = frozenset(found)
    return names


def _decoder_for(request: Request[Any, Any, Any]) -> Any:
    handler = request.route_handler
    key = id(handler)
    decoder = _decoders.get(key)
    if decoder is None:
        decoder = _NONE
        field = handler.parsed_fn_signature.parameters.get("data")
        media = getattr(getattr(field, "kwarg_definition", None), "media_type", None)
        if field is not None and media in (None, RequestEncodingType.JSON):
            decoder = msgspec.json.Decoder(field.annotation)
        _decoders[key] = decoder
    return decoder


async def strict_json_body(request: Request[Any, Any, Any]) -> None:
    """Refuse a JSON body, or an integer query parameter, that only lax coercion would
    fit to the handler's declared type."""
    for name in _int_query_names(request):
        for value in request.query_params.getall(name, []):
            if not _INTEGER.fullmatch(value):
                message = f"Expected an integer (decimal digits), got {value[:20]!r}"
                raise InvalidInput(f"{name}: {message}", errors=[FieldError(name, message)])
    decoder = _decoder_for(request)
    if decoder is _NONE:
        return
    body = await request.body()
    if not body:
        return  # Litestar answers a missing body as it always has
    try:
        request.state[_DECODED] = decoder.decode(body)
    except msgspec.ValidationError as exc:
        # Typed decoding checks types while it parses, so a type error can be found before
        # a syntax error further on: a body that is not JSON at all keeps Litestar's 400.
        if not _is_json(body):
            return
        # The documented order (docs/protocol.md): the token is answered before the body.
        if "caller" in request.route_handler.parsed_fn_signature.parameters:
            check_token(request)
        errors = field_errors_from_msgspec(exc)
        raise InvalidInput(f"{errors[0].field}: {errors[0].message}", errors=errors) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return  # not JSON at all: Litestar's decoding gives its 400 as before


def _is_json(body: bytes) -> bool:
    try:
        msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return False
    return True


def typed_body(request: Request[Any, Any, Any], kind: type[T]) -> T:
    """The request's body as :func:`strict_json_body` decoded it into ``kind`` (for a
    handler whose ``data`` is ``SkipValidation``: Litestar then parses without converting)."""
    value = request.state.get(_DECODED)
    if not isinstance(value, kind):  # no body, or not JSON: the check let it through
        raise Malformed("the request body is not valid JSON", code=Code.MALFORMED_JSON)
    return value

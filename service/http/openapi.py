"""The OpenAPI document as client generators need it (decision 0016).

Litestar writes the document from the route handlers; :func:`finish` completes what it
cannot know:

* **Every error a route can answer**, as ``application/problem+json`` whose ``code`` is an
  enum of the codes that status can carry there. Routes declare their own (``404``,
  ``409``, ...) with ``responses=problems("not_found")``; what follows from the route's
  shape is added here: a body → ``400 malformed_json``, ``413`` and ``422``; parameters →
  ``422``; a bearer token → ``401``; a rate-limited path → ``429``; a ``schema_version``
  → ``426``.
* **Typed synced records**: a change's ``fields`` is a loose object on the wire type (the
  push validates it per table); the document shows push and pull changes as a ``oneOf``
  tagged by ``table``, each with its table's field types, so a generated client has a type
  per table. The bytes on the wire are unchanged.
* **Public routes** say ``security: []`` (no token needed).

The same finished document is served at ``/docs/openapi.json`` (:class:`OpenAPIJson`) and
written to ``schemas/openapi.json`` by ``kith openapi``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Request
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Example

from schemas import account, auth, care, nudges, sync, tables
from schemas.account import DeleteAccountRequest
from schemas.common import ID_PATTERN, SCHEMA_VERSION_MAX, SCHEMA_VERSION_MIN
from schemas.problem import Problem
from schemas.tables import TABLES
from schemas.watermelon import WatermelonMigration, WatermelonPushBody
from service.errors import Code

__all__ = ["CODES", "RATE_LIMITED_PATHS", "OpenAPIJson", "finish", "operation", "problems"]

PROBLEM_JSON = "application/problem+json"

#: The status and meaning of each code (``service.errors.Code``) a documented route can
#: answer, as the document tells client developers.
CODES: dict[Code, tuple[int, str]] = {
    Code.MALFORMED_JSON: (400, "the body is not JSON, not UTF-8, or nested too deeply"),
    Code.INVALID_CURSOR: (400, "the cursor was not issued by this server"),
    Code.UNAUTHENTICATED: (401, "no `Authorization: Bearer` token was sent"),
    Code.INVALID_TOKEN: (401, "the access token is invalid or expired: refresh it"),
    Code.SESSION_REVOKED: (401, "this session was signed out: log in again"),
    Code.INVALID_CREDENTIALS: (401, "email or password is wrong"),
    Code.INVALID_REFRESH_TOKEN: (401, "the refresh token is unknown or expired: log in again"),
    Code.REFRESH_TOKEN_REUSED: (401, "a used refresh token came back: the session was ended"),
    Code.INVALID_ID_TOKEN: (
        401,
        "the provider's ID token failed a check (signature, issuer, audience, expiry, nonce): "
        "get a fresh one from the provider's SDK",
    ),
    Code.DEVICE_MISMATCH: (403, "device_id is not the device the token was issued to"),
    Code.READ_ONLY_TABLE: (403, "the table is written by the server only"),
    Code.CONSENT_REQUIRED: (
        403,
        "accept the current privacy terms first (POST /v1/account/consent)",
    ),
    Code.REAUTHENTICATION_REQUIRED: (403, "confirm with the password (or sign in again)"),
    Code.WRONG_PASSWORD: (403, "the password is wrong"),
    Code.ALERTS_NOT_SHARED: (403, "the person has not shared alerts with you"),
    Code.INVALID_CODE: (403, "the emailed code is wrong, used, expired or tried too often"),
    Code.BAD_REQUEST: (400, "a query parameter or the body's shape is not what it must be"),
    Code.NOT_FOUND: (404, "no such resource of yours"),
    Code.ALERT_NOT_FOUND: (404, "no such alert (of yours, or of the person you care for)"),
    Code.INVITATION_INVALID: (404, "the invitation code expired, was used, or never existed"),
    Code.PROVIDER_DISABLED: (404, "this server does not offer sign-in with that provider"),
    Code.EMAIL_TAKEN: (409, "an account with this email exists"),
    Code.BATCH_ID_REUSED: (409, "this batch_id was used for different changes"),
    Code.ALREADY_LINKED: (409, "you already care for this person"),
    Code.ALERT_RESOLVED: (409, "the alert was resolved before it was acknowledged"),
    Code.OWN_INVITATION: (409, "you cannot accept your own invitation"),
    Code.LINK_REQUIRED: (
        409,
        "an account with this email exists: sign in to it, then link the provider "
        "(POST /v1/account/identities)",
    ),
    Code.IDENTITY_TAKEN: (409, "this provider account is linked to another Kith account"),
    Code.PROVIDER_ALREADY_LINKED: (
        409,
        "another account of this provider is linked already: unlink it first",
    ),
    Code.LAST_SIGN_IN_METHOD: (409, "the only way left to sign in cannot be removed"),
    Code.BODY_TOO_LARGE: (413, "the body is larger than the server accepts"),
    Code.INVALID_FIELD: (422, "a field is invalid; `errors` names each one by its path"),
    Code.UNSUPPORTED_SCHEMA_VERSION: (426, "schema_version outside what this server speaks"),
    Code.RATE_LIMITED: (429, "too many requests: wait `Retry-After` seconds"),
    Code.UNAVAILABLE: (503, "PostgreSQL or Redis is unreachable: retry after `Retry-After` s"),
    Code.PROVIDER_UNAVAILABLE: (
        503,
        "the provider's keys could not be fetched: retry after `Retry-After` s",
    ),
}

_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Request body too large",
    422: "Invalid field",
    426: "Upgrade required",
    429: "Too many requests",
    503: "Service unavailable",
}

#: Paths the rate limiter counts (service/ratelimit.py): they may answer 429.
RATE_LIMITED_PATHS = frozenset(
    {
        "/v1/auth/login",
        "/v1/auth/register",
        "/v1/auth/refresh",
        "/v1/auth/apple",
        "/v1/auth/google",
        "/v1/sync/push",
        "/v1/sync/pull",
        "/v1/watermelon/push",
        "/v1/watermelon/pull",
        # counted by their handlers: password confirmations per account, resets per email
        "/v1/account",
        "/v1/account/email",
        "/v1/account/email/confirm",
        "/v1/auth/password-reset",
        "/v1/auth/password-reset/confirm",
    }
)

_AUTH_CODES = (Code.UNAUTHENTICATED, Code.INVALID_TOKEN, Code.SESSION_REVOKED)
_REF = "#/components/schemas/{name}"


def _example(code: Code) -> dict[str, Any]:
    status, meaning = CODES[code]
    return {
        "type": f"https://kith.dev/problems/{code.value}",
        "title": _TITLES[status],
        "status": status,
        "code": code.value,
        "detail": meaning,
    }


def operation(
    method: Callable[..., HTTPRouteHandler],
    path: str,
    summary: str,
    *errors: Code,
    status_code: int = 200,
    **options: Any,
) -> HTTPRouteHandler:
    """A documented route in a line: ``@operation(post, "/login", "Sign in a device",
    Code.INVALID_CREDENTIALS)`` — its method, path, summary and the problems it may answer
    beyond those its shape implies; 200 unless ``status_code`` says otherwise (Litestar's
    default for a POST is 201, which only a creation answers)."""
    if errors:
        options["responses"] = problems(*errors)
    return method(path, status_code=status_code, summary=summary, **options)


def problems(*codes: Code) -> dict[int, ResponseSpec]:
    """The errors a route answers beyond those its shape implies, for ``responses=``:
    ``@get(..., responses=problems(Code.NOT_FOUND))``."""
    by_status: dict[int, list[Code]] = {}
    for code in codes:
        by_status.setdefault(CODES[code][0], []).append(code)
    return {
        status: ResponseSpec(
            data_container=Problem,
            generate_examples=False,
            description=_TITLES[status],
            media_type=PROBLEM_JSON,
            examples=[Example(summary=code.value, value=_example(code)) for code in group],
        )
        for status, group in by_status.items()
    }


def _problem_response(status: int, codes: list[Code]) -> dict[str, Any]:
    return {
        "description": f"{_TITLES[status]}: "
        + "; ".join(f"`{code.value}` {CODES[code][1]}" for code in codes),
        "content": {
            PROBLEM_JSON: {
                "schema": {
                    "allOf": [
                        {"$ref": _REF.format(name="Problem")},
                        {
                            "type": "object",
                            "properties": {
                                "code": {"type": "string", "enum": [c.value for c in codes]}
                            },
                        },
                    ]
                },
                "examples": {c.value: {"summary": c.value, "value": _example(c)} for c in codes},
            }
        },
    }


def _declared_codes(response: dict[str, Any]) -> list[Code]:
    """The codes a route declared with :func:`problems` (kept in its examples)."""
    examples = response.get("content", {}).get(PROBLEM_JSON, {}).get("examples", {})
    return [Code(e["value"]["code"]) for e in examples.values() if e.get("value", {}).get("code")]


def _implied_codes(path: str, operation: dict[str, Any], doc: dict[str, Any]) -> list[Code]:
    codes: list[Code] = []
    body = operation.get("requestBody")
    if body:
        codes += [Code.MALFORMED_JSON, Code.BODY_TOO_LARGE, Code.INVALID_FIELD]
        ref = body["content"]["application/json"]["schema"].get("$ref", "")
        properties = doc["components"]["schemas"].get(ref.rsplit("/", 1)[-1], {})
        if "schema_version" in properties.get("properties", {}):
            codes.append(Code.UNSUPPORTED_SCHEMA_VERSION)
    if operation.get("parameters") and Code.INVALID_FIELD not in codes:
        codes.append(Code.INVALID_FIELD)
    if operation.get("security"):
        codes += _AUTH_CODES
    if path in RATE_LIMITED_PATHS:
        codes.append(Code.RATE_LIMITED)
    if not path.startswith("/health/"):  # an outage of what Kith depends on (issue 18)
        codes.append(Code.UNAVAILABLE)
    return codes


def _finish_operation(path: str, operation: dict[str, Any], doc: dict[str, Any]) -> None:
    operation.setdefault("security", [])  # public: no token needed
    responses: dict[str, Any] = operation["responses"]
    by_status: dict[int, list[Code]] = {}
    for key in list(responses):
        if int(key) >= 400 and PROBLEM_JSON not in responses[key].get("content", {}):
            if key == "400":  # Litestar's generic "Validation Exception": not Kith's shape
                del responses[key]
            continue
        for code in _declared_codes(responses[key]):
            by_status.setdefault(int(key), []).append(code)
    for code in _implied_codes(path, operation, doc):
        group = by_status.setdefault(CODES[code][0], [])
        if code not in group:
            group.append(code)
    for status in sorted(by_status):
        responses[str(status)] = _problem_response(status, by_status[status])
        if status in {429, 503}:
            responses[str(status)]["headers"] = {
                "Retry-After": {
                    "description": "seconds to wait before retrying",
                    "schema": {"type": "integer", "minimum": 0},
                }
            }


# -- typed synced records ------------------------------------------------------------------


def _read_types() -> dict[str, type[msgspec.Struct]]:
    """table -> the type of its records' fields as a pull returns them."""
    types = {name: spec.read_type or spec.client_type for name, spec in TABLES.items()}
    return {name: t for name, t in types.items() if t is not None}


def _variant_name(table: str, suffix: str) -> str:
    return "".join(part.title() for part in table.split("_")) + suffix


#: An RFC 3339 time's offset from -12:00 to +14:00 (service/sync/validation.py).
OFFSET_PATTERN = r"(Z|z|-((0[0-9]|1[01]):[0-5][0-9]|12:00)|\+((0[0-9]|1[0-3]):[0-5][0-9]|14:00))$"


def _no_nul(schema: Any) -> None:
    """PostgreSQL's jsonb cannot store U+0000, so a push refuses text holding it (422):
    every free-text string a client writes says so with a pattern; and every time says
    the UTC offsets a push accepts."""
    if isinstance(schema, list):
        for item in schema:
            _no_nul(item)
    elif isinstance(schema, dict):
        if schema.get("type") == "string" and not schema.keys() & {"pattern", "format", "enum"}:
            schema["pattern"] = "^[^\\u0000]*$"
        if schema.get("type") == "string" and schema.get("format") == "date-time":
            schema["pattern"] = OFFSET_PATTERN
        for value in schema.values():
            _no_nul(value)


def _typed_changes(doc: dict[str, Any]) -> None:
    """Replace the loose ``ChangeIn``/``ChangeOut`` with a ``oneOf`` tagged by ``table``."""
    schemas: dict[str, Any] = doc["components"]["schemas"]
    pulled = _read_types()
    types = [spec.client_type for spec in TABLES.values() if spec.client_type is not None]
    _, components = msgspec.json.schema_components([*types, *pulled.values()], ref_template=_REF)
    for spec in TABLES.values():
        if spec.client_type is not None:
            _no_nul(components[spec.client_type.__name__])
    schemas.update(components)
    base_in, base_out = schemas["ChangeIn"], schemas["ChangeOut"]

    ins: dict[str, str] = {}
    for table, spec in TABLES.items():
        if spec.client_type is None:
            continue  # server-written only: a push to it is refused (read_only_table)
        variant = copy.deepcopy(base_in)
        props = variant["properties"]
        props["table"] = {"type": "string", "const": table}
        props["fields"] = {"$ref": _REF.format(name=spec.client_type.__name__)}
        if spec.only_id is not None:
            props["id"] = {"type": "string", "const": spec.only_id}
        if not spec.deletable:
            props["deleted"] = {"type": "boolean", "const": False, "default": False}
        variant["title"] = name = _variant_name(table, "ChangeIn")
        variant["additionalProperties"] = False
        # A change writes at least one field, or deletes (422 otherwise). As if/else, which
        # generators skip: an anyOf here would become a union that loosens the client type.
        variant["if"] = {"properties": {"deleted": {"const": True}}, "required": ["deleted"]}
        variant["else"] = {
            "properties": {"fields": {"minProperties": 1}},
            "required": ["fields"],
        }
        schemas[name] = variant
        ins[table] = _REF.format(name=name)

    outs: dict[str, str] = {}
    for table, read_type in pulled.items():
        variant = copy.deepcopy(base_out)
        props = variant["properties"]
        props["table"] = {"type": "string", "const": table}
        props["id"] = {"type": "string", "pattern": ID_PATTERN}
        props["fields"] = {
            "$ref": _REF.format(name=read_type.__name__),
            "description": "the record's whole state; empty for a tombstone",
        }
        variant["title"] = name = _variant_name(table, "ChangeOut")
        schemas[name] = variant
        outs[table] = _REF.format(name=name)

    for name, mapping, about in (
        ("ChangeIn", ins, "One record's change: the fields it writes, all stamped with `hlc`."),
        ("ChangeOut", outs, "A record's whole current state; `fields` is empty for tombstones."),
    ):
        schemas[name] = {
            "title": name,
            "description": about,
            "oneOf": [{"$ref": ref} for ref in mapping.values()],
            "discriminator": {"propertyName": "table", "mapping": mapping},
        }
    for request in ("PushRequest", "PullRequest"):
        schemas[request]["properties"]["schema_version"] = {
            "type": "integer",
            "minimum": SCHEMA_VERSION_MIN,
            "maximum": SCHEMA_VERSION_MAX,
            "description": "the sync schema version the app speaks; others answer 426",
        }


# -- what the wire types refuse that Litestar's schemas do not say ---------------------------


def _closed_types() -> set[str]:
    """Wire types that refuse unknown fields (``forbid_unknown_fields``): the document says
    ``additionalProperties: false`` for them, as the server answers 422 to an extra field."""
    names: set[str] = set()
    for module in (account, auth, care, nudges, sync, tables):
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, msgspec.Struct)
                and value.__struct_config__.forbid_unknown_fields
            ):
                names.add(value.__name__)
    return names


def _push_token_by_provider(doc: dict[str, Any]) -> None:
    """A push address's ``token`` format depends on its provider and is checked in each
    variant's ``__post_init__``: said here as patterns, and the union tagged by
    ``provider``."""
    schemas = doc["components"]["schemas"]
    port = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5]?[0-9]{1,4})"
    hosted = rf"^https://([A-Za-z0-9-]+\.)+[A-Za-z]{{2,4}}(:{port})?(/[!-~]*)?$"
    tokens = {
        "ApnsAddress": ("^([0-9A-Fa-f]{2}){8,100}$", "8 to 100 bytes in hexadecimal"),
        "FcmAddress": ("^[!-~]+$", "printable ASCII, no spaces"),
        "WebPushAddress": (
            hosted,
            "the subscription's https endpoint on its push service's public host name "
            "(no IP address, no credentials)",
        ),
    }
    for name, (pattern, about) in tokens.items():
        schemas[name]["properties"]["token"].update(pattern=pattern, description=about)
    web = schemas["WebPushAddress"]
    web["properties"]["keys"] = {"$ref": _REF.format(name="WebPushKeys")}
    web["required"] = sorted({*web["required"], "keys"})
    put = doc["paths"]["/v1/devices/{device_id}/push-token"]["put"]
    put["requestBody"]["content"]["application/json"]["schema"]["discriminator"] = {
        "propertyName": "provider",
        "mapping": {
            schemas[name]["properties"]["provider"]["const"]: _REF.format(name=name)
            for name in tokens
        },
    }


def _watermelon(doc: dict[str, Any]) -> None:
    """WatermelonDB's routes read their inputs themselves (both push shapes, query text):
    the document says what they accept."""
    pull = doc["paths"].get("/v1/watermelon/pull", {}).get("get")
    push = doc["paths"].get("/v1/watermelon/push", {}).get("post")
    if pull is None or push is None:
        return
    schemas = doc["components"]["schemas"]
    _, components = msgspec.json.schema_components(
        [WatermelonPushBody, WatermelonMigration], ref_template=_REF
    )
    for name, component in components.items():
        schemas.setdefault(name, component)
    push["requestBody"] = {
        "required": True,
        "description": "`{changes, lastPulledAt}` as pushChanges receives it, or the bare "
        "changes object",
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"$ref": _REF.format(name=WatermelonPushBody.__name__)},
                        {"$ref": _REF.format(name="WatermelonChanges")},
                    ]
                }
            }
        },
    }
    patterns = {
        "last_pulled_at": r"^(|null|undefined|[0-9]{1,18})$",
        "columns": r"^$|^[^,]*\.[^,]*(,[^,]*\.[^,]*)*$",
    }
    for parameter in pull["parameters"]:
        schema = parameter["schema"]
        if parameter["name"] in patterns:
            schema["pattern"] = patterns[parameter["name"]]
        if parameter["name"] == "migration":
            schema["contentMediaType"] = "application/json"
            schema["contentSchema"] = {"$ref": _REF.format(name=WatermelonMigration.__name__)}


def _delete_account_body(doc: dict[str, Any]) -> None:
    """Deleting the account reads its optional body itself (a password)."""
    operation = doc["paths"].get("/v1/account", {}).get("delete")
    if operation is None:
        return
    _, components = msgspec.json.schema_components([DeleteAccountRequest], ref_template=_REF)
    doc["components"]["schemas"].update(components)
    name = DeleteAccountRequest.__name__
    doc["components"]["schemas"][name]["additionalProperties"] = False
    operation["requestBody"] = {
        "required": False,
        "content": {"application/json": {"schema": {"$ref": _REF.format(name=name)}}},
    }


def finish(schema: dict[str, Any]) -> dict[str, Any]:
    """Litestar's document (``app.openapi_schema.to_schema()``) completed for clients."""
    doc = copy.deepcopy(schema)
    _, problem = msgspec.json.schema_components([Problem], ref_template=_REF)
    schemas = doc["components"]["schemas"]
    schemas.update(problem)
    for name in _closed_types() & schemas.keys():
        schemas[name]["additionalProperties"] = False
    _push_token_by_provider(doc)
    _watermelon(doc)
    _delete_account_body(doc)
    if "ConsentRequest" in schemas:  # consenting is saying yes (422 otherwise)
        schemas["ConsentRequest"]["properties"]["wellbeing_consent"] = {
            "type": "boolean",
            "const": True,
            "description": "consent to the processing of wellbeing data: must be true",
        }
    _typed_changes(doc)
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in {"get", "put", "post", "delete", "patch"}:
                _finish_operation(path, operation, doc)
    return doc


class OpenAPIJson(JsonRenderPlugin):
    """Serves :func:`finish`'s document at ``/docs/openapi.json`` (the reference page and
    the Swagger page load it from there)."""

    def __init__(self) -> None:
        super().__init__()
        self._rendered: bytes | None = None

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if self._rendered is None:  # the document never changes while the process runs
            self._rendered = msgspec.json.encode(finish(openapi_schema))
        return self._rendered

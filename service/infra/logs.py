"""Structured logs: one JSON object per line, a request id on every line, secrets redacted.

Why JSON: Kith runs as several processes (Granian workers, ``kith worker``) whose output
is collected by the platform; a line that is one JSON object can be filtered by level,
logger or request id without fragile parsing, and lines of different processes never
need to be reassembled.

* :func:`configure_logging` gives the root logger one JSON handler on stderr (the API's
  worker processes and the job worker call it; :func:`granian_log_config` gives Granian's
  own loggers the same format).
* :class:`ObservedApp` wraps the ASGI app: it takes the request id from ``X-Request-ID``
  (when short and made of safe characters) or makes one, echoes it in the response, makes
  it visible to every log line of the request (a context variable) and writes one access
  line per request with the route template, status and duration — and records the
  request's latency in the metrics.
* :class:`RedactingFilter` is the last line of defence: Kith never logs tokens, passwords,
  push tokens or journal text on purpose, and this filter blanks bearer tokens, JWTs and
  long random-looking strings that slip into a message anyway.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import os
import re
import secrets
import sys
import time
import traceback
from contextvars import ContextVar
from typing import Any, Protocol

import msgspec

from service.infra.asgi import ASGIApp, Message, Receive, Scope, Send, header

__all__ = [
    "JsonFormatter",
    "ObservedApp",
    "RedactingFilter",
    "accept_request_id",
    "configure_logging",
    "granian_log_config",
    "redact",
    "request_id_var",
    "write_access_line",
]

#: The id of the request (or job) being handled; every log line carries it when set.
request_id_var: ContextVar[str | None] = ContextVar("kith_request_id", default=None)


access_log = logging.getLogger("kith.access")

# -- redaction ------------------------------------------------------------------------------

REDACTED = "[redacted]"
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){0,2}")
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)[^\s\"',;]+")
_NAMED_SECRET = re.compile(
    r"(?i)\b(password|passwd|secret|token|refresh_token|access_token|authorization|api_key)"
    r"([\"']?\s*[:=]\s*[\"']?)([^\s\"',;}]+)"
)
# Opaque tokens: refresh tokens (43 base64url characters), FCM registration tokens,
# Web Push keys. Ids and hex digests are lower case and stay readable.
_LONG_RUN = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{32,}(?![A-Za-z0-9_-])")
_LONG_HEX = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{64,}(?![0-9A-Fa-f])")  # APNs tokens


def _looks_random(match: re.Match[str]) -> str:
    run = match.group(0)
    mixed = any(c.isupper() for c in run) and any(c.islower() for c in run)
    return REDACTED if mixed and any(c.isdigit() for c in run) else run


def redact(text: str) -> str:
    """``text`` with anything that looks like a credential replaced by ``[redacted]``."""
    if len(text) < 16:
        return text
    text = _JWT.sub(REDACTED, text)
    text = _BEARER.sub(rf"\1\2{REDACTED}", text)
    text = _NAMED_SECRET.sub(rf"\1\2{REDACTED}", text)
    text = _LONG_HEX.sub(REDACTED, text)
    return _LONG_RUN.sub(_looks_random, text)


class RedactingFilter(logging.Filter):
    """Redact the rendered message and string extras of every record (never drops one).

    The message is rendered here (``getMessage``) and its arguments dropped, so a secret
    passed as an argument is redacted as well as one in the format string."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = redact(message), None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


class ContextFilter(logging.Filter):
    """Stamp the record with the request id of the context it was logged in."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


# -- formatting ------------------------------------------------------------------------------

_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "request_id", "color_message", "taskName"}
)
_encode = msgspec.json.Encoder().encode


def _jsonable(value: object) -> object:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ms), level, logger, message, pid, request_id
    when known, and the record's extras (``extra={"route": ...}``). An exception is given by
    its type and stack only: exception messages can carry user data (a value a driver
    echoes back)."""

    def format(self, record: logging.LogRecord) -> str:
        created = dt.datetime.fromtimestamp(record.created, dt.UTC)
        entry: dict[str, object] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = _jsonable(value)
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
            entry["stack"] = "".join(traceback.format_tb(record.exc_info[2]))
        return _encode(entry).decode()


def _json_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    handler.set_name("kith-json")
    return handler


def configure_logging(level: str) -> None:
    """Send every logger's records through one JSON handler on stderr.

    Replaces the root logger's handlers (the ASGI server and Litestar would otherwise add
    their own plain-text ones) and lets ``kith.*`` propagate to it; idempotent, so the API
    worker processes may call it again after Granian configured its loggers."""
    root = logging.getLogger()
    root.handlers = [_json_handler()]
    root.setLevel(level)
    kith = logging.getLogger("kith")
    kith.handlers = []
    kith.setLevel(level)
    kith.propagate = True
    logging.captureWarnings(True)  # Python warnings become JSON lines too, not raw stderr


def granian_log_config() -> dict[str, Any]:
    """Granian's ``log_dictconfig``: its own loggers in the same JSON format, on stderr."""
    handler = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "formatter": "json",
        "filters": ["context", "redact"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "service.infra.logs.JsonFormatter"}},
        "filters": {
            "context": {"()": "service.infra.logs.ContextFilter"},
            "redact": {"()": "service.infra.logs.RedactingFilter"},
        },
        "handlers": {"json": handler},
        "loggers": {
            "_granian": {"handlers": ["json"], "level": "INFO", "propagate": False},
            "granian.access": {"handlers": ["json"], "level": "INFO", "propagate": False},
        },
    }


# -- the request id and the access line -----------------------------------------------------

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def accept_request_id(raw: str | None) -> str:
    """The client's ``X-Request-ID`` if it is short and made of safe characters (it ends up
    in logs and a response header), else a fresh random one."""
    if raw and _REQUEST_ID.fullmatch(raw) and redact(raw) == raw:
        return raw
    return secrets.token_hex(16)


class RequestObserver(Protocol):
    """Where :class:`ObservedApp` reports each request (the metrics)."""

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None: ...


_QUIET_ROUTES = frozenset({"/health/live", "/health/ready", "/metrics"})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_CONVERTER = re.compile(r"\{(\w+):\w+\}")


def route_of(scope: Scope) -> str:
    """The route template the router matched (``/v1/devices/{device_id}/push-token``), never
    the raw path: bounded label values, and no ids or junk from scanners in the logs."""
    template = scope.get("path_template")
    if not isinstance(template, str) or not template:
        return "unmatched"
    return _CONVERTER.sub(r"{\1}", template)


class ObservedApp:
    """The ASGI app with a request id, an access line and a latency sample per request.

    It wraps the whole application rather than being Litestar middleware because
    Litestar runs middleware only for matched routes: 404s and 405s must be counted and
    logged too. Lifespan and other scopes pass straight through."""

    def __init__(self, app: ASGIApp, observer: RequestObserver | None = None) -> None:
        self.app = app
        self._observer = observer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accept_request_id(header(scope, b"x-request-id"))
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            status = status or 500
            raise
        finally:
            # No response started and nothing raised: the client went away (nginx's 499).
            self._finish(scope, status or 499, time.perf_counter() - started)
            request_id_var.reset(token)

    def _finish(self, scope: Scope, status: int, seconds: float) -> None:
        method, route = str(scope.get("method", "")), route_of(scope)
        if method not in _METHODS:
            method = "OTHER"  # a client's own token: bounded labels, nothing echoed
        if self._observer is not None:
            self._observer.http_request(method, route, status, seconds)
        level = logging.DEBUG if route in _QUIET_ROUTES and status < 500 else logging.INFO
        write_access_line(level, method, route, status, seconds)


# -- the access line, written directly --------------------------------------------------------
#
# One access line per request is the most frequent log line by far, and going through
# ``logging`` (a LogRecord, the caller lookup, two filters, the formatter) costs ~28 µs —
# as much as answering a no-change pull. Its fields are known and safe (the method, the
# route template, the status, the duration and a request id that ``accept_request_id``
# already checked), so when Kith's own JSON handler is the one that would write it, the
# line is built and written here, in exactly the shape JsonFormatter gives (~4 µs).
# Otherwise (tests capturing records, an operator's own logging config) it goes through
# ``logging`` as any other line.


@functools.lru_cache(maxsize=4)
def _utc_second(whole: int) -> str:
    return dt.datetime.fromtimestamp(whole, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _utc_millis(now: float) -> str:
    whole = int(now)
    return f"{_utc_second(whole)}.{int((now - whole) * 1000):03d}Z"


def _direct_handler() -> logging.StreamHandler[Any] | None:
    """Kith's JSON handler if it is the only place ``kith.access`` lines go, else None."""
    logger: logging.Logger | None = access_log
    handlers: list[logging.Handler] = []
    while logger is not None:
        if logger.filters:
            return None
        handlers.extend(logger.handlers)
        logger = logger.parent if logger.propagate else None
    if len(handlers) != 1 or handlers[0].get_name() != "kith-json":
        return None
    handler = handlers[0]
    return handler if isinstance(handler, logging.StreamHandler) else None


def write_access_line(level: int, method: str, route: str, status: int, seconds: float) -> None:
    """Log one request's access line (``kith.access``) as JsonFormatter would."""
    if not access_log.isEnabledFor(level):
        return
    handler = _direct_handler()
    duration_ms = round(seconds * 1000, 2)
    if (
        handler is None
        or level < handler.level
        or not _write_direct(handler, level, method, route, status, duration_ms)
    ):
        access_log.log(
            level,
            "%s %s %d",
            method,
            route,
            status,
            extra={"method": method, "route": route, "status": status, "duration_ms": duration_ms},
        )


def _write_direct(
    handler: logging.StreamHandler[Any],
    level: int,
    method: str,
    route: str,
    status: int,
    duration_ms: float,
) -> bool:
    """Write the line; False if the stream refused it (``logging`` then reports that as it
    reports any handler error, instead of the request failing)."""
    entry: dict[str, object] = {
        "time": _utc_millis(time.time()),
        "level": logging.getLevelName(level),
        "logger": access_log.name,
        "message": f"{method} {route} {status}",
        "pid": os.getpid(),  # not cached: Granian may fork workers after import
    }
    request_id = request_id_var.get()
    if request_id:
        entry["request_id"] = request_id
    entry |= {"method": method, "route": route, "status": status, "duration_ms": duration_ms}
    line = _encode(entry).decode()
    try:
        with handler.lock or contextlib.nullcontext():
            handler.stream.write(line + handler.terminator)
            handler.flush()
    except Exception:
        return False
    return True

"""How the client reaches the server: a two-method :class:`Transport` interface and its
real implementation on a synchronous ``httpx.Client``.

The sync logic only ever sees :class:`Transport`, so tests can swap in a fake (or a
wrapper that drops responses) without touching the network. A transport raises
:class:`~sync.client.errors.TransportError` when no answer arrives, and otherwise
returns the status and decoded JSON body whatever the status is; turning statuses into
exceptions is the client's job.

:func:`register` and :func:`login` sign a device in and return its :class:`Tokens`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

import httpx

from sync.client.errors import TransportError, error_for_status

__all__ = ["HttpxTransport", "Reply", "Tokens", "Transport", "login", "register"]


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer: its status, its JSON body (``None`` if it had none) and, for 429 and
    503, how many seconds the server asked to wait (``Retry-After``), if it said."""

    status: int
    body: Any
    retry_after_s: float | None = None


class Transport(Protocol):
    """Send one JSON request; raise ``TransportError`` if no answer arrives."""

    def post(self, path: str, body: Mapping[str, Any]) -> Reply: ...

    def get(self, path: str, params: Mapping[str, str]) -> Reply: ...


@dataclass(frozen=True, slots=True)
class Tokens:
    """A signed-in device's session."""

    user_id: str
    device_id: str
    access_token: str
    refresh_token: str


def _reply(response: httpx.Response) -> Reply:
    try:
        body = response.json() if response.content else None
    except json.JSONDecodeError:
        body = None  # e.g. a proxy's HTML error page: the status still says what happened
    return Reply(response.status_code, body, _seconds(response.headers.get("retry-after")))


def _seconds(value: str | None) -> float | None:
    """``Retry-After`` in delay-seconds (Kith's form); an HTTP date or garbage is ignored."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


class HttpxTransport:
    """The real transport: one connection pool, a bearer token, JSON in and out."""

    def __init__(self, base_url: str, access_token: str, *, timeout: float = 10.0) -> None:
        self._client = httpx.Client(base_url=base_url, timeout=timeout)
        self.access_token = access_token

    def post(self, path: str, body: Mapping[str, Any]) -> Reply:
        return self._send("POST", path, json=dict(body))

    def get(self, path: str, params: Mapping[str, str]) -> Reply:
        return self._send("GET", path, params=dict(params))

    def _send(self, method: str, path: str, **kwargs: Any) -> Reply:
        headers = {"Authorization": f"Bearer {self.access_token}"}
        try:
            response = self._client.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise TransportError(f"{method} {path}: {exc!r}") from exc
        return _reply(response)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpxTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _sign_in(base_url: str, path: str, payload: dict[str, Any], timeout: float) -> Tokens:
    try:
        response = httpx.post(f"{base_url.rstrip('/')}{path}", json=payload, timeout=timeout)
    except httpx.TransportError as exc:
        raise TransportError(f"POST {path}: {exc!r}") from exc
    reply = _reply(response)
    if reply.status not in (200, 201):
        raise error_for_status(reply.status, reply.body, reply.retry_after_s)
    body = reply.body
    return Tokens(body["user_id"], body["device_id"], body["access_token"], body["refresh_token"])


def _device(device_id: str, platform: str) -> dict[str, str]:
    return {"id": device_id, "platform": platform, "name": "reference client"}


def register(
    base_url: str,
    *,
    email: str,
    password: str,
    device_id: str,
    display_name: str,
    time_zone: str = "UTC",
    platform: str = "other",
    terms_version: str | None = None,
    wellbeing_consent: bool = False,
    timeout: float = 10.0,
) -> Tokens:
    """Create an account and sign this device in. Where the server asks for consent
    (``KITH_TERMS_VERSION``), pass the version of the terms the person accepted and their
    explicit consent to process wellbeing data, as the app's sign-up screen records them."""
    payload: dict[str, Any] = {
        "email": email,
        "password": password,
        "display_name": display_name,
        "time_zone": time_zone,
        "device": _device(device_id, platform),
        "wellbeing_consent": wellbeing_consent,
    }
    if terms_version is not None:
        payload["terms_version"] = terms_version
    return _sign_in(base_url, "/v1/auth/register", payload, timeout)


def login(
    base_url: str,
    *,
    email: str,
    password: str,
    device_id: str,
    platform: str = "other",
    timeout: float = 10.0,
) -> Tokens:
    """Sign another device in to an existing account; each device gets its own session."""
    payload = {"email": email, "password": password, "device": _device(device_id, platform)}
    return _sign_in(base_url, "/v1/auth/login", payload, timeout)

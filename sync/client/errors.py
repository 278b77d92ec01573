"""What can go wrong when a device syncs, as a small exception tree.

A phone app needs to tell three situations apart: "no answer, try later" (nothing is
lost, every change stays queued), "the server said no" (retrying the same request will
not help; show the user or fix the app), and "the app itself is too old". So::

    SyncError
    ├── TransportError        no answer at all (offline, timeout, reset): retry later
    └── ServerError           the server answered with an error status
        ├── NotAuthenticated  401: refresh the access token or log in again
        ├── UpgradeRequired   426: this app speaks an unsupported schema version
        ├── RetryLater        429 or 5xx: the request was fine, the server was not
        │                     (503 unavailable: PostgreSQL or Redis down; the client has
        │                     already backed off and retried, see ``SyncClient``)
        └── Rejected          any other 4xx: this request will never succeed as sent

    RecordNotFound            a local edit names a record this device does not have

Whatever the error, local data and queued changes are kept: a sync never loses work.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "NotAuthenticated",
    "RecordNotFound",
    "Rejected",
    "RetryLater",
    "ServerError",
    "SyncError",
    "TransportError",
    "UpgradeRequired",
    "error_for_status",
]


class SyncError(Exception):
    """Root of everything a sync can raise."""


class TransportError(SyncError):
    """No response arrived. The request may or may not have reached the server, which is
    why a push is retried with the same ``batch_id``."""


class ServerError(SyncError):
    """The server answered with an error status and (usually) a problem-details body."""

    def __init__(self, status: int, body: Any) -> None:
        problem = body if isinstance(body, dict) else {}
        self.status = status
        self.code: str = str(problem.get("code", "unknown"))
        self.detail: str = str(problem.get("detail", ""))
        self.errors: list[Any] = list(problem.get("errors") or [])
        super().__init__(f"HTTP {status} {self.code}: {self.detail}".rstrip(": "))


class NotAuthenticated(ServerError):
    """401: the access token is missing, expired or revoked."""


class UpgradeRequired(ServerError):
    """426: the server does not speak this client's schema version. Keep local data; ask
    the person to update the app."""


class RetryLater(ServerError):
    """429 or 5xx: nothing was applied; the same request may succeed later (no sooner than
    ``retry_after_s``, when the server said)."""

    def __init__(self, status: int, body: Any, retry_after_s: float | None = None) -> None:
        super().__init__(status, body)
        self.retry_after_s = retry_after_s


class Rejected(ServerError):
    """Any other 4xx (e.g. 422 with field paths in ``errors``): retrying will not help.
    A rejected push stays in flight (nothing is dropped silently) until the app calls
    ``SyncClient.discard_rejected_batch()``."""


class RecordNotFound(LookupError):
    """A local update or delete names a record this device does not have (or has deleted)."""


def error_for_status(status: int, body: Any, retry_after_s: float | None = None) -> ServerError:
    """The exception for an error response."""
    if status == 401:
        return NotAuthenticated(status, body)
    if status == 426:
        return UpgradeRequired(status, body)
    if status == 429 or status >= 500:
        return RetryLater(status, body, retry_after_s)
    return Rejected(status, body)

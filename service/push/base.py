"""What every push provider speaks: one notification to one device address, one result.

The providers (``apns.py``, ``fcm.py``, ``webpush.py``) only translate; what a result
*means* — deliver, retry, forget the token, stop the app — each provider's ``judge``
reads from its answers into one vocabulary (:class:`Action`), which ``delivery.py`` acts on
the same way for all of them.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import enum
import hashlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg

from schemas.auth import ProviderName
from service.store.push import Address

__all__ = [
    "NUDGE_CATEGORY",
    "Action",
    "Address",
    "Notification",
    "Provider",
    "ProviderName",
    "SendResult",
    "Shared",
    "SharedTokenLike",
    "Verdict",
    "collapse_key",
    "retry_after_s",
    "retry_verdict",
]


#: The phone's action buttons for a nudge (APNs category / FCM click action).
NUDGE_CATEGORY = "KITH_NUDGE"


@dataclass(frozen=True, slots=True)
class Notification:
    """A visible notification. ``collapse_id`` is the nudge id: a retried send replaces
    the one already on the phone instead of showing twice."""

    collapse_id: str
    title: str
    body: str
    category: str = NUDGE_CATEGORY
    data: dict[str, str] = field(default_factory=dict)
    ttl_s: int = 24 * 3600
    #: Breaks through Focus (APNs interruption-level time-sensitive, FCM high priority):
    #: a caregiver's missed-check-in alert, never a nudge.
    time_sensitive: bool = False


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the provider answered. ``status`` 0 means no answer (timeout, connection)."""

    status: int
    reason: str | None = None  # the provider's reason / error code, e.g. "BadDeviceToken"
    retry_after_s: float | None = None
    timestamp_ms: int | None = None  # APNs 410: when the token stopped being valid
    provider_id: str | None = None  # apns-id / FCM message name
    credential: str | None = None  # the provider token the send used (to re-mint only it)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Provider(Protocol):
    name: ProviderName
    #: The token its requests carry, which the provider may reject (None: Web Push, whose
    #: VAPID signature is per origin and never refused for age).
    credentials: SharedTokenLike | None

    async def send(self, address: Address, notification: Notification) -> SendResult:
        """Send once, within the provider's per-request timeout. Never raises for what the
        provider or the network did: that is a :class:`SendResult`."""
        ...

    async def aclose(self) -> None: ...


class SharedTokenLike(Protocol):
    """A provider token shared by all workers (``credentials.SharedToken``)."""

    key: str

    async def get(self) -> str: ...

    async def remint(self, rejected: str) -> str: ...

    async def disable(self, reason: str) -> None: ...


def collapse_key(nudge_id: str, limit: int = 64) -> str:
    """The nudge id as a collapse id (APNs allows 64 bytes); a longer id is hashed."""
    if len(nudge_id.encode()) <= limit:
        return nudge_id
    return "n-" + hashlib.sha256(nudge_id.encode()).hexdigest()[:40]


def retry_after_s(value: str | None, now: dt.datetime | None = None) -> float | None:
    """A Retry-After header's delay: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max((when - (now or dt.datetime.now(dt.UTC))).total_seconds(), 0.0)


@dataclass(frozen=True, slots=True)
class Shared:
    """What every provider is built with: the pool holding the shared provider tokens
    (decision 0006), the TLS trust for its endpoints, the per-request deadline, the clock."""

    pool: asyncpg.Pool[Any]
    verify: ssl.SSLContext | bool
    timeout_s: float
    clock: Callable[[], dt.datetime]


class Action(enum.Enum):
    DELIVERED = "delivered"
    DROP_TOKEN = "drop_token"  # noqa: S105 - an action's name, not a secret
    OTHER_ENVIRONMENT = "other_environment"  # APNs BadDeviceToken: try the other gateway once
    KEEP_TOKEN = "keep_token"  # noqa: S105 - a 410 older than the token's registration: stop, keep it
    RETRY = "retry"
    REMINT = "remint"
    CREDENTIALS = "credentials"  # alarm, stop the app
    WAIT_TOKEN_LIMIT = "wait_token_limit"  # noqa: S105
    BAD_MESSAGE = "bad_message"


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    min_delay_s: float = 0.0  # for RETRY: no sooner than this (Retry-After, quotas)


def retry_verdict(result: SendResult, floor: float = 0.0) -> Verdict:
    """Try again later, no sooner than the provider's Retry-After (or ``floor``)."""
    return Verdict(Action.RETRY, max(result.retry_after_s or 0.0, floor))

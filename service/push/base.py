"""What every push provider speaks: one notification to one device address, one result.

The providers (``apns.py``, ``fcm.py``, ``webpush.py``) only translate; what a result
*means* — deliver, retry, forget the token, stop the app — each provider's ``judge``
reads from its answers into one vocabulary (:class:`Action`), which ``delivery.py`` acts on
the same way for all of them.
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg

from schemas.auth import ProviderName
from service.infra.clock import WallClock
from service.store.push import Address

__all__ = [
    "NUDGE_CATEGORY",
    "Address",
    "Credentials",
    "Notification",
    "Provider",
    "ProviderName",
    "SendResult",
    "Shared",
    "collapse_key",
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
    credentials: Credentials | None

    async def send(self, address: Address, notification: Notification) -> SendResult:
        """Send once, within the provider's per-request timeout. Never raises for what the
        provider or the network did: that is a :class:`SendResult`."""
        ...

    async def aclose(self) -> None: ...


class Credentials(Protocol):
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


@dataclass(frozen=True, slots=True)
class Shared:
    """What every provider is built with: the pool holding the shared provider tokens
    (decision 0006), the TLS trust for its endpoints, the per-request deadline, the clock."""

    pool: asyncpg.Pool[Any]
    verify: ssl.SSLContext | bool
    timeout_s: float
    clock: WallClock

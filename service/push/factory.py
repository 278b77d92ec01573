"""Build the configured push providers from :class:`~service.config.PushSettings`.

Each provider module owns how it is built from its settings group (``build``); this only
prepares what they share (the TLS trust, the deadline, the clock, the pool that holds the
shared provider tokens) and asks each configured one.
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Callable
from typing import Any

import asyncpg

from service.config import Settings
from service.push import apns, fcm, webpush
from service.push.base import Provider, Shared

__all__ = ["build_providers"]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def build_providers(
    settings: Settings,
    pool: asyncpg.Pool[Any],
    clock: Callable[[], dt.datetime] = _utcnow,
) -> dict[str, Provider]:
    """Every provider whose settings are given, by name."""
    push = settings.push
    verify: ssl.SSLContext | bool = True
    if push.ca_file is not None:
        verify = ssl.create_default_context()
        verify.load_verify_locations(cafile=str(push.ca_file))
    shared = Shared(pool=pool, verify=verify, timeout_s=float(push.timeout_s), clock=clock)
    providers: dict[str, Provider] = {}
    if push.apns is not None:
        providers["apns"] = apns.build(push.apns, shared)
    if push.fcm is not None:
        providers["fcm"] = fcm.build(push.fcm, shared)
    if push.webpush is not None:
        providers["webpush"] = webpush.build(push.webpush, shared)
    return providers

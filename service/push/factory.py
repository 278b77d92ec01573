"""Build the configured push providers from :class:`~service.config.PushSettings`.

Each provider module owns how it is built from its settings group (``build``); this only
prepares what they share (the TLS trust, the deadline, the clock, the pool that holds the
shared provider tokens) and asks each configured one.
"""

from __future__ import annotations

import ssl
from typing import Any

import asyncpg

from service.config import Settings
from service.infra.clock import WallClock, utcnow
from service.push.base import Provider, Shared
from service.push.providers import PROVIDERS

__all__ = ["build_providers"]


def build_providers(
    settings: Settings,
    pool: asyncpg.Pool[Any],
    clock: WallClock = utcnow,
) -> dict[str, Provider]:
    """Every provider whose settings are given, by name."""
    push = settings.push
    verify: ssl.SSLContext | bool = True
    if push.ca_file is not None:
        verify = ssl.create_default_context()
        verify.load_verify_locations(cafile=str(push.ca_file))
    shared = Shared(pool=pool, verify=verify, timeout_s=float(push.timeout_s), clock=clock)
    configured = {name: getattr(push, name) for name in PROVIDERS}
    return {
        name: PROVIDERS[name].build(group, shared)
        for name, group in configured.items()
        if group is not None
    }

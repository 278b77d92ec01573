"""Build the configured providers from :class:`~service.config.Settings`."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx

from service.config import Settings
from service.push.apns import APNsProvider, apns_minter
from service.push.base import Provider
from service.push.credentials import SharedToken
from service.push.fcm import FCMProvider, fcm_minter
from service.push.webpush import WebPushProvider

__all__ = ["APNS_REUSE", "build_providers"]

#: Apple: refresh no more often than every 20 minutes, no less than every 60; reuse ~45.
APNS_REUSE = dt.timedelta(minutes=45)
APNS_MIN_INTERVAL = dt.timedelta(minutes=20)
#: Google's access tokens live an hour; take a new one 5 minutes before.
FCM_REUSE = dt.timedelta(minutes=55)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def build_providers(
    settings: Settings,
    pool: asyncpg.Pool[Any],
    clock: Callable[[], dt.datetime] = _utcnow,
) -> dict[str, Provider]:
    verify: ssl.SSLContext | bool = True
    if settings.push_ca_file is not None:
        verify = ssl.create_default_context()
        verify.load_verify_locations(cafile=str(settings.push_ca_file))
    timeout = float(settings.push_timeout_s)
    providers: dict[str, Provider] = {}
    if settings.apns_team_id and settings.apns_key_id and settings.apns_private_key:
        token = SharedToken(
            pool,
            f"apns:{settings.apns_team_id}:{settings.apns_key_id}",
            apns_minter(settings.apns_team_id, settings.apns_key_id, settings.apns_private_key),
            reuse_for=APNS_REUSE,
            min_interval=APNS_MIN_INTERVAL,
            clock=clock,
        )
        providers["apns"] = APNsProvider(
            credentials=token,
            topic=settings.apns_topic or "",
            production_url=settings.apns_url,
            sandbox_url=settings.apns_sandbox_url,
            timeout_s=timeout,
            verify=verify,
            clock=clock,
        )
    if settings.fcm_project_id and settings.fcm_client_email and settings.fcm_private_key:
        client = httpx.AsyncClient(
            base_url=settings.fcm_url, http2=True, verify=verify, timeout=timeout
        )
        token = SharedToken(
            pool,
            f"fcm:{settings.fcm_client_email}",
            fcm_minter(
                settings.fcm_client_email,
                settings.fcm_private_key,
                settings.fcm_token_url,
                client,
                timeout,
            ),
            reuse_for=FCM_REUSE,
            clock=clock,
        )
        providers["fcm"] = FCMProvider(
            credentials=token,
            project_id=settings.fcm_project_id,
            timeout_s=timeout,
            client=client,
        )
    if settings.vapid_private_key and settings.vapid_subject:
        providers["webpush"] = WebPushProvider(
            vapid_private_key_pem=settings.vapid_private_key,
            vapid_subject=settings.vapid_subject,
            timeout_s=timeout,
            verify=verify,
            clock=lambda: clock().timestamp(),
            allow_private_hosts=settings.webpush_allow_private_hosts,
        )
    return providers

"""Typed settings, read once from the environment.

Every setting is listed (with its default) in ``deploy/env.example``; nothing below the
edge reads ``os.environ`` — the app factory, the CLI and the worker receive a ``Settings``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Settings", "SettingsError"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A setting is present but cannot be understood."""


def _int(env: Mapping[str, str], name: str, default: int, *, low: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < low:
        raise SettingsError(f"{name} must be >= {low}, got {value}")
    return value


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated addresses or CIDR blocks, normalised (``10.0.0.0/8, ::1``)."""
    entries = [p.strip() for p in env.get(name, "").split(",") if p.strip()]
    try:
        return tuple(str(ipaddress.ip_network(p, strict=False)) for p in entries)
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}") from None


def _pem(env: Mapping[str, str], name: str) -> str | None:
    """A key given as PEM text (``\\n`` escapes allowed, as env files need) or as a path."""
    raw = env.get(name)
    if not raw:
        return None
    if "-----BEGIN" in raw:
        return raw.replace("\\n", "\n")
    try:
        return Path(raw).read_text()
    except OSError as exc:
        raise SettingsError(f"{name}: cannot read the key file {raw!r} ({exc.strerror})") from None


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything Kith can be configured with. Build it with :meth:`from_env`."""

    database_url: str | None = None
    redis_url: str | None = None
    environment: str = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    data_dir: Path = field(default_factory=lambda: PROJECT_ROOT / ".kith")
    jwt_private_key: str | None = None
    jwt_public_key: str | None = None
    access_token_ttl_s: int = 900
    refresh_token_ttl_s: int = 60 * 60 * 24 * 60
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    max_body_bytes: int = 4 * 1024 * 1024
    max_clock_skew_ms: int = 5 * 60 * 1000
    tombstone_horizon_days: int = 180
    conflict_retention_days: int = 30
    batch_retention_days: int = 30
    db_pool_min: int = 2
    db_pool_max: int = 10
    evaluate_debounce_s: int = 60
    sse_heartbeat_s: int = 15
    sweep_morning_hour: int = 7
    sweep_chunk: int = 250
    tls_cert: Path | None = None
    tls_key: Path | None = None
    log_level: str = "INFO"
    worker_concurrency: int = 64
    worker_lease_s: int = 60
    worker_kinds: tuple[str, ...] = ()  # empty: every kind of job
    push_timeout_s: int = 10
    push_ca_file: Path | None = None
    apns_team_id: str | None = None
    apns_key_id: str | None = None
    apns_private_key: str | None = None
    apns_topic: str | None = None
    apns_url: str = "https://api.push.apple.com"
    apns_sandbox_url: str = "https://api.sandbox.push.apple.com"
    fcm_project_id: str | None = None
    fcm_client_email: str | None = None
    fcm_private_key: str | None = None
    fcm_url: str = "https://fcm.googleapis.com"
    fcm_token_url: str = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
    vapid_private_key: str | None = None
    vapid_subject: str | None = None
    webpush_allow_private_hosts: bool = False
    ratelimit_window_s: int = 60
    ratelimit_login_per_ip: int = 10
    ratelimit_login_per_email: int = 10
    ratelimit_register_per_ip: int = 10
    ratelimit_refresh_per_ip: int = 60
    ratelimit_sync_per_user: int = 600
    trusted_proxies: tuple[str, ...] = ()
    metrics_token: str | None = None
    shutdown_grace_s: int = 25

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``env`` (default: the process environment)."""
        e = os.environ if env is None else env
        data_dir = Path(e.get("KITH_DATA_DIR") or PROJECT_ROOT / ".kith")
        environment = e.get("KITH_ENV", "development")
        if environment not in {"development", "test", "production"}:
            raise SettingsError(
                f"KITH_ENV must be development, test or production, got {environment!r}"
            )
        settings = cls(
            database_url=e.get("DATABASE_URL") or None,
            redis_url=e.get("REDIS_URL") or None,
            environment=environment,
            host=e.get("KITH_HOST", "127.0.0.1"),
            port=_int(e, "KITH_PORT", 8000, low=0),
            workers=_int(e, "KITH_WORKERS", 1, low=1),
            data_dir=data_dir,
            jwt_private_key=e.get("KITH_JWT_PRIVATE_KEY") or None,
            jwt_public_key=e.get("KITH_JWT_PUBLIC_KEY") or None,
            access_token_ttl_s=_int(e, "KITH_ACCESS_TOKEN_TTL_S", 900, low=30),
            refresh_token_ttl_s=_int(e, "KITH_REFRESH_TOKEN_TTL_S", 60 * 60 * 24 * 60, low=60),
            argon2_time_cost=_int(e, "KITH_ARGON2_TIME_COST", 3, low=1),
            argon2_memory_kib=_int(e, "KITH_ARGON2_MEMORY_KIB", 65536, low=8),
            max_body_bytes=_int(e, "KITH_MAX_BODY_BYTES", 4 * 1024 * 1024, low=1024),
            max_clock_skew_ms=_int(e, "KITH_MAX_CLOCK_SKEW_MS", 5 * 60 * 1000, low=0),
            tombstone_horizon_days=_int(e, "KITH_TOMBSTONE_HORIZON_DAYS", 180, low=1),
            conflict_retention_days=_int(e, "KITH_CONFLICT_RETENTION_DAYS", 30, low=1),
            batch_retention_days=_int(e, "KITH_BATCH_RETENTION_DAYS", 30, low=1),
            db_pool_min=_int(e, "KITH_DB_POOL_MIN", 2, low=1),
            db_pool_max=_int(e, "KITH_DB_POOL_MAX", 10, low=1),
            evaluate_debounce_s=_int(e, "KITH_EVALUATE_DEBOUNCE_S", 60, low=0),
            sse_heartbeat_s=_int(e, "KITH_SSE_HEARTBEAT_S", 15, low=1),
            sweep_morning_hour=_int(e, "KITH_SWEEP_MORNING_HOUR", 7, low=0),
            sweep_chunk=_int(e, "KITH_SWEEP_CHUNK", 250, low=1),
            tls_cert=Path(e["KITH_TLS_CERT"]) if e.get("KITH_TLS_CERT") else None,
            tls_key=Path(e["KITH_TLS_KEY"]) if e.get("KITH_TLS_KEY") else None,
            log_level=e.get("KITH_LOG_LEVEL", "INFO").upper(),
            worker_concurrency=_int(e, "KITH_WORKER_CONCURRENCY", 64, low=1),
            worker_lease_s=_int(e, "KITH_WORKER_LEASE_S", 60, low=3),
            worker_kinds=tuple(
                k.strip() for k in e.get("KITH_WORKER_KINDS", "").split(",") if k.strip()
            ),
            push_timeout_s=_int(e, "KITH_PUSH_TIMEOUT_S", 10, low=1),
            push_ca_file=Path(e["KITH_PUSH_CA_FILE"]) if e.get("KITH_PUSH_CA_FILE") else None,
            apns_team_id=e.get("KITH_APNS_TEAM_ID") or None,
            apns_key_id=e.get("KITH_APNS_KEY_ID") or None,
            apns_private_key=_pem(e, "KITH_APNS_PRIVATE_KEY"),
            apns_topic=e.get("KITH_APNS_TOPIC") or None,
            apns_url=e.get("KITH_APNS_URL") or "https://api.push.apple.com",
            apns_sandbox_url=e.get("KITH_APNS_SANDBOX_URL") or "https://api.sandbox.push.apple.com",
            fcm_project_id=e.get("KITH_FCM_PROJECT_ID") or None,
            fcm_client_email=e.get("KITH_FCM_CLIENT_EMAIL") or None,
            fcm_private_key=_pem(e, "KITH_FCM_PRIVATE_KEY"),
            fcm_url=e.get("KITH_FCM_URL") or "https://fcm.googleapis.com",
            fcm_token_url=e.get("KITH_FCM_TOKEN_URL") or "https://oauth2.googleapis.com/token",
            vapid_private_key=_pem(e, "KITH_VAPID_PRIVATE_KEY"),
            vapid_subject=e.get("KITH_VAPID_SUBJECT") or None,
            webpush_allow_private_hosts=e.get("KITH_WEBPUSH_ALLOW_PRIVATE_HOSTS", "").lower()
            in {"1", "true", "yes"},
            ratelimit_window_s=_int(e, "KITH_RATELIMIT_WINDOW_S", 60, low=1),
            ratelimit_login_per_ip=_int(e, "KITH_RATELIMIT_LOGIN_PER_IP", 10),
            ratelimit_login_per_email=_int(e, "KITH_RATELIMIT_LOGIN_PER_EMAIL", 10),
            ratelimit_register_per_ip=_int(e, "KITH_RATELIMIT_REGISTER_PER_IP", 10),
            ratelimit_refresh_per_ip=_int(e, "KITH_RATELIMIT_REFRESH_PER_IP", 60),
            ratelimit_sync_per_user=_int(e, "KITH_RATELIMIT_SYNC_PER_USER", 600),
            trusted_proxies=_networks(e, "KITH_TRUSTED_PROXIES"),
            metrics_token=e.get("KITH_METRICS_TOKEN") or None,
            shutdown_grace_s=_int(e, "KITH_SHUTDOWN_GRACE_S", 25, low=1),
        )
        if settings.is_production and not (settings.jwt_private_key and settings.jwt_public_key):
            raise SettingsError(
                "KITH_JWT_PRIVATE_KEY and KITH_JWT_PUBLIC_KEY are required when KITH_ENV=production"
            )
        apns = (
            settings.apns_team_id,
            settings.apns_key_id,
            settings.apns_private_key,
            settings.apns_topic,
        )
        if any(apns) and not all(apns):
            raise SettingsError(
                "APNs needs KITH_APNS_TEAM_ID, KITH_APNS_KEY_ID, KITH_APNS_PRIVATE_KEY and "
                "KITH_APNS_TOPIC together"
            )
        fcm = (settings.fcm_project_id, settings.fcm_client_email, settings.fcm_private_key)
        if any(fcm) and not all(fcm):
            raise SettingsError(
                "FCM needs KITH_FCM_PROJECT_ID, KITH_FCM_CLIENT_EMAIL and KITH_FCM_PRIVATE_KEY "
                "together"
            )
        if bool(settings.vapid_private_key) != bool(settings.vapid_subject):
            raise SettingsError("Web Push needs KITH_VAPID_PRIVATE_KEY and KITH_VAPID_SUBJECT")
        if (settings.tls_cert is None) != (settings.tls_key is None):
            raise SettingsError("KITH_TLS_CERT and KITH_TLS_KEY must be set together")
        return settings

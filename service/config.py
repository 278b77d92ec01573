"""Typed settings, read once from the environment, grouped by concern.

Every setting is listed (with its default) in ``deploy/env.example``; nothing below the
edge reads ``os.environ`` — the app factory, the CLI and the worker receive a ``Settings``,
and each part takes only its group (``settings.tokens``, ``settings.push.apns``, ...).
Each group is a small frozen object whose defaults are written once, on its fields:
:meth:`Settings.from_env` falls back to them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ApnsSettings",
    "DatabaseSettings",
    "FcmSettings",
    "PushSettings",
    "RateLimitSettings",
    "ServerSettings",
    "Settings",
    "SettingsError",
    "SyncSettings",
    "TokenSettings",
    "WebPushSettings",
    "WorkerSettings",
]

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
class DatabaseSettings:
    """PostgreSQL (``DATABASE_URL``; none: ``kith dev`` starts the embedded server)."""

    url: str | None = None
    pool_min: int = 2
    pool_max: int = 10


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The API processes: where they listen, TLS, request limits, shutdown, streams."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_body_bytes: int = 4 * 1024 * 1024
    shutdown_grace_s: int = 25
    sse_heartbeat_s: int = 15
    trusted_proxies: tuple[str, ...] = ()
    metrics_token: str | None = None


@dataclass(frozen=True, slots=True)
class TokenSettings:
    """Access and refresh tokens, and password hashing."""

    jwt_private_key: str | None = None
    jwt_public_key: str | None = None
    access_ttl_s: int = 900
    refresh_ttl_s: int = 60 * 60 * 24 * 60
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536


@dataclass(frozen=True, slots=True)
class SyncSettings:
    """The sync protocol's clock defence and how long history is kept."""

    max_clock_skew_ms: int = 5 * 60 * 1000
    tombstone_horizon_days: int = 180
    conflict_retention_days: int = 30
    batch_retention_days: int = 30


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """Requests per ``window_s`` (counted in Redis, shared by every process)."""

    window_s: int = 60
    login_per_ip: int = 10
    login_per_email: int = 10
    register_per_ip: int = 10
    refresh_per_ip: int = 60
    sync_per_user: int = 600


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """The background worker and the rules' schedule."""

    concurrency: int = 64
    lease_s: int = 60
    kinds: tuple[str, ...] = ()  # empty: every kind of job
    evaluate_debounce_s: int = 60
    sweep_morning_hour: int = 7
    sweep_chunk: int = 250


@dataclass(frozen=True, slots=True)
class ApnsSettings:
    """Apple Push Notification service: a token-based (.p8) key."""

    team_id: str
    key_id: str
    private_key: str
    topic: str
    url: str = "https://api.push.apple.com"
    sandbox_url: str = "https://api.sandbox.push.apple.com"


@dataclass(frozen=True, slots=True)
class FcmSettings:
    """Firebase Cloud Messaging HTTP v1: a service account."""

    project_id: str
    client_email: str
    private_key: str
    url: str = "https://fcm.googleapis.com"
    token_url: str = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL


@dataclass(frozen=True, slots=True)
class WebPushSettings:
    """Web Push with a VAPID key."""

    vapid_private_key: str
    vapid_subject: str
    allow_private_hosts: bool = False


@dataclass(frozen=True, slots=True)
class PushSettings:
    """Push delivery: each provider is configured (all of its settings) or absent."""

    timeout_s: int = 10
    ca_file: Path | None = None
    apns: ApnsSettings | None = None
    fcm: FcmSettings | None = None
    webpush: WebPushSettings | None = None


def _default(group: type[Any], name: str) -> Any:
    """A field's default, as written on its group (so no default is written twice)."""
    return group.__dataclass_fields__[name].default


def _provider(
    read: Callable[[str], str | None], group: type[Any], names: dict[str, str], needs: str
) -> Any:
    """One provider's group: every required setting present, or none of them."""
    values = {f: read(n) for f, n in names.items()}
    required = [f for f in names if _default(group, f) is MISSING]
    given = [f for f in required if values[f]]
    if not given:
        return None
    if len(given) < len(required):
        raise SettingsError(needs)
    return group(**{f: v for f, v in values.items() if v is not None})


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything Kith can be configured with. Build it with :meth:`from_env`."""

    environment: str = "development"
    data_dir: Path = field(default_factory=lambda: PROJECT_ROOT / ".kith")
    log_level: str = "INFO"
    redis_url: str | None = None
    database: DatabaseSettings = DatabaseSettings()
    server: ServerSettings = ServerSettings()
    tokens: TokenSettings = TokenSettings()
    sync: SyncSettings = SyncSettings()
    ratelimit: RateLimitSettings = RateLimitSettings()
    worker: WorkerSettings = WorkerSettings()
    push: PushSettings = PushSettings()

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    def using(self, *, database_url: str | None = None, redis_url: str | None = None) -> Settings:
        """These settings with other servers (e.g. the embedded ones ``kith dev`` started)."""
        return dataclasses.replace(
            self,
            database=dataclasses.replace(self.database, url=database_url or self.database.url),
            redis_url=redis_url or self.redis_url,
        )

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
        d, sv, tk, sy = DatabaseSettings, ServerSettings, TokenSettings, SyncSettings
        rl, wk = RateLimitSettings, WorkerSettings
        server = ServerSettings(
            host=e.get("KITH_HOST", _default(sv, "host")),
            port=_int(e, "KITH_PORT", _default(sv, "port"), low=0),
            workers=_int(e, "KITH_WORKERS", _default(sv, "workers"), low=1),
            tls_cert=Path(e["KITH_TLS_CERT"]) if e.get("KITH_TLS_CERT") else None,
            tls_key=Path(e["KITH_TLS_KEY"]) if e.get("KITH_TLS_KEY") else None,
            max_body_bytes=_int(e, "KITH_MAX_BODY_BYTES", _default(sv, "max_body_bytes"), low=1024),
            shutdown_grace_s=_int(
                e, "KITH_SHUTDOWN_GRACE_S", _default(sv, "shutdown_grace_s"), low=1
            ),
            sse_heartbeat_s=_int(e, "KITH_SSE_HEARTBEAT_S", _default(sv, "sse_heartbeat_s"), low=1),
            trusted_proxies=_networks(e, "KITH_TRUSTED_PROXIES"),
            metrics_token=e.get("KITH_METRICS_TOKEN") or None,
        )
        settings = cls(
            environment=environment,
            data_dir=data_dir,
            log_level=e.get("KITH_LOG_LEVEL", _default(cls, "log_level")).upper(),
            redis_url=e.get("REDIS_URL") or None,
            database=DatabaseSettings(
                url=e.get("DATABASE_URL") or None,
                pool_min=_int(e, "KITH_DB_POOL_MIN", _default(d, "pool_min"), low=1),
                pool_max=_int(e, "KITH_DB_POOL_MAX", _default(d, "pool_max"), low=1),
            ),
            server=server,
            tokens=TokenSettings(
                jwt_private_key=e.get("KITH_JWT_PRIVATE_KEY") or None,
                jwt_public_key=e.get("KITH_JWT_PUBLIC_KEY") or None,
                access_ttl_s=_int(
                    e, "KITH_ACCESS_TOKEN_TTL_S", _default(tk, "access_ttl_s"), low=30
                ),
                refresh_ttl_s=_int(
                    e, "KITH_REFRESH_TOKEN_TTL_S", _default(tk, "refresh_ttl_s"), low=60
                ),
                argon2_time_cost=_int(
                    e, "KITH_ARGON2_TIME_COST", _default(tk, "argon2_time_cost"), low=1
                ),
                argon2_memory_kib=_int(
                    e, "KITH_ARGON2_MEMORY_KIB", _default(tk, "argon2_memory_kib"), low=8
                ),
            ),
            sync=SyncSettings(
                max_clock_skew_ms=_int(
                    e, "KITH_MAX_CLOCK_SKEW_MS", _default(sy, "max_clock_skew_ms"), low=0
                ),
                tombstone_horizon_days=_int(
                    e, "KITH_TOMBSTONE_HORIZON_DAYS", _default(sy, "tombstone_horizon_days"), low=1
                ),
                conflict_retention_days=_int(
                    e,
                    "KITH_CONFLICT_RETENTION_DAYS",
                    _default(sy, "conflict_retention_days"),
                    low=1,
                ),
                batch_retention_days=_int(
                    e, "KITH_BATCH_RETENTION_DAYS", _default(sy, "batch_retention_days"), low=1
                ),
            ),
            ratelimit=RateLimitSettings(
                window_s=_int(e, "KITH_RATELIMIT_WINDOW_S", _default(rl, "window_s"), low=1),
                login_per_ip=_int(e, "KITH_RATELIMIT_LOGIN_PER_IP", _default(rl, "login_per_ip")),
                login_per_email=_int(
                    e, "KITH_RATELIMIT_LOGIN_PER_EMAIL", _default(rl, "login_per_email")
                ),
                register_per_ip=_int(
                    e, "KITH_RATELIMIT_REGISTER_PER_IP", _default(rl, "register_per_ip")
                ),
                refresh_per_ip=_int(
                    e, "KITH_RATELIMIT_REFRESH_PER_IP", _default(rl, "refresh_per_ip")
                ),
                sync_per_user=_int(
                    e, "KITH_RATELIMIT_SYNC_PER_USER", _default(rl, "sync_per_user")
                ),
            ),
            worker=WorkerSettings(
                concurrency=_int(e, "KITH_WORKER_CONCURRENCY", _default(wk, "concurrency"), low=1),
                lease_s=_int(e, "KITH_WORKER_LEASE_S", _default(wk, "lease_s"), low=3),
                kinds=tuple(
                    k.strip() for k in e.get("KITH_WORKER_KINDS", "").split(",") if k.strip()
                ),
                evaluate_debounce_s=_int(
                    e, "KITH_EVALUATE_DEBOUNCE_S", _default(wk, "evaluate_debounce_s"), low=0
                ),
                sweep_morning_hour=_int(
                    e, "KITH_SWEEP_MORNING_HOUR", _default(wk, "sweep_morning_hour"), low=0
                ),
                sweep_chunk=_int(e, "KITH_SWEEP_CHUNK", _default(wk, "sweep_chunk"), low=1),
            ),
            push=_push(e),
        )
        tokens = settings.tokens
        if settings.is_production and not (tokens.jwt_private_key and tokens.jwt_public_key):
            raise SettingsError(
                "KITH_JWT_PRIVATE_KEY and KITH_JWT_PUBLIC_KEY are required when KITH_ENV=production"
            )
        if (server.tls_cert is None) != (server.tls_key is None):
            raise SettingsError("KITH_TLS_CERT and KITH_TLS_KEY must be set together")
        return settings


def _push(e: Mapping[str, str]) -> PushSettings:
    """The push group. A provider's keys are PEM text or a path (read here, once)."""
    pems = ("KITH_APNS_PRIVATE_KEY", "KITH_FCM_PRIVATE_KEY", "KITH_VAPID_PRIVATE_KEY")
    keys = {name: _pem(e, name) for name in pems}

    def read(name: str) -> str | None:
        return keys[name] if name in keys else (e.get(name) or None)

    apns = _provider(
        read,
        ApnsSettings,
        {
            "team_id": "KITH_APNS_TEAM_ID",
            "key_id": "KITH_APNS_KEY_ID",
            "private_key": "KITH_APNS_PRIVATE_KEY",
            "topic": "KITH_APNS_TOPIC",
            "url": "KITH_APNS_URL",
            "sandbox_url": "KITH_APNS_SANDBOX_URL",
        },
        "APNs needs KITH_APNS_TEAM_ID, KITH_APNS_KEY_ID, KITH_APNS_PRIVATE_KEY and "
        "KITH_APNS_TOPIC together",
    )
    fcm = _provider(
        read,
        FcmSettings,
        {
            "project_id": "KITH_FCM_PROJECT_ID",
            "client_email": "KITH_FCM_CLIENT_EMAIL",
            "private_key": "KITH_FCM_PRIVATE_KEY",
            "url": "KITH_FCM_URL",
            "token_url": "KITH_FCM_TOKEN_URL",
        },
        "FCM needs KITH_FCM_PROJECT_ID, KITH_FCM_CLIENT_EMAIL and KITH_FCM_PRIVATE_KEY together",
    )
    allow_private = (read("KITH_WEBPUSH_ALLOW_PRIVATE_HOSTS") or "").lower() in {"1", "true", "yes"}
    webpush = _provider(
        read,
        WebPushSettings,
        {"vapid_private_key": "KITH_VAPID_PRIVATE_KEY", "vapid_subject": "KITH_VAPID_SUBJECT"},
        "Web Push needs KITH_VAPID_PRIVATE_KEY and KITH_VAPID_SUBJECT",
    )
    if webpush is not None and allow_private:
        webpush = WebPushSettings(webpush.vapid_private_key, webpush.vapid_subject, True)
    return PushSettings(
        timeout_s=_int(e, "KITH_PUSH_TIMEOUT_S", _default(PushSettings, "timeout_s"), low=1),
        ca_file=Path(e["KITH_PUSH_CA_FILE"]) if e.get("KITH_PUSH_CA_FILE") else None,
        apns=apns,
        fcm=fcm,
        webpush=webpush,
    )

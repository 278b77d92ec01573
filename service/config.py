"""Typed settings, read once from the environment.

Every setting is listed (with its default) in ``deploy/env.example``; nothing below the
edge reads ``os.environ`` — the app factory, the CLI and the worker receive a ``Settings``.
"""

from __future__ import annotations

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
    sweep_morning_hour: int = 7
    sweep_chunk: int = 250
    tls_cert: Path | None = None
    tls_key: Path | None = None
    log_level: str = "INFO"

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
            sweep_morning_hour=_int(e, "KITH_SWEEP_MORNING_HOUR", 7, low=0),
            sweep_chunk=_int(e, "KITH_SWEEP_CHUNK", 250, low=1),
            tls_cert=Path(e["KITH_TLS_CERT"]) if e.get("KITH_TLS_CERT") else None,
            tls_key=Path(e["KITH_TLS_KEY"]) if e.get("KITH_TLS_KEY") else None,
            log_level=e.get("KITH_LOG_LEVEL", "INFO").upper(),
        )
        if settings.is_production and not (settings.jwt_private_key and settings.jwt_public_key):
            raise SettingsError(
                "KITH_JWT_PRIVATE_KEY and KITH_JWT_PUBLIC_KEY are required when KITH_ENV=production"
            )
        if (settings.tls_cert is None) != (settings.tls_key is None):
            raise SettingsError("KITH_TLS_CERT and KITH_TLS_KEY must be set together")
        return settings

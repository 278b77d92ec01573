"""Typed settings, read once from the environment, grouped by concern.

Every setting is listed (with its default) in ``deploy/env.example``; nothing below the
edge reads ``os.environ`` — the app factory, the CLI and the worker receive a ``Settings``,
and each part takes only its group (``settings.tokens``, ``settings.push.apns``, ...).

Each group is a small frozen object. A field is declared once, with :func:`setting`: its
variable's name, its default and how its text is read; :func:`read` builds a group from the
environment by those declarations, so no name or default is written twice.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar, cast

__all__ = [
    "AccountSettings",
    "ApnsSettings",
    "AppleSignInSettings",
    "CareSettings",
    "DatabaseSettings",
    "EncryptionSettings",
    "FcmSettings",
    "GoogleSignInSettings",
    "MailSettings",
    "MasterKey",
    "PushSettings",
    "RateLimitSettings",
    "ServerSettings",
    "Settings",
    "SettingsError",
    "SignInSettings",
    "SyncSettings",
    "TokenSettings",
    "WebPushSettings",
    "WorkerSettings",
    "read",
    "setting",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
G = TypeVar("G")
#: How one variable's text becomes a value: ``parse(env, name, default)``.
Parse = Callable[[Mapping[str, str], str, Any], Any]


class SettingsError(ValueError):
    """A setting is present but cannot be understood."""


# -- how a variable's text is read --------------------------------------------------------


def _text(env: Mapping[str, str], name: str, default: Any) -> Any:
    return env.get(name) or default


def _upper(env: Mapping[str, str], name: str, default: Any) -> Any:
    return str(env.get(name) or default).upper()


def _path(env: Mapping[str, str], name: str, default: Any) -> Any:
    raw = env.get(name)
    return Path(raw) if raw else default


def _flag(env: Mapping[str, str], name: str, default: Any) -> Any:
    raw = env.get(name)
    return raw.lower() in {"1", "true", "yes"} if raw else default


def _names(env: Mapping[str, str], name: str, default: Any) -> Any:
    """Comma-separated names (``push_send, care_push``)."""
    return tuple(k.strip() for k in (env.get(name) or "").split(",") if k.strip()) or default


def _integer(low: int = 0) -> Parse:
    def parse(env: Mapping[str, str], name: str, default: Any) -> Any:
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

    return parse


def _networks(env: Mapping[str, str], name: str, default: Any) -> Any:
    """Comma-separated addresses or CIDR blocks, normalised (``10.0.0.0/8, ::1``)."""
    entries = [p.strip() for p in (env.get(name) or "").split(",") if p.strip()]
    try:
        return tuple(str(ipaddress.ip_network(p, strict=False)) for p in entries) or default
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}") from None


def _pem(env: Mapping[str, str], name: str, default: Any) -> Any:
    """A key given as PEM text (``\\n`` escapes allowed, as env files need) or as a path."""
    raw = env.get(name)
    if not raw:
        return default
    if "-----BEGIN" in raw:
        return raw.replace("\\n", "\n")
    try:
        return Path(raw).read_text()
    except OSError as exc:
        raise SettingsError(f"{name}: cannot read the key file {raw!r} ({exc.strerror})") from None


#: A master key's length in bytes (AES-256).
KEY_BYTES = 32
_KID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True, slots=True)
class MasterKey:
    """One master key as configured: its id and its 32 bytes (never shown in a ``repr``,
    so settings can be logged)."""

    kid: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not _KID.match(self.kid):
            raise SettingsError(f"a master key's id must match {_KID.pattern}, got {self.kid!r}")
        if len(self.key) != KEY_BYTES:
            raise SettingsError(f"master key {self.kid!r} must be {KEY_BYTES} bytes")


def _master_keys(env: Mapping[str, str], name: str, default: Any) -> Any:
    """Comma-separated ``kid:base64-of-32-bytes`` master keys, the current one first."""
    keys = []
    for entry in (p.strip() for p in (env.get(name) or "").split(",")):
        if not entry:
            continue
        kid, sep, encoded = entry.partition(":")
        try:
            key = base64.b64decode(encoded, validate=True) if sep else b""
        except (binascii.Error, ValueError):
            raise SettingsError(f"{name}: the key of {kid!r} is not base64") from None
        if not sep:
            raise SettingsError(f"{name}: each entry is kid:base64-key")
        keys.append(MasterKey(kid.strip(), key))
    if len({k.kid for k in keys}) != len(keys):
        raise SettingsError(f"{name}: master key ids must be distinct")
    return tuple(keys) or default


def setting(env: str, default: Any = MISSING, parse: Parse = _text) -> Any:
    """A field read from the variable ``env`` (no default: the group's required setting)."""
    return field(default=default, metadata={"env": env, "parse": parse})


def _values(group: type[Any], env: Mapping[str, str]) -> dict[str, Any]:
    out = {}
    for f in fields(group):
        if "env" not in f.metadata:
            continue  # a nested group, filled by the caller
        default = None if f.default is MISSING else f.default
        out[f.name] = f.metadata["parse"](env, f.metadata["env"], default)
    return out


def read(group: type[G], env: Mapping[str, str]) -> G:
    """The group from ``env``: each field from its variable, or its default."""
    return group(**_values(group, env))


def _read_optional(group: type[G], env: Mapping[str, str], needs: str) -> G | None:
    """A group that is all there or not at all (a push provider): None when none of its
    required settings is given; an error when some are and others are not."""
    values = _values(group, env)
    required = [f.name for f in fields(cast(Any, group)) if f.default is MISSING]
    given = [name for name in required if values[name]]
    if not given:
        return None
    if len(given) < len(required):
        raise SettingsError(needs)
    return group(**values)


# -- the groups ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """PostgreSQL (no URL: ``kith dev`` starts the embedded server)."""

    url: str | None = setting("DATABASE_URL", None)
    pool_min: int = setting("KITH_DB_POOL_MIN", 2, _integer(1))
    pool_max: int = setting("KITH_DB_POOL_MAX", 10, _integer(1))


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The API processes: where they listen, TLS, request limits, shutdown, streams."""

    host: str = setting("KITH_HOST", "127.0.0.1")
    port: int = setting("KITH_PORT", 8000, _integer(0))
    workers: int = setting("KITH_WORKERS", 1, _integer(1))
    tls_cert: Path | None = setting("KITH_TLS_CERT", None, _path)
    tls_key: Path | None = setting("KITH_TLS_KEY", None, _path)
    max_body_bytes: int = setting("KITH_MAX_BODY_BYTES", 4 * 1024 * 1024, _integer(1024))
    shutdown_grace_s: int = setting("KITH_SHUTDOWN_GRACE_S", 25, _integer(1))
    sse_heartbeat_s: int = setting("KITH_SSE_HEARTBEAT_S", 15, _integer(1))
    trusted_proxies: tuple[str, ...] = setting("KITH_TRUSTED_PROXIES", (), _networks)
    metrics_token: str | None = setting("KITH_METRICS_TOKEN", None)


@dataclass(frozen=True, slots=True)
class AccountSettings:
    """Registration and consent."""

    #: The version of the privacy terms a person must have accepted (with their consent to
    #: process wellbeing data) to sync; unset: consent is recorded when given, not required.
    terms_version: str | None = setting("KITH_TERMS_VERSION", None)


@dataclass(frozen=True, slots=True)
class MailSettings:
    """Outgoing email (one-time codes): an SMTP server. No host: no mail is sent."""

    smtp_host: str | None = setting("KITH_SMTP_HOST", None)
    smtp_port: int = setting("KITH_SMTP_PORT", 587, _integer(1))
    #: ``starttls`` (upgrade on 587), ``tls`` (implicit TLS, 465) or ``none`` (tests only).
    smtp_tls: str = setting("KITH_SMTP_TLS", "starttls")
    smtp_username: str | None = setting("KITH_SMTP_USERNAME", None)
    smtp_password: str | None = setting("KITH_SMTP_PASSWORD", None)
    smtp_ca_file: Path | None = setting("KITH_SMTP_CA_FILE", None, _path)
    smtp_timeout_s: int = setting("KITH_SMTP_TIMEOUT_S", 10, _integer(1))
    sender: str = setting("KITH_MAIL_FROM", "Kith <no-reply@localhost>")


@dataclass(frozen=True, slots=True)
class TokenSettings:
    """Access and refresh tokens, and password hashing."""

    jwt_private_key: str | None = setting("KITH_JWT_PRIVATE_KEY", None)
    jwt_public_key: str | None = setting("KITH_JWT_PUBLIC_KEY", None)
    access_ttl_s: int = setting("KITH_ACCESS_TOKEN_TTL_S", 900, _integer(30))
    refresh_ttl_s: int = setting("KITH_REFRESH_TOKEN_TTL_S", 60 * 60 * 24 * 60, _integer(60))
    argon2_time_cost: int = setting("KITH_ARGON2_TIME_COST", 3, _integer(1))
    argon2_memory_kib: int = setting("KITH_ARGON2_MEMORY_KIB", 65536, _integer(8))


@dataclass(frozen=True, slots=True)
class EncryptionSettings:
    """Private text (notes, reflections) encrypted at rest under a data key per person,
    wrapped by a master key (decision 0021). No master keys outside production: a
    development key is made once under ``KITH_DATA_DIR/keys``."""

    #: ``kid:base64key,...``: the first wraps new data keys, every one unwraps (a rotation
    #: adds a new key first, runs ``kith rotate-keys``, then drops the old one).
    master_keys: tuple[MasterKey, ...] = setting("KITH_MASTER_KEYS", (), _master_keys)
    #: Unwrapped data keys each process keeps, and for how long (a pull unwraps once).
    key_cache_size: int = setting("KITH_KEY_CACHE_SIZE", 10_000, _integer(1))
    key_cache_ttl_s: int = setting("KITH_KEY_CACHE_TTL_S", 300, _integer(1))


@dataclass(frozen=True, slots=True)
class SyncSettings:
    """The sync protocol's clock defence and how long history is kept."""

    max_clock_skew_ms: int = setting("KITH_MAX_CLOCK_SKEW_MS", 5 * 60 * 1000, _integer(0))
    tombstone_horizon_days: int = setting("KITH_TOMBSTONE_HORIZON_DAYS", 180, _integer(1))
    conflict_retention_days: int = setting("KITH_CONFLICT_RETENTION_DAYS", 30, _integer(1))
    batch_retention_days: int = setting("KITH_BATCH_RETENTION_DAYS", 30, _integer(1))


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """Requests per ``window_s`` (counted in Redis, shared by every process)."""

    window_s: int = setting("KITH_RATELIMIT_WINDOW_S", 60, _integer(1))
    login_per_ip: int = setting("KITH_RATELIMIT_LOGIN_PER_IP", 10, _integer())
    login_per_email: int = setting("KITH_RATELIMIT_LOGIN_PER_EMAIL", 10, _integer())
    register_per_ip: int = setting("KITH_RATELIMIT_REGISTER_PER_IP", 10, _integer())
    refresh_per_ip: int = setting("KITH_RATELIMIT_REFRESH_PER_IP", 60, _integer())
    sync_per_user: int = setting("KITH_RATELIMIT_SYNC_PER_USER", 600, _integer())


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """The background worker and the rules' schedule."""

    concurrency: int = setting("KITH_WORKER_CONCURRENCY", 64, _integer(1))
    lease_s: int = setting("KITH_WORKER_LEASE_S", 60, _integer(3))
    kinds: tuple[str, ...] = setting("KITH_WORKER_KINDS", (), _names)  # empty: every kind
    evaluate_debounce_s: int = setting("KITH_EVALUATE_DEBOUNCE_S", 60, _integer(0))
    sweep_morning_hour: int = setting("KITH_SWEEP_MORNING_HOUR", 7, _integer(0))
    sweep_chunk: int = setting("KITH_SWEEP_CHUNK", 250, _integer(1))


@dataclass(frozen=True, slots=True)
class CareSettings:
    """The ladder an unanswered "need help" climbs, in seconds after it was raised
    (decision 0018): pushed again, then every caregiver told nobody has answered, then
    marked "no response" for the person and in ``kith report``."""

    help_repeat_after_s: int = setting("KITH_HELP_REPEAT_AFTER_S", 300, _integer(1))
    help_everyone_after_s: int = setting("KITH_HELP_EVERYONE_AFTER_S", 600, _integer(1))
    help_no_response_after_s: int = setting("KITH_HELP_NO_RESPONSE_AFTER_S", 1200, _integer(1))

    def __post_init__(self) -> None:
        if not (
            self.help_repeat_after_s < self.help_everyone_after_s < self.help_no_response_after_s
        ):
            raise SettingsError(
                "KITH_HELP_REPEAT_AFTER_S < KITH_HELP_EVERYONE_AFTER_S < "
                "KITH_HELP_NO_RESPONSE_AFTER_S: the ladder's rungs climb in that order"
            )


@dataclass(frozen=True, slots=True)
class AppleSignInSettings:
    """Sign in with Apple: the audiences Kith accepts (the app's bundle ids and Services
    ids; none: Apple sign-in is off), Apple's issuer and the URL of its public keys."""

    client_ids: tuple[str, ...] = setting("KITH_SIGNIN_APPLE_CLIENT_IDS", (), _names)
    issuer: str = setting("KITH_SIGNIN_APPLE_ISSUER", "https://appleid.apple.com")
    jwks_url: str = setting("KITH_SIGNIN_APPLE_JWKS_URL", "https://appleid.apple.com/auth/keys")


@dataclass(frozen=True, slots=True)
class GoogleSignInSettings:
    """Sign in with Google: the OAuth client ids Kith accepts as the token's audience
    (none: Google sign-in is off), Google's two spellings of its issuer, its keys' URL."""

    client_ids: tuple[str, ...] = setting("KITH_SIGNIN_GOOGLE_CLIENT_IDS", (), _names)
    issuers: tuple[str, ...] = setting(
        "KITH_SIGNIN_GOOGLE_ISSUERS", ("accounts.google.com", "https://accounts.google.com"), _names
    )
    jwks_url: str = setting(
        "KITH_SIGNIN_GOOGLE_JWKS_URL", "https://www.googleapis.com/oauth2/v3/certs"
    )


@dataclass(frozen=True, slots=True)
class SignInSettings:
    """Signing in with a provider's ID token (decision 0020): how its keys are fetched and
    cached, the clock leeway, and one group per provider."""

    leeway_s: int = setting("KITH_SIGNIN_LEEWAY_S", 60, _integer(0))
    #: How long a fetched key set is used before it is fetched again.
    keys_cache_s: int = setting("KITH_SIGNIN_KEYS_CACHE_S", 3600, _integer(1))
    #: A token naming a key Kith has not seen refetches the keys, at most this often.
    keys_cooldown_s: int = setting("KITH_SIGNIN_KEYS_COOLDOWN_S", 30, _integer(0))
    keys_timeout_s: int = setting("KITH_SIGNIN_KEYS_TIMEOUT_S", 5, _integer(1))
    apple: AppleSignInSettings = AppleSignInSettings()
    google: GoogleSignInSettings = GoogleSignInSettings()


@dataclass(frozen=True, slots=True)
class ApnsSettings:
    """Apple Push Notification service: a token-based (.p8) key."""

    team_id: str = setting("KITH_APNS_TEAM_ID")
    key_id: str = setting("KITH_APNS_KEY_ID")
    private_key: str = setting("KITH_APNS_PRIVATE_KEY", parse=_pem)
    topic: str = setting("KITH_APNS_TOPIC")
    url: str = setting("KITH_APNS_URL", "https://api.push.apple.com")
    sandbox_url: str = setting("KITH_APNS_SANDBOX_URL", "https://api.sandbox.push.apple.com")


@dataclass(frozen=True, slots=True)
class FcmSettings:
    """Firebase Cloud Messaging HTTP v1: a service account."""

    project_id: str = setting("KITH_FCM_PROJECT_ID")
    client_email: str = setting("KITH_FCM_CLIENT_EMAIL")
    private_key: str = setting("KITH_FCM_PRIVATE_KEY", parse=_pem)
    url: str = setting("KITH_FCM_URL", "https://fcm.googleapis.com")
    token_url: str = setting("KITH_FCM_TOKEN_URL", "https://oauth2.googleapis.com/token")


@dataclass(frozen=True, slots=True)
class WebPushSettings:
    """Web Push with a VAPID key."""

    vapid_private_key: str = setting("KITH_VAPID_PRIVATE_KEY", parse=_pem)
    vapid_subject: str = setting("KITH_VAPID_SUBJECT")
    allow_private_hosts: bool = setting("KITH_WEBPUSH_ALLOW_PRIVATE_HOSTS", False, _flag)


@dataclass(frozen=True, slots=True)
class PushSettings:
    """Push delivery: each provider (named as in ``service/push/providers.py``) is
    configured with all of its required settings, or absent."""

    timeout_s: int = setting("KITH_PUSH_TIMEOUT_S", 10, _integer(1))
    ca_file: Path | None = setting("KITH_PUSH_CA_FILE", None, _path)
    apns: ApnsSettings | None = None
    fcm: FcmSettings | None = None
    webpush: WebPushSettings | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything Kith can be configured with. Build it with :meth:`from_env`."""

    environment: str = "development"
    data_dir: Path = PROJECT_ROOT / ".kith"
    log_level: str = "INFO"
    redis_url: str | None = None
    database: DatabaseSettings = DatabaseSettings()
    server: ServerSettings = ServerSettings()
    tokens: TokenSettings = TokenSettings()
    accounts: AccountSettings = AccountSettings()
    signin: SignInSettings = SignInSettings()
    mail: MailSettings = MailSettings()
    sync: SyncSettings = SyncSettings()
    encryption: EncryptionSettings = EncryptionSettings()
    ratelimit: RateLimitSettings = RateLimitSettings()
    worker: WorkerSettings = WorkerSettings()
    push: PushSettings = PushSettings()
    care: CareSettings = CareSettings()

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
        environment = e.get("KITH_ENV", "development")
        if environment not in {"development", "test", "production"}:
            raise SettingsError(
                f"KITH_ENV must be development, test or production, got {environment!r}"
            )
        push = dataclasses.replace(
            read(PushSettings, e),
            apns=_read_optional(
                ApnsSettings,
                e,
                "APNs needs KITH_APNS_TEAM_ID, KITH_APNS_KEY_ID, KITH_APNS_PRIVATE_KEY and "
                "KITH_APNS_TOPIC together",
            ),
            fcm=_read_optional(
                FcmSettings,
                e,
                "FCM needs KITH_FCM_PROJECT_ID, KITH_FCM_CLIENT_EMAIL and KITH_FCM_PRIVATE_KEY "
                "together",
            ),
            webpush=_read_optional(
                WebPushSettings, e, "Web Push needs KITH_VAPID_PRIVATE_KEY and KITH_VAPID_SUBJECT"
            ),
        )
        settings = cls(
            environment=environment,
            data_dir=_path(e, "KITH_DATA_DIR", PROJECT_ROOT / ".kith"),
            log_level=_upper(e, "KITH_LOG_LEVEL", "INFO"),
            redis_url=e.get("REDIS_URL") or None,
            database=read(DatabaseSettings, e),
            server=read(ServerSettings, e),
            tokens=read(TokenSettings, e),
            accounts=read(AccountSettings, e),
            signin=dataclasses.replace(
                read(SignInSettings, e),
                apple=read(AppleSignInSettings, e),
                google=read(GoogleSignInSettings, e),
            ),
            mail=read(MailSettings, e),
            sync=read(SyncSettings, e),
            encryption=read(EncryptionSettings, e),
            ratelimit=read(RateLimitSettings, e),
            worker=read(WorkerSettings, e),
            push=push,
            care=read(CareSettings, e),
        )
        tokens, server = settings.tokens, settings.server
        if settings.is_production and not (tokens.jwt_private_key and tokens.jwt_public_key):
            raise SettingsError(
                "KITH_JWT_PRIVATE_KEY and KITH_JWT_PUBLIC_KEY are required when KITH_ENV=production"
            )
        if settings.is_production and not settings.encryption.master_keys:
            raise SettingsError("KITH_MASTER_KEYS is required when KITH_ENV=production")
        if settings.mail.smtp_tls not in {"starttls", "tls", "none"}:
            raise SettingsError("KITH_SMTP_TLS must be starttls, tls or none")
        if (server.tls_cert is None) != (server.tls_key is None):
            raise SettingsError("KITH_TLS_CERT and KITH_TLS_KEY must be set together")
        return settings

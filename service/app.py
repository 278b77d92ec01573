"""The Litestar application, wired in one screen.

``create_app(settings)`` builds everything from one ``Settings``; the ASGI servers import
``service.app:app_from_env`` (a factory), so each worker process reads the environment once.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from service.accounts.consent import Consent
from service.accounts.identities import Identities
from service.accounts.passwords import Passwords
from service.accounts.providers import Providers
from service.accounts.recovery import Recovery
from service.accounts.service import AccountService
from service.accounts.sessions import SessionCache
from service.accounts.tokens import TokenIssuer, load_or_create_keys
from service.config import Settings
from service.http.fastpath import FastPull
from service.http.openapi import OpenAPIJson, finish
from service.http.problems import exception_handlers
from service.http.ratelimit import RateLimiter, RateLimits
from service.http.routes.account import AccountController
from service.http.routes.auth import AuthController
from service.http.routes.care import CareController
from service.http.routes.devices import DeviceController
from service.http.routes.events import EventsController
from service.http.routes.health import live, ready
from service.http.routes.nudges import NudgeController
from service.http.routes.sync import SyncController
from service.http.routes.watermelon import WatermelonController
from service.http.strict_json import strict_json_body
from service.http.web.account import AccountPages
from service.http.web.api_docs import ApiDocs, docs_router
from service.http.web.pages import CarePages
from service.infra import heap
from service.infra.asgi import ASGIApp
from service.infra.logs import ObservedApp, configure_logging
from service.infra.mail import build_mailer
from service.infra.metrics import Metrics, flushing, metrics_route, sync_counter
from service.infra.wakeup import notify
from service.lifecycle.erasure import Erasure
from service.lifecycle.export import Exporter
from service.sync.realtime import Realtime
from service.sync.watermelon import WatermelonAdapter
from service.wiring import DEFAULT_REDIS_URL, core

__all__ = ["app_from_env", "configure_logging", "create_app", "openapi_document", "served"]

log = logging.getLogger("kith")


def create_app(settings: Settings) -> Litestar:
    if not settings.database.url:
        raise RuntimeError("DATABASE_URL is not set (use `kith dev` for embedded servers)")
    keys = settings.tokens
    private, public = load_or_create_keys(
        keys.jwt_private_key, keys.jwt_public_key, settings.data_dir / "keys"
    )
    tokens = TokenIssuer(private, public, access_ttl_s=keys.access_ttl_s)
    consent = Consent(settings.accounts.terms_version)
    providers = Providers(settings.signin)  # Apple, Google: each on if it has client ids
    metrics = Metrics()  # this process's deltas, flushed to Redis (service/infra/metrics.py)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with core(settings, "api") as c:
            realtime = Realtime(
                redis_url=settings.redis_url or DEFAULT_REDIS_URL,
                client=c.redis,
                pool=c.pool,
                sessions=SessionCache(c.pool, tokens),
                notifier=c.notifier,
                heartbeat_s=settings.server.sse_heartbeat_s,
            )
            app.state.realtime = realtime
            passwords = Passwords(
                time_cost=keys.argon2_time_cost, memory_kib=keys.argon2_memory_kib
            )
            app.state.sessions = realtime.sessions
            app.state.pool = c.pool
            app.state.redis = c.redis
            app.state.tokens = tokens
            app.state.consent = consent
            app.state.accounts = AccountService(
                c.pool,
                passwords,
                tokens,
                c.clock,
                refresh_ttl_s=keys.refresh_ttl_s,
                on_revoke=realtime.session_revoked,
                consent=consent,
            )
            app.state.identities = Identities(c.pool, app.state.accounts, providers)
            app.state.sync = c.sync_service(
                seqs=realtime,
                evaluate_debounce_s=settings.worker.evaluate_debounce_s,
                wake_workers=lambda: notify(c.redis),
            )
            app.state.care = c.care_service(app.state.sync)
            app.state.watermelon = WatermelonAdapter(
                c.pool, app.state.sync, c.clock, max_skew_ms=settings.sync.max_clock_skew_ms
            )
            app.state.exporter = Exporter(c.pool, c.private)
            app.state.recovery = Recovery(
                c.pool, passwords, build_mailer(settings.mail), on_revoke=realtime.session_revoked
            )
            app.state.erasure = Erasure(
                c.pool,
                app.state.sync,
                on_revoke=realtime.session_revoked,
                wake_workers=lambda: notify(c.redis),
            )
            app.state.alerts = c.alert_service(
                app.state.sync, app.state.care, wake_workers=lambda: notify(c.redis)
            )
            await realtime.start()  # one Redis subscription per process (service/sync/realtime.py)
            heap.settle()  # start-up objects frozen, fewer collections (service/infra/heap.py)
            try:
                yield
            finally:
                await realtime.stop()  # ends open event streams with a reconnect hint

    @asynccontextmanager
    async def observability(app: Litestar) -> AsyncIterator[None]:
        """Rate limits and the metrics flush, on the Redis client ``lifespan`` opened."""
        app.state.limits = RateLimiter(
            app.state.redis, settings, metrics, app.state.sessions.claims
        )
        async with flushing(metrics, app.state.redis):
            yield

    def state(name: str) -> Provide:
        return Provide(_StateGetter(name), sync_to_thread=False)

    return Litestar(
        route_handlers=[
            AuthController,
            AccountController,
            AccountPages,
            DeviceController,
            NudgeController,
            CareController,
            CarePages,
            SyncController,
            WatermelonController,
            EventsController,
            live,
            ready,
            metrics_route(settings.server.metrics_token),
        ],
        dependencies={
            "pool": state("pool"),
            "redis_client": state("redis"),
            "accounts": state("accounts"),
            "identities": state("identities"),
            "sync": state("sync"),
            "care": state("care"),
            "erasure": state("erasure"),
            "exporter": state("exporter"),
            "recovery": state("recovery"),
            "alerts": state("alerts"),
            "limits": state("limits"),
        },
        lifespan=[lifespan, observability],
        state=State({"metrics": metrics}),
        before_request=strict_json_body,  # no lax coercion (service/http/strict_json.py)
        after_request=sync_counter(metrics),
        logging_config=None,  # service/infra/logs.py configures logging, once, as JSON
        exception_handlers=exception_handlers,  # type: ignore[arg-type]
        request_max_body_size=settings.server.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Kith API",
            version="1.0.0",
            description="Offline-first sync for Kith. Protocol: docs/protocol.md.",
            path="/docs",
            # Swagger UI pinned and served from this origin, no CDN (service/http/web/api_docs.py)
            render_plugins=[
                ApiDocs("/docs"),
                OpenAPIJson(),  # the finished document (service/http/openapi.py)
            ],
            openapi_router=docs_router("/docs"),
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
                }
            ),
        ),
        debug=False,
    )


class _StateGetter:
    """A dependency that returns one attribute of ``app.state``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, state: State) -> Any:
        return getattr(state, self.name)


def openapi_document(app: Litestar) -> dict[str, Any]:
    """The OpenAPI document ``app`` serves at ``/docs/openapi.json``: Litestar's, finished
    for client generators (``service/http/openapi.py``)."""
    return finish(app.openapi_schema.to_schema())


def served(app: Litestar, inner: ASGIApp | None = None) -> ObservedApp:
    """``app`` as the server runs it, outermost first: :class:`ObservedApp` (request id,
    access line and latency for every request, unmatched routes included),
    :class:`RateLimits` (429 before anything else runs), :class:`FastPull` (the no-change
    pull answered without Litestar), then Litestar — or ``inner``, a wrapper of it (tests
    count what reaches Litestar)."""
    core = FastPull(inner or app, app.state)
    return ObservedApp(RateLimits(core, app.state), app.state.metrics)


def app_from_env() -> ObservedApp:
    """What Granian serves: :func:`served` of the app built from the environment."""
    settings = Settings.from_env()
    configure_logging(settings.log_level)  # JSON lines; messages never carry secrets
    logging.getLogger("kith").info("kith API process ready (environment %s)", settings.environment)
    return served(create_app(settings))

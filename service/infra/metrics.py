"""Prometheus metrics that are right across processes and hosts.

Granian runs N API processes and ``kith worker`` runs elsewhere, so a counter kept in one
process's memory shows a random slice of the truth. Each process therefore aggregates
locally (a dict increment per event — nothing on the request path waits for the network)
and, about once a second, adds its deltas to one Redis hash in a single MULTI/EXEC
(``HINCRBY``/``HINCRBYFLOAT``). ``GET /metrics`` renders that hash — the sum over every
process that ever ran against this Redis — plus gauges read from PostgreSQL at scrape
time (the job queue by state, one ``GROUP BY``).

Deltas that could not be written (Redis down) are kept and added on the next flush, so a
Redis outage delays the numbers but does not lose them. A process that is SIGKILLed loses
at most its last second. Counters only ever grow; if the hash is lost Prometheus sees an
ordinary counter reset.

The hash fields are the Prometheus series themselves
(``kith_jobs_claimed_total{kind="evaluate"}``), histograms as cumulative ``_bucket``
series plus ``_sum`` and ``_count``, so rendering is grouping and sorting.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler
from redis.exceptions import RedisError

from schemas.sync import PullResponse, PushResponse
from service.errors import NotAuthenticated
from service.store import jobs as job_store

__all__ = [
    "FAMILIES",
    "HTTP_DURATION",
    "KEY",
    "Family",
    "Metrics",
    "flushing",
    "metrics_route",
    "render",
    "sync_counter",
]

log = logging.getLogger("kith.metrics")

KEY = "kith:metrics"
FLUSH_EVERY_S = 1.0
READ_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Family:
    """One metric: its name, help text, type and label names (and buckets for histograms)."""

    name: str
    help: str
    type: str  # counter | histogram | gauge
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


def _counter(name: str, help: str, *labels: str) -> Family:
    """A count that only grows (Prometheus's ``counter``), by ``labels``."""
    return Family(name, help, "counter", labels)


def _gauge(name: str, help: str, *labels: str) -> Family:
    """A value read as it is now (``gauge``), by ``labels``."""
    return Family(name, help, "gauge", labels)


_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_DURATION = Family(
    "kith_http_request_duration_seconds",
    "API request latency by method, route template and status class.",
    "histogram",
    ("method", "route", "status"),
    _LATENCY,
)
SYNC_PUSH_CHANGES = _counter(
    "kith_sync_push_changes_total",
    "Changes in answered pushes (a retried batch_id is answered, and counted, again).",
)
SYNC_PULL_ROWS = _counter("kith_sync_pull_rows_total", "Records served by pulls.")
RATE_LIMITED = _counter("kith_rate_limited_total", "Requests refused with 429, by rule.", "rule")
RATE_LIMIT_OPEN = _counter(
    "kith_rate_limit_fail_open_total",
    "Requests let through unchecked because Redis did not answer.",
)
JOBS_CLAIMED = _counter("kith_jobs_claimed_total", "Jobs claimed by workers.", "kind")
JOBS_SUCCEEDED = _counter("kith_jobs_succeeded_total", "Jobs whose handler returned.", "kind")
JOBS_FAILED = _counter(
    "kith_jobs_failed_total", "Job attempts that failed and were retried.", "kind"
)
JOBS_DEAD = _counter("kith_jobs_dead_total", "Jobs dead-lettered.", "kind")
JOB_DURATION = Family(
    "kith_job_duration_seconds",
    "Job handler run time by kind and outcome.",
    "histogram",
    ("kind", "outcome"),
    (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0),
)
PUSH_SENDS = _counter(
    "kith_push_sends_total",
    "Push sends by provider, outcome (what Kith did about the answer) and provider reason.",
    "provider",
    "outcome",
    "reason",
)
QUEUE_DEPTH = _gauge(
    "kith_job_queue_depth", "Jobs in the queue by state (read at scrape).", "state"
)
SOURCE_UP = _gauge(
    "kith_metrics_source_up",
    "Whether /metrics could read a source (redis: the counters; postgres: the gauges).",
    "source",
)

FAMILIES = (
    HTTP_DURATION,
    SYNC_PUSH_CHANGES,
    SYNC_PULL_ROWS,
    RATE_LIMITED,
    RATE_LIMIT_OPEN,
    JOBS_CLAIMED,
    JOBS_SUCCEEDED,
    JOBS_FAILED,
    JOBS_DEAD,
    JOB_DURATION,
    PUSH_SENDS,
    QUEUE_DEPTH,
    SOURCE_UP,
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _series(name: str, names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return name
    pairs = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))
    return f"{name}{{{pairs}}}"


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


_REASON = re.compile(r"[A-Za-z0-9_.-]{1,40}")


def label_value(raw: str | None) -> str:
    """A provider-supplied value made safe as a label: short, plain, or ``other`` — a
    remote server must not be able to create unbounded series."""
    if not raw:
        return ""
    return raw if _REASON.fullmatch(raw) else "other"


class Metrics:
    """This process's not-yet-flushed deltas, with one method per event Kith records."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._sums: dict[str, float] = {}
        self._bucket_names: dict[tuple[str, tuple[str, ...]], tuple[list[str], str, str]] = {}
        self._warned_at = -math.inf

    # -- recording (synchronous, cheap) ----------------------------------------------------

    def inc(self, family: Family, *labels: str, value: int = 1) -> None:
        key = _series(family.name, family.labels, labels)
        self._counts[key] = self._counts.get(key, 0) + value

    def observe(self, family: Family, seconds: float, *labels: str) -> None:
        buckets, sum_key, count_key = self._histogram_keys(family, labels)
        counts = self._counts
        for bound, key in zip(family.buckets, buckets, strict=False):
            # Every bucket is written (+0 included) so a series never lacks a bucket.
            counts[key] = counts.get(key, 0) + (1 if seconds <= bound else 0)
        counts[buckets[-1]] = counts.get(buckets[-1], 0) + 1  # +Inf
        counts[count_key] = counts.get(count_key, 0) + 1
        self._sums[sum_key] = self._sums.get(sum_key, 0.0) + seconds

    def _histogram_keys(
        self, family: Family, labels: tuple[str, ...]
    ) -> tuple[list[str], str, str]:
        cached = self._bucket_names.get((family.name, labels))
        if cached is None:
            names = (*family.labels, "le")
            buckets = [
                _series(f"{family.name}_bucket", names, (*labels, _le(b)))
                for b in (*family.buckets, math.inf)
            ]
            cached = (
                buckets,
                _series(f"{family.name}_sum", family.labels, labels),
                _series(f"{family.name}_count", family.labels, labels),
            )
            self._bucket_names[(family.name, labels)] = cached
        return cached

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.observe(HTTP_DURATION, seconds, method, route, f"{status // 100}xx")

    def job_claimed(self, kind: str) -> None:
        self.inc(JOBS_CLAIMED, kind)

    def job_finished(self, kind: str, outcome: str, seconds: float) -> None:
        """``outcome``: succeeded, failed (will be retried) or dead."""
        family = {"succeeded": JOBS_SUCCEEDED, "dead": JOBS_DEAD}.get(outcome, JOBS_FAILED)
        self.inc(family, kind)
        self.observe(JOB_DURATION, seconds, kind, outcome)

    def push_result(self, provider: str, outcome: str, reason: str | None) -> None:
        self.inc(PUSH_SENDS, provider, outcome, label_value(reason))

    def pending(self) -> dict[str, float]:
        """The deltas not yet flushed, by series (what the next flush will add)."""
        return {**{k: float(v) for k, v in self._counts.items()}, **self._sums}

    # -- flushing ---------------------------------------------------------------------------

    async def flush(self, client: aioredis.Redis) -> None:
        """Add this process's deltas to the shared hash, atomically; on failure keep them
        for the next attempt (and re-raise)."""
        if not self._counts and not self._sums:
            return
        counts, sums = self._counts, self._sums
        self._counts, self._sums = {}, {}
        try:
            async with client.pipeline(transaction=True) as pipe:
                for field, n in counts.items():
                    pipe.hincrby(KEY, field, n)
                for field, x in sums.items():
                    pipe.hincrbyfloat(KEY, field, x)
                await pipe.execute()
        except BaseException:
            for field, n in counts.items():
                self._counts[field] = self._counts.get(field, 0) + n
            for field, x in sums.items():
                self._sums[field] = self._sums.get(field, 0.0) + x
            raise

    async def flush_quietly(self, client: aioredis.Redis, timeout_s: float = 2.0) -> None:
        """One flush that never raises: a warning at most once a minute while Redis is out."""
        try:
            await asyncio.wait_for(self.flush(client), timeout_s)
        except (RedisError, OSError, TimeoutError) as exc:
            now = time.monotonic()
            if now - self._warned_at >= 60:
                self._warned_at = now
                log.warning("metrics not flushed to Redis (kept for later): %s", type(exc).__name__)

    async def flush_forever(self, client: aioredis.Redis, every_s: float = FLUSH_EVERY_S) -> None:
        while True:
            await asyncio.sleep(every_s)
            await self.flush_quietly(client)


@asynccontextmanager
async def flushing(metrics: Metrics, client: aioredis.Redis) -> AsyncIterator[None]:
    """Flush ``metrics`` every second while the block runs, and once more at its end."""
    task = asyncio.create_task(metrics.flush_forever(client))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await metrics.flush_quietly(client)


# -- rendering -------------------------------------------------------------------------------

_SERIES = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?$")
_LE = re.compile(r'(?:^|,)le="(?P<le>[^"]*)"$')
_SUFFIX_ORDER = {"_bucket": 0, "_sum": 1, "_count": 2}


def _families_by_series() -> dict[str, tuple[Family, str]]:
    table: dict[str, tuple[Family, str]] = {}
    for family in FAMILIES:
        if family.type == "histogram":
            for suffix in _SUFFIX_ORDER:
                table[family.name + suffix] = (family, suffix)
        else:
            table[family.name] = (family, "")
    return table


_BY_SERIES = _families_by_series()


def _sort_key(series: str) -> tuple[str, int, float]:
    match = _SERIES.match(series)
    if match is None:
        return (series, 0, 0.0)
    labels = match["labels"] or ""
    le = _LE.search(labels)
    bound = math.inf
    if le is not None:
        bound = math.inf if le["le"] == "+Inf" else float(le["le"])
        labels = labels[: le.start()]
    suffix = _BY_SERIES.get(match["name"], (None, ""))[1]
    return (labels, _SUFFIX_ORDER.get(suffix, 0), bound)


def _number(raw: bytes | str | float) -> str:
    value = float(raw)
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def render_series(values: dict[str, float], gauges: dict[str, float]) -> str:
    """The Prometheus text exposition (format 0.0.4) of stored series and live gauges."""
    grouped: dict[str, list[str]] = {}
    for series in (*values, *gauges):
        match = _SERIES.match(series)
        known = _BY_SERIES.get(match["name"]) if match else None
        if known is not None:
            grouped.setdefault(known[0].name, []).append(series)
    lines: list[str] = []
    for family in FAMILIES:
        members = grouped.get(family.name)
        if not members:
            continue
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for series in sorted(members, key=_sort_key):
            value = values[series] if series in values else gauges[series]
            lines.append(f"{series} {_number(value)}")
    return "\n".join(lines) + "\n"


async def _stored(client: aioredis.Redis) -> dict[str, float] | None:
    try:
        raw: dict[bytes | str, bytes | str] = await asyncio.wait_for(
            client.hgetall(KEY), READ_TIMEOUT_S
        )
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("metrics: Redis not readable: %s", type(exc).__name__)
        return None
    return {(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in raw.items()}


async def _queue(pool: asyncpg.Pool[Any]) -> dict[str, int] | None:
    try:
        return await asyncio.wait_for(job_store.queue_stats(pool), READ_TIMEOUT_S)
    except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
        log.warning("metrics: PostgreSQL not readable: %s", type(exc).__name__)
        return None


async def render(client: aioredis.Redis, pool: asyncpg.Pool[Any]) -> str:
    """Everything ``/metrics`` shows: the shared counters and the live gauges. A source that
    does not answer is reported by ``kith_metrics_source_up`` instead of failing the scrape."""
    stored, queue = await asyncio.gather(_stored(client), _queue(pool))
    gauges: dict[str, float] = {
        _series(SOURCE_UP.name, SOURCE_UP.labels, ("redis",)): float(stored is not None),
        _series(SOURCE_UP.name, SOURCE_UP.labels, ("postgres",)): float(queue is not None),
    }
    for state, n in (queue or {}).items():
        gauges[_series(QUEUE_DEPTH.name, QUEUE_DEPTH.labels, (state,))] = float(n)
    return render_series(stored or {}, gauges)


# -- the API's side ---------------------------------------------------------------------------

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metrics_route(token: str | None) -> HTTPRouteHandler:
    """``GET /metrics``: open by default (scraped from inside the network); with
    ``KITH_METRICS_TOKEN`` set it wants ``Authorization: Bearer <token>``. Not in the OpenAPI
    document: it is for the operator's Prometheus, not for app developers."""

    @get("/metrics", include_in_schema=False, summary="Prometheus metrics")
    async def metrics_endpoint(
        request: Request[Any, Any, Any],
        pool: NamedDependency[asyncpg.Pool],
        redis_client: NamedDependency[aioredis.Redis],
    ) -> Response[bytes]:
        if token is not None and not _bearer_matches(request.headers.get("authorization"), token):
            raise NotAuthenticated(
                "send 'Authorization: Bearer <metrics token>'",
                headers={"WWW-Authenticate": 'Bearer realm="kith-metrics"'},
            )
        body = await render(redis_client, pool)
        return Response(body.encode(), media_type=CONTENT_TYPE)

    return metrics_endpoint


def _bearer_matches(header: str | None, token: str) -> bool:
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def sync_counter(metrics: Metrics) -> Callable[[Response[Any]], Awaitable[Response[Any]]]:
    """An ``after_request`` hook counting what push and pull answered, read from the
    answer itself so the sync engine needs no knowledge of metrics."""

    async def count(response: Response[Any]) -> Response[Any]:
        content = response.content
        if isinstance(content, PushResponse):
            metrics.inc(SYNC_PUSH_CHANGES, value=content.accepted)
        elif isinstance(content, PullResponse):
            metrics.inc(SYNC_PULL_ROWS, value=len(content.changes))
        return response

    return count

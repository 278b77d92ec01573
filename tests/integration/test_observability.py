"""Metrics, structured logs and graceful shutdown, on real processes.

``/metrics`` is read from the shared test server (counters are summed in Redis by every
process that ran against it, so assertions compare before and after, never absolutes); a
worker runs as ``kith worker``; the shutdown test signals an API process of its own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from schemas.auth import ProviderName
from service.http.ratelimit import client_ip, parse_networks
from service.infra.logs import accept_request_id, redact
from service.infra.metrics import Metrics, label_value, render_series
from service.jobs import Job, Retry
from service.push.base import Address, Credentials, Notification, SendResult
from service.push.delivery import deliver
from tests.conftest import OUTPUT, ApiProcess
from tests.helpers import new_id, push, register, stamp

SERVER_LOG = OUTPUT / "api-server.log"


# -- reading the exposition -------------------------------------------------------------------


def samples(text: str) -> dict[str, float]:
    """``series -> value`` of a Prometheus text exposition, checking its shape on the way:
    every sample's family was announced by HELP and TYPE, histograms are cumulative and
    end in a +Inf bucket equal to their count."""
    values: dict[str, float] = {}
    announced: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            announced[name] = kind
        elif line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            name = re.sub(r"(_bucket|_sum|_count)$", "", series.split("{")[0])
            assert name in announced or series.split("{")[0] in announced, line
            values[series] = float(value)
    _check_histograms(values)
    return values


def _check_histograms(values: dict[str, float]) -> None:
    buckets: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for series, value in values.items():
        match = re.fullmatch(r'(\w+)_bucket\{(.*?),?le="([^"]+)"\}', series)
        if match:
            bound = math.inf if match[3] == "+Inf" else float(match[3])
            buckets.setdefault((match[1], match[2]), []).append((bound, value))
    for (name, labels), pairs in buckets.items():
        counts = [count for _, count in sorted(pairs)]
        assert counts == sorted(counts), f"{name}{{{labels}}}: not cumulative: {pairs}"
        assert sorted(pairs)[-1][0] == math.inf, f"{name}{{{labels}}}: no +Inf bucket"
        count_series = f"{name}_count{{{labels}}}" if labels else f"{name}_count"
        assert counts[-1] == values[count_series], f"{name}{{{labels}}}: +Inf != count"


async def scrape(http: httpx.AsyncClient, **headers: str) -> dict[str, float]:
    r = await http.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(r.text)


async def until_grown(
    http: httpx.AsyncClient, before: dict[str, float], wanted: dict[str, float]
) -> dict[str, float]:
    """Scrape until every series in ``wanted`` grew by at least its amount (processes flush
    about once a second); fail after 15 s naming what did not."""
    deadline = time.monotonic() + 15
    while True:
        now = await scrape(http)
        short = {s: d for s, d in wanted.items() if now.get(s, 0) - before.get(s, 0) < d}
        if not short:
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"did not grow as expected: {short}")
        await asyncio.sleep(0.3)


# -- metrics ----------------------------------------------------------------------------------

HTTP = "kith_http_request_duration_seconds"


async def test_metrics_show_request_latency_by_route_and_what_sync_did(
    http: httpx.AsyncClient,
) -> None:
    before = await scrape(http)
    ana = await register(http)
    changes = [
        {"table": "contacts", "id": new_id("c"), "hlc": stamp(ana.device_id, counter=i),
         "fields": {"display_name": f"Friend {i}"}}
        for i in range(3)
    ]  # fmt: skip
    await push(http, ana, changes)
    r = await http.post(
        "/v1/sync/pull", headers=ana.headers, json={"schema_version": 1, "cursor": None}
    )
    assert r.status_code == 200
    assert (await http.get("/v1/no-such-route")).status_code == 404
    push_count = f'{HTTP}_count{{method="POST",route="/v1/sync/push",status="2xx"}}'
    after = await until_grown(
        http,
        before,
        {
            push_count: 1,
            f'{HTTP}_count{{method="POST",route="/v1/auth/register",status="2xx"}}': 1,
            f'{HTTP}_count{{method="GET",route="unmatched",status="4xx"}}': 1,
            "kith_sync_push_changes_total": 3,
            "kith_sync_pull_rows_total": 3,
        },
    )
    assert after[f'{HTTP}_sum{{method="POST",route="/v1/sync/push",status="2xx"}}'] > 0
    assert after['kith_metrics_source_up{source="redis"}'] == 1
    assert after['kith_metrics_source_up{source="postgres"}'] == 1
    assert 'kith_job_queue_depth{state="queued"}' in after


async def test_a_metrics_token_closes_the_endpoint_to_everyone_else(
    api_process: Callable[..., ApiProcess],
) -> None:
    server = api_process("observability-api-token", KITH_METRICS_TOKEN="scrape-me").wait_ready()
    try:
        async with httpx.AsyncClient(base_url=server.base, timeout=10) as http:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "scrape-me"}):
                r = await http.get("/metrics", headers=headers)
                assert r.status_code == 401, r.text
                assert r.headers["content-type"].startswith("application/problem+json")
            assert await scrape(http, Authorization="Bearer scrape-me")
    finally:
        assert server.stop() == 0


async def test_job_metrics_after_a_worker_run(
    http: httpx.AsyncClient, db: asyncpg.Connection, server_env: dict[str, str]
) -> None:
    before = await scrape(http)
    ana = await register(http)
    await push(http, ana, [_reflection(ana.device_id, "a quiet evening")])  # queues `evaluate`
    # A job that can never succeed: a plan without a person is dead-lettered at once.
    dead_id = await db.fetchval("INSERT INTO jobs (kind) VALUES ('nudge_plan') RETURNING id")
    log_path = OUTPUT / "observability-worker.log"
    with log_path.open("wb") as log:
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "service.cli",
            "worker",
            env=server_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            await until_grown(
                http,
                before,
                {
                    'kith_jobs_claimed_total{kind="evaluate"}': 1,
                    'kith_jobs_succeeded_total{kind="evaluate"}': 1,
                    'kith_jobs_claimed_total{kind="nudge_plan"}': 1,
                    'kith_jobs_dead_total{kind="nudge_plan"}': 1,
                    'kith_job_duration_seconds_count{kind="nudge_plan",outcome="dead"}': 1,
                },
            )
        finally:
            worker.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(worker.wait(), 30) == 0
    lines = _json_lines(log_path)
    dead = [line for line in lines if line.get("request_id") == f"job-{dead_id}"]
    assert dead, "the dead job's warning names its job"
    assert dead[0]["level"] == "WARNING"
    assert dead[0]["logger"] == "kith.worker"


def _reflection(device_id: str, body: str) -> dict[str, Any]:
    return {
        "table": "reflections",
        "id": new_id("r"),
        "hlc": stamp(device_id),
        "fields": {"occurred_at": "2025-01-01T21:00:00Z", "body": body},
    }


class _Provider:
    """A push provider that answers what it is told to."""

    def __init__(self, result: SendResult) -> None:
        self.name: ProviderName = "fcm"
        self.credentials: Credentials | None = None
        self.result = result

    async def send(self, address: Address, notification: Notification) -> SendResult:
        return self.result

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize(
    ("result", "series"),
    [
        (SendResult(200), 'kith_push_sends_total{provider="fcm",outcome="delivered",reason=""}'),
        (
            SendResult(503, "UNAVAILABLE"),
            'kith_push_sends_total{provider="fcm",outcome="retry",reason="UNAVAILABLE"}',
        ),
        (
            SendResult(503, "a reason\nwith {junk}"),
            'kith_push_sends_total{provider="fcm",outcome="retry",reason="other"}',
        ),
    ],
)
async def test_push_sends_are_counted_by_provider_outcome_and_reason(
    result: SendResult, series: str
) -> None:
    metrics = Metrics()
    address = Address("dev-1", "fcm", "token", dt.datetime.now(dt.UTC))
    job = Job(1, "push_send", "space", {}, 1)
    pool: Any = None  # delivered and retried sends never touch the database
    run = deliver(
        pool, "space", _Provider(result), address, Notification("n1", "t", "b"), job,
        random.Random(1), metrics=metrics,
    )  # fmt: skip
    if result.ok:
        await run
    else:
        with pytest.raises(Retry):
            await run
    assert samples(render_series(metrics.pending(), {}))[series] == 1


# -- structured logs --------------------------------------------------------------------------


def _json_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if line.strip():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                raise AssertionError(f"{path.name}:{number} is not JSON: {line[:200]}") from None
            assert isinstance(entry, dict), line
            assert {"time", "level", "logger", "message"} <= entry.keys(), line
            lines.append(entry)
    return lines


async def _access_line(request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        for entry in _json_lines(SERVER_LOG):
            if entry.get("request_id") == request_id and entry["logger"] == "kith.access":
                return entry
        if time.monotonic() > deadline:
            raise AssertionError(f"no access line for {request_id}")
        await asyncio.sleep(0.1)


async def test_every_log_line_is_json_and_requests_carry_their_id(
    http: httpx.AsyncClient,
) -> None:
    mine = f"obs-{new_id('req')}"
    body = {
        "email": f"{new_id('nobody')}@example.org",
        "password": "not-logged-ever",
        "device": {"id": new_id("dev"), "platform": "ios", "name": "x"},
    }
    r = await http.post("/v1/auth/login", json=body, headers={"X-Request-ID": mine})
    assert r.status_code == 401
    assert r.headers["x-request-id"] == mine
    line = await _access_line(mine)
    assert (line["route"], line["status"], line["method"]) == ("/v1/auth/login", 401, "POST")
    assert isinstance(line["duration_ms"], float | int)
    assert line["level"] == "INFO"

    for unsafe in ("has spaces", "x" * 65, "semi;colon", "eyJhbGciOiJFZERTQSIsImtpZCI6ImFiYyJ9"):
        r = await http.get("/v1/unknown", headers={"X-Request-ID": unsafe})
        assert r.status_code == 404
        generated = r.headers["x-request-id"]
        assert generated != unsafe
        assert re.fullmatch(r"[0-9a-f]{32}", generated)
    line = await _access_line(generated)
    assert (line["route"], line["status"]) == ("unmatched", 404)
    assert "not-logged-ever" not in SERVER_LOG.read_text()


def test_the_redaction_filter_blanks_credentials_and_keeps_ids() -> None:
    jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1c3ItMSJ9.c2lnbmF0dXJlLWJ5dGVz"
    refresh = "Zk3_q9XbR2mN8vT1cYwL5pQ7sH0jD4gF6aE2uI9oK1z"
    apns = "a" * 64
    text = redact(
        f"auth Bearer {jwt} refresh={refresh} token {apns} password: hunter22 "
        f"job 42 user usr-0123456789ab request 1f2e3d4c5b6a79881f2e3d4c5b6a7988"
    )
    for secret in (jwt, refresh, apns, "hunter22"):
        assert secret not in text
    for kept in ("job 42", "usr-0123456789ab", "1f2e3d4c5b6a79881f2e3d4c5b6a7988"):
        assert kept in text
    assert accept_request_id("abc-123") == "abc-123"
    assert accept_request_id(refresh) != refresh  # a token is never echoed as an id


def test_the_client_address_comes_from_x_forwarded_for_only_behind_a_trusted_proxy() -> None:
    proxies = parse_networks(["10.0.0.0/8", "127.0.0.1"])
    assert client_ip("203.0.113.9", ["1.2.3.4"], proxies) == "203.0.113.9"
    assert client_ip("10.1.1.1", ["1.2.3.4"], ()) == "10.1.1.1"  # trust nobody by default
    # The right-most address a trusted proxy did not add is the client; what the client
    # wrote further left is ignored.
    assert client_ip("10.1.1.1", ["6.6.6.6, 198.51.100.7, 10.2.2.2"], proxies) == "198.51.100.7"
    assert client_ip("127.0.0.1", ["not-an-ip, 10.2.2.2"], proxies) == "127.0.0.1"
    assert client_ip("2001:db8::1", [], ()) == "2001:db8::/64"
    assert label_value("BadDeviceToken") == "BadDeviceToken"
    assert label_value('x"}\n') == "other"


# -- graceful shutdown --------------------------------------------------------------------------


async def test_sigterm_lets_an_in_flight_request_finish_and_exits_0(
    api_process: Callable[..., ApiProcess],
) -> None:
    """The request is in flight — its handler is reading the body — when SIGTERM arrives;
    it still gets its 201, and the server exits 0 well within the grace period."""
    server = api_process("observability-api-shutdown", KITH_SHUTDOWN_GRACE_S="10").wait_ready()
    body = json.dumps(
        {
            "email": f"{new_id('shutdown')}@example.org",
            "password": "correct horse battery staple",
            "display_name": "Slow Sender",
            "time_zone": "UTC",
            "device": {"id": new_id("dev"), "platform": "ios", "name": "slow"},
        }
    ).encode()
    head = (
        f"POST /v1/auth/register HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(head + body[:20])
        await asyncio.sleep(0.5)  # the handler has started and waits for the rest
        stopped_at = time.monotonic()
        os.kill(server.proc.pid, signal.SIGTERM)
        await asyncio.sleep(1.0)  # the server is shutting down now
        sock.sendall(body[20:])
        answer = await loop.run_in_executor(None, _read_all, sock)
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    code = await loop.run_in_executor(None, server.proc.wait, 15)
    assert code == 0
    assert time.monotonic() - stopped_at < 10
    assert server.stop() == 0


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)

"""The no-change pull: ``POST /v1/sync/pull`` whose cursor is the space's latest seq — what
every device sends on every sync when nothing happened, so the most frequent request Kith
answers. It is answered from the process's seq memory (``service/sync/realtime.py``) and session
cache, without PostgreSQL; this measures requests/s at 64 concurrent keep-alive connections
and the p99 latency, next to a bare Litestar handler (one POST route returning a fixed JSON
body of the same shape) served by Granian with the same settings.

Both servers are started here, not taken from the shared :class:`bench.servers.Stack`: the
API's rate limits must be off (64 connections from one address and a few users would hit
the per-user sync limit at once — the limiter guards against runaway clients, a benchmark
is one), and the floor is a Litestar app rather than the raw ASGI transport floor.

Load: ``wrk`` (Debian package ``wrk``) if it is installed, otherwise an asyncio generator
on raw sockets in two processes; either way its own rate against the bare handler is what
the ceiling column shows, so a generator that could not keep up would show as a low ceiling
rather than flatter Kith. 127.0.0.1 only; each phase ≤ 20 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
from litestar import Litestar, Request, post

from bench import client
from bench.measure import Plan, Result
from bench.servers import Stack, _api_env, _free_port, _process
from bench.wire import read_response

__all__ = ["floor_app", "nochange_pull"]

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 64
USERS = 64
WARMUP_S = 3.0
MEASURE_S = float(os.environ.get("KITH_BENCH_NOCHANGE_S") or 10.0)
ROUNDS = 2  # floor and Kith alternate; the best round of each is shown (a shared machine)
TARGET_RATIO = 0.7
TARGET_P99_MS = 10.0
# The paced phase: each connection waits this long after an answer before its next pull —
# 64 devices polling, ~2,000 requests/s in all, which the bare handler and Kith both serve
# well below saturation. It shows the latency a device sees when the server is not
# already past its capacity.
PACE_MS = 30
_GENERATOR_PROCESSES = 2


# -- the bare handler ---------------------------------------------------------------------


class _Answer(msgspec.Struct):
    changes: list[int]
    cursor: str
    has_more: bool
    server_hlc: str
    reset: bool


_FIXED = _Answer([], "azE6Mg", False, "1763764200153-0000-srv-1a2b3c4d", False)


@post("/v1/sync/pull", status_code=200)
async def _bare_pull(request: Request[Any, Any, Any]) -> _Answer:
    await request.body()
    return _FIXED


def floor_app() -> Litestar:
    """Granian factory: one POST route, fixed JSON body, nothing else (no DI, no auth)."""
    return Litestar([_bare_pull], debug=False)


# -- the workload -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Load:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    generator: str

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


async def nochange_pull(stack: Stack, plan: Plan) -> AsyncIterator[Result]:
    with (
        tempfile.TemporaryDirectory(prefix="kith-bench-nochange-") as tmp,
        _servers(stack, Path(tmp)) as (api_url, floor_url),
    ):
        requests = await _no_change_requests(api_url)
        kith, floor = [], []
        for _ in range(ROUNDS):
            floor.append(await _load(floor_url, requests, CONNECTIONS, tmp))
            kith.append(await _load(api_url, requests, CONNECTIONS, tmp))
        single_kith = await _load(api_url, requests, 1, tmp, seconds=5.0)
        single_floor = await _load(floor_url, requests, 1, tmp, seconds=5.0)
        paced_floor = await _load(floor_url, requests, CONNECTIONS, tmp, pace_ms=PACE_MS)
        paced_kith = await _load(api_url, requests, CONNECTIONS, tmp, pace_ms=PACE_MS)
        await _still_no_change(api_url, requests)
    best_kith = max(kith, key=lambda load: load.rate)
    best_floor = max(floor, key=lambda load: load.rate)
    if best_kith.errors or best_floor.errors or paced_kith.errors or paced_floor.errors:
        loads = (best_kith, best_floor, paced_kith, paced_floor)
        raise RuntimeError(f"non-2xx answers or socket errors: {loads}")
    notes = _notes(kith, floor, single_kith, single_floor)
    yield Result(
        f"no-change pull, {CONNECTIONS} connections (vs a bare Litestar handler)",
        best_kith.rate,
        best_floor.rate,
        "requests/s",
        TARGET_RATIO,
        notes,
    )
    yield Result(
        f"no-change pull p99 at {CONNECTIONS} connections (1/p99 vs 1/{TARGET_P99_MS:.0f} ms)",
        1000 / best_kith.p99_ms,
        1000 / TARGET_P99_MS,
        "per s",
        1.0,
        (
            f"no-change pull p99 — kith {best_kith.p99_ms:.1f} ms, bare handler "
            f"{best_floor.p99_ms:.1f} ms at {CONNECTIONS} connections; at 1 connection kith "
            f"{single_kith.p99_ms:.2f} ms, bare {single_floor.p99_ms:.2f} ms. With 64 requests "
            f"always in flight, mean latency = 64 / throughput (Little's law): below "
            f"{64 / TARGET_P99_MS * 1000:,.0f} requests/s no server can meet "
            f"{TARGET_P99_MS:.0f} ms here, the bare handler included.",
        ),
    )
    yield Result(
        f"no-change pull p99 at {CONNECTIONS} connections, each pausing {PACE_MS} ms between "
        f"pulls (1/p99 vs 1/{TARGET_P99_MS:.0f} ms)",
        1000 / paced_kith.p99_ms,
        1000 / TARGET_P99_MS,
        "per s",
        1.0,
        (
            f"no-change pull, paced — kith {paced_kith.rate:,.0f}/s, p50 "
            f"{paced_kith.p50_ms:.2f} ms, p99 {paced_kith.p99_ms:.2f} ms; bare handler "
            f"{paced_floor.rate:,.0f}/s, p50 {paced_floor.p50_ms:.2f} ms, p99 "
            f"{paced_floor.p99_ms:.2f} ms (same {CONNECTIONS} connections, each waiting "
            f"{PACE_MS} ms after every answer)",
        ),
    )


def _notes(kith: list[Load], floor: list[Load], one: Load, one_floor: Load) -> tuple[str, ...]:
    def rounds(loads: list[Load]) -> str:
        return ", ".join(f"{x.rate:,.0f}/s (p50 {x.p50_ms:.1f} ms)" for x in loads)

    return (
        f"no-change pull — load from {kith[0].generator}; {WARMUP_S:.0f} s warm-up then "
        f"{MEASURE_S:.0f} s per phase, best of {ROUNDS} alternating rounds",
        f"no-change pull — kith rounds: {rounds(kith)}; bare handler rounds: {rounds(floor)}",
        f"no-change pull — 1 connection: kith {one.rate:,.0f}/s, bare {one_floor.rate:,.0f}/s",
        f"no-change pull — the load generator drove the bare handler at "
        f"{max(x.rate for x in floor):,.0f}/s, so it is not what limits Kith's "
        f"{max(x.rate for x in kith):,.0f}/s",
        "no-change pull — PostgreSQL is not queried on this path "
        "(tests/integration/test_nochange_pull.py counts the bytes the API sends it)",
    )


@contextmanager
def _servers(stack: Stack, tmp: Path) -> Iterator[tuple[str, str]]:
    """This workload's own API (rate limits off) and the bare Litestar handler, both on
    Granian with one worker and no access log, as ``kith api`` runs."""
    api_port = _free_port()
    env = _api_env(stack.database_url, stack.redis_url, str(tmp / "data"), api_port)
    env |= {"KITH_RATELIMIT_SYNC_PER_USER": "0", "KITH_RATELIMIT_REGISTER_PER_IP": "0"}
    api_url = f"http://127.0.0.1:{api_port}"
    api_args = [sys.executable, "-m", "service.cli", "api"]
    with _process(api_args, env, f"{api_url}/health/ready", tmp / "api.log"):
        floor_port = _free_port()
        floor_url = f"http://127.0.0.1:{floor_port}"
        floor_args = [
            *(sys.executable, "-m", "granian", "--interface", "asgi", "--workers", "1"),
            *("--host", "127.0.0.1", "--port", str(floor_port), "--no-access-log"),
            *("--factory", "bench.nochange_pull:floor_app"),
        ]
        floor_env = {k: v for k, v in os.environ.items() if not k.startswith("GRANIAN_")}
        with _process(floor_args, floor_env, f"{floor_url}/schema", tmp / "floor.log"):
            yield api_url, floor_url


async def _no_change_requests(api_url: str) -> list[bytes]:
    """One raw HTTP/1.1 request per person: a pull with the cursor of their latest seq."""
    requests = []
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        for _ in range(USERS):
            account = await client.register(http)
            body = client.push_bodies(
                account.device_id,
                "contacts",
                [(f"c-{os.urandom(8).hex()}", {"display_name": "Sam"}, _stamp(account))],
                1,
            )[0]
            r = await http.post("/v1/sync/push", content=body, headers=account.headers)
            r.raise_for_status()
            cursor = await _cursor(http, account)
            requests.append(_raw_pull(account, cursor))
    return requests


def _stamp(account: client.Account) -> str:
    return client.stamps(account.device_id, 1)[0]


async def _cursor(http: httpx.AsyncClient, account: client.Account) -> str:
    cursor = None
    while True:
        r = await http.post(
            "/v1/sync/pull",
            headers=account.headers,
            json={"schema_version": 1, "cursor": cursor, "limit": 1000},
        )
        r.raise_for_status()
        body = r.json()
        cursor = body["cursor"]
        if not body["has_more"]:
            return str(cursor)


def _raw_pull(account: client.Account, cursor: str) -> bytes:
    body = msgspec.json.encode({"cursor": cursor, "limit": 500, "schema_version": 1})
    head = (
        "POST /v1/sync/pull HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: {account.headers['Authorization']}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _still_no_change(api_url: str, requests: list[bytes]) -> None:
    """Check the measured requests really were no-change pulls, answered 200 and empty."""
    host, port = api_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        for raw in requests[:8]:
            writer.write(raw)
            status, body = await read_response(reader)
            answer = json.loads(body)
            if status != 200 or answer["changes"] or answer["has_more"]:
                raise RuntimeError(f"not a no-change pull: {status} {body[:200]!r}")
    finally:
        writer.close()


# -- load generation ----------------------------------------------------------------------


async def _load(
    url: str,
    requests: list[bytes],
    connections: int,
    tmp: str,
    *,
    seconds: float = MEASURE_S,
    pace_ms: int = 0,
) -> Load:
    """``connections`` keep-alive connections sending ``requests`` round-robin, each as
    soon as the last answer arrived (or ``pace_ms`` after it)."""
    if shutil.which("wrk"):
        return await asyncio.to_thread(_wrk, url, requests, connections, tmp, seconds, pace_ms)
    return await asyncio.to_thread(_generate, url, requests, connections, seconds, pace_ms)


_WRK_SCRIPT = """
local raw = {%s}
local reqs = {}
init = function(args)
  for i, r in ipairs(raw) do
    reqs[i] = wrk.format("POST", "/v1/sync/pull", {["Content-Type"] = "application/json",
      ["Authorization"] = r[1]}, r[2])
  end
end
local n = 0
request = function()
  n = n + 1
  return reqs[(n %% #reqs) + 1]
end
%s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, "errors": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def _wrk(
    url: str, requests: list[bytes], connections: int, tmp: str, seconds: float, pace_ms: int
) -> Load:
    entries = []
    for raw in requests:
        head, _, body = raw.partition(b"\r\n\r\n")
        auth = next(line for line in head.split(b"\r\n") if line.startswith(b"Authorization:"))
        entries.append(f"{{{_lua(auth.split(b': ', 1)[1])}, {_lua(body)}}}")
    script = Path(tmp) / "nochange.lua"
    # wrk's ``delay()``: milliseconds a connection waits before its next request.
    pace = f"delay = function() return {pace_ms} end" if pace_ms else ""
    script.write_text(_WRK_SCRIPT % (",".join(entries), pace))
    threads = str(min(2, connections))
    args = ["wrk", "-t", threads, "-c", str(connections), "--timeout", "5s", "-s", str(script)]
    subprocess.run([*args, "-d", f"{WARMUP_S:.0f}s", url], check=True, capture_output=True)
    out = subprocess.run(
        [*args, "-d", f"{seconds:.0f}s", url], check=True, capture_output=True, text=True
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRK "))
    data = json.loads(line[4:])
    return Load(
        data["requests"],
        data["duration_us"] / 1e6,
        data["p50_us"] / 1000,
        data["p99_us"] / 1000,
        data["errors"],
        "wrk",
    )


def _lua(data: bytes) -> str:
    return '"' + data.decode().replace("\\", "\\\\").replace('"', '\\"') + '"'


def _generate(
    url: str, requests: list[bytes], connections: int, seconds: float, pace_ms: int
) -> Load:
    """The fallback: raw keep-alive HTTP/1.1 over asyncio in a few processes."""
    host, port = url.removeprefix("http://").split(":")
    processes = min(_GENERATOR_PROCESSES, connections)
    shares = [connections // processes + (i < connections % processes) for i in range(processes)]
    with ProcessPoolExecutor(processes) as pool:
        for share in shares:  # warm-up, discarded
            pool.submit(_generator_process, host, int(port), requests, share, WARMUP_S, pace_ms)
        parts = list(
            pool.map(
                _generator_process,
                [host] * processes,
                [int(port)] * processes,
                [requests] * processes,
                shares,
                [seconds] * processes,
                [pace_ms] * processes,
            )
        )
    latencies = sorted(x for _, _, lat in parts for x in lat)
    count = sum(n for n, _, _ in parts)
    errors = sum(e for _, e, _ in parts)
    return Load(
        count,
        seconds,
        statistics.median(latencies) * 1000,
        latencies[int(len(latencies) * 0.99)] * 1000,
        errors,
        f"an asyncio raw-socket generator in {processes} processes (wrk is not installed)",
    )


def _generator_process(
    host: str, port: int, requests: list[bytes], connections: int, seconds: float, pace_ms: int
) -> tuple[int, int, list[float]]:
    return asyncio.run(_generator(host, port, requests, connections, seconds, pace_ms))


async def _generator(
    host: str, port: int, requests: list[bytes], connections: int, seconds: float, pace_ms: int
) -> tuple[int, int, list[float]]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def one(offset: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        i = offset
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                writer.write(requests[i % len(requests)])
                status, _ = await read_response(reader)
                latencies.append(time.perf_counter() - started)
                errors += status != 200
                i += 1
                if pace_ms:
                    await asyncio.sleep(pace_ms / 1000)
        finally:
            writer.close()

    await asyncio.gather(*(one(k) for k in range(connections)))
    return len(latencies), errors, latencies

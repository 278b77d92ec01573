"""Idle event streams (``GET /v1/sync/events``) held by one API process, and what they cost
in memory; then how fast a change reaches a device over them.

* streams — ``KITH_BENCH_SSE_STREAMS`` (default 5,000) people, one signed-in device each,
  are written straight into the database (users, spaces, devices, sessions) and their
  access tokens minted with the API's key: the set-up is not what is measured. Each opens
  one stream over a raw asyncio socket (5,000 httpx clients would measure httpx) and must
  receive its first event (``event: status``). Then the RSS of the API's process tree —
  Granian's supervisor and its one worker, as ``bench/servers.py`` measures it — is read,
  now and at its peak (``VmHWM``). Target: 5,000 streams under 500 MB, expressed as streams
  per GB of RSS against 10,000 per GB.
* pokes — 20 of those people push one contact each; the time from sending the push to
  reading ``event: change`` on their stream is the poke latency (target: p95 under 1 s, the
  "poked within a second" a device expects).

The API is this workload's own ``kith api`` process: it must inherit a file-descriptor
limit above the stream count (raised here with ``resource.setrlimit``), which the shared
stack's API, started earlier, did not. 127.0.0.1 only; bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from bench.measure import Plan, Result
from bench.servers import ApiProcess, Stack, _api_env, _free_port, _process
from service.accounts.tokens import AccessClaims, TokenIssuer, load_or_create_keys

__all__ = ["sse_streams"]

STREAMS = int(os.environ.get("KITH_BENCH_SSE_STREAMS") or 5_000)
POKES = 20
OPEN_CONCURRENCY = 200
TARGET_MB = 500
TARGET_STREAMS = 5_000
FIRST_EVENT_TIMEOUT_S = 30.0
POKE_TIMEOUT_S = 5.0
DEVICE = "phone-01"  # every seeded person's one device


@dataclass(frozen=True, slots=True)
class Person:
    user_id: str
    space_id: str
    family_id: str
    token: str


@dataclass(slots=True)
class Stream:
    """One open stream, read in the background; ``poked`` is set on ``event: change``."""

    person: Person
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    poked: asyncio.Event = field(default_factory=asyncio.Event)
    poked_at: float = 0.0
    task: asyncio.Task[None] | None = None

    async def follow(self) -> None:
        while data := await self.reader.read(4096):
            if b"event: change" in data and not self.poked.is_set():
                self.poked_at = time.perf_counter()
                self.poked.set()


async def sse_streams(stack: Stack, plan: Plan) -> AsyncIterator[Result]:
    _raise_fd_limit(STREAMS + 2_000)
    with tempfile.TemporaryDirectory(prefix="kith-bench-sse-") as tmp:
        data_dir = Path(tmp) / "data"
        private, public = load_or_create_keys(None, None, data_dir / "keys")
        issuer = TokenIssuer(private, public, access_ttl_s=900)
        people = await _seed(stack.database_url, issuer, STREAMS)
        with _api(stack, data_dir) as (url, api):
            resting = api.rss()
            exact = api.reset_peak_rss()
            started = time.perf_counter()
            streams = await _open_all(url, people)
            opened_s = time.perf_counter() - started
            await asyncio.sleep(2.0)  # let the worker settle (allocator, first heartbeat)
            held, peak = api.rss(), api.peak_rss()
            latencies, answers = await _pokes(url, streams[:: max(1, len(streams) // POKES)])
            await _close_all(streams)
            # Let the worker take in the 5,000 disconnections before it is stopped: in such a
            # storm Granian's worker can miss SIGTERM ("Exception ignored when trying to write
            # to the signal wakeup fd") and would be left behind by the harness.
            await asyncio.sleep(3.0)
    yield _memory_result(len(streams), resting, held, peak, opened_s, exact)
    yield _poke_result(latencies, answers)


def _raise_fd_limit(wanted: int) -> None:
    """Enough descriptors for the client here and for the API process started after this
    (it inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        raise RuntimeError(f"the hard limit of open files is {hard}; {wanted} are needed")
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


async def _seed(database_url: str, issuer: TokenIssuer, n: int) -> list[Person]:
    """``n`` people with one device and a live session each, written in one go."""
    users = [uuid.uuid4().hex for _ in range(n)]
    spaces = [uuid.uuid4().hex for _ in range(n)]
    families = [uuid.uuid4().hex for _ in range(n)]
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute(
                """
                INSERT INTO users (id, email, password_hash, display_name, time_zone, space_id)
                SELECT u, u || '@sse.bench.example', 'not-a-hash', 'Bench', 'UTC', s
                FROM unnest($1::text[], $2::text[]) AS x(u, s)
                """,
                users,
                spaces,
            )
            await conn.execute(
                "INSERT INTO spaces (id, owner_id) SELECT s, u FROM unnest($1::text[], $2::text[])"
                " AS x(u, s)",
                users,
                spaces,
            )
            await conn.execute(
                "INSERT INTO devices (user_id, id, platform) SELECT u, 'phone-01', 'ios' "
                "FROM unnest($1::text[]) AS u",
                users,
            )
            await conn.execute(
                "INSERT INTO token_families (id, user_id, device_id, space_id) "
                "SELECT f, u, 'phone-01', s FROM unnest($1::text[], $2::text[], $3::text[]) "
                "AS x(f, u, s)",
                families,
                users,
                spaces,
            )
    finally:
        await conn.close()
    return [
        Person(u, s, f, issuer.mint_access(AccessClaims(u, DEVICE, s, f)))
        for u, s, f in zip(users, spaces, families, strict=True)
    ]


@contextmanager
def _api(stack: Stack, data_dir: Path) -> Iterator[tuple[str, ApiProcess]]:
    port = _free_port()
    env = _api_env(stack.database_url, stack.redis_url, str(data_dir), port)
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "service.cli", "api"]
    workers: list[psutil.Process] = []
    try:
        with _process(args, env, f"{url}/health/ready", data_dir.parent / "api.log") as pid:
            workers = psutil.Process(pid).children(recursive=True)
            yield url, ApiProcess(pid)
    finally:
        for worker in workers:  # a worker whose supervisor was killed first must not linger
            with contextlib.suppress(psutil.Error):
                worker.kill()


async def _open_all(url: str, people: list[Person]) -> list[Stream]:
    host, port = url.removeprefix("http://").split(":")
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def open_one(person: Person) -> Stream:
        async with gate:
            return await _open(host, int(port), person)

    streams = await asyncio.wait_for(
        asyncio.gather(*(open_one(p) for p in people)), FIRST_EVENT_TIMEOUT_S * 4
    )
    for stream in streams:
        stream.task = asyncio.create_task(stream.follow())
    return streams


async def _open(host: str, port: int, person: Person) -> Stream:
    """Connect, ask for the stream, and read until its first event has arrived."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        (
            f"GET /v1/sync/events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
            f"Authorization: Bearer {person.token}\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), FIRST_EVENT_TIMEOUT_S)
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"the stream was refused: {head[:200]!r}")
    seen = b""
    while not _first_event_in(seen):
        chunk = await asyncio.wait_for(reader.read(4096), FIRST_EVENT_TIMEOUT_S)
        if not chunk:
            raise RuntimeError("the stream ended before its first event")
        seen += chunk
    return Stream(person, reader, writer)


def _first_event_in(data: bytes) -> bool:
    """A whole ``event: status`` block (an event ends with a blank line)."""
    start = data.find(b"event: status")
    return start >= 0 and b"\r\n\r\n" in data[start:]


async def _pokes(url: str, streams: list[Stream]) -> tuple[list[float], list[float]]:
    """Each chosen person pushes a contact; seconds until their stream said ``change``
    (and until the push answered)."""
    latencies, answers = [], []
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for stream in streams[:POKES]:
            person = stream.person
            body = _push_body(person)
            headers = {"Authorization": f"Bearer {person.token}"}
            sent = time.perf_counter()
            r = await http.post("/v1/sync/push", json=body, headers=headers)
            answered = time.perf_counter()
            if r.status_code != 200:
                raise RuntimeError(f"push answered {r.status_code}: {r.text[:300]}")
            await asyncio.wait_for(stream.poked.wait(), POKE_TIMEOUT_S)
            latencies.append(stream.poked_at - sent)
            answers.append(answered - sent)
    return latencies, answers


def _push_body(person: Person) -> dict[str, Any]:
    hlc = f"{time.time_ns() // 1_000_000:013d}-0000-{DEVICE}"
    return {
        "device_id": DEVICE,
        "batch_id": uuid.uuid4().hex,
        "schema_version": 1,
        "changes": [
            {
                "table": "contacts",
                "id": f"c-{uuid.uuid4().hex}",
                "hlc": hlc,
                "fields": {"display_name": "Sam"},
            }
        ],
    }


async def _close_all(streams: list[Stream]) -> None:
    for stream in streams:
        if stream.task is not None:
            stream.task.cancel()
        stream.writer.close()
    await asyncio.gather(*(s.task for s in streams if s.task), return_exceptions=True)


def _memory_result(
    n: int, resting: int, held: int, peak: int, opened_s: float, exact: bool
) -> Result:
    per_stream_kib = (held - resting) / n / 1024
    return Result(
        f"SSE: {n:,} idle streams in one API process (streams per GB of RSS)",
        n / (held / 1e9),
        TARGET_STREAMS / (TARGET_MB / 1000),
        "streams/GB",
        1.0,
        (
            f"SSE — {n:,} streams opened (each got its first event) in {opened_s:.1f} s; API "
            f"RSS (Granian supervisor + worker) {resting / 1e6:.0f} MB before, "
            f"{held / 1e6:.0f} MB holding them (≈ {per_stream_kib:.1f} KiB per stream), "
            f"peak {peak / 1e6:.0f} MB"
            + ("" if exact else " (peak since start: could not reset the high-water mark)")
            + f"; target: {TARGET_STREAMS:,} streams under {TARGET_MB} MB",
        ),
    )


def _poke_result(latencies: list[float], answers: list[float]) -> Result:
    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return Result(
        "SSE poke: push sent → its device's stream says change (1/p95 vs 1/1 s)",
        1000 / p95,
        1.0,
        "per s",
        1.0,
        (
            f"SSE poke — {len(ms)} pushes to different spaces while all streams were open: "
            f"median {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms, max {ms[-1]:.1f} ms "
            f"from sending the push (the push itself answered in a median "
            f"{statistics.median(answers) * 1000:.1f} ms)",
        ),
    )

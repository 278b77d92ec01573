"""What the event-stream and no-change-pull tests share: extra API instances, a TCP proxy
that counts what the API sends to PostgreSQL or plays a Redis outage, and a tiny SSE reader.

The proxy runs on its own thread and event loop, so it keeps forwarding while a test (or a
fixture) blocks; the API instances are real ``kith api`` processes (Granian), configured
through the environment like the session's ``live_server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx

__all__ = [
    "ApiInstance",
    "SseEvent",
    "SseReader",
    "TcpProxy",
    "api_instance",
    "free_port",
    "proxied_url",
    "refused_redis_url",
]

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def refused_redis_url() -> str:
    """A Redis URL where nothing listens: every connection is refused at once."""
    return f"redis://127.0.0.1:{free_port()}/0"


# -- the proxy ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Upstream:
    host: str | None = None
    port: int = 0
    unix_path: str | None = None


class TcpProxy:
    """Forward 127.0.0.1:``port`` to ``upstream``; count the bytes clients send; ``cut()``
    drops every connection and refuses new ones until ``restore()``; while ``stalled``,
    connections stay open but nothing gets through either way (a hung server or network)."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.sent_upstream = 0  # bytes from clients towards the server
        self.stalled = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self.restore()
        return self

    def __exit__(self, *_: object) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def cut(self) -> None:
        self._call(self._cut())

    def restore(self) -> None:
        self._call(self._listen())

    def _call(self, work: Any) -> None:
        asyncio.run_coroutine_threadsafe(work, self._loop).result(10)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", self.port, reuse_address=True
            )

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        u = self.upstream
        if u.unix_path is not None:
            return await asyncio.open_unix_connection(u.unix_path)
        return await asyncio.open_connection(u.host, u.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await self._open_upstream()
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer, count=True),
            self._pipe(up_reader, writer, count=False),
            return_exceptions=True,
        )
        self._writers -= {writer, up_writer}

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, count: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if self.stalled:
                    continue  # swallowed: the other side hears nothing
                if count:
                    self.sent_upstream += len(data)
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()


def proxied_url(url: str) -> tuple[Upstream, Any]:
    """The upstream of a ``postgresql://`` or ``redis://`` URL, and a function giving the
    same URL pointed at a proxy's port (the socket directory of an embedded PostgreSQL is
    replaced by TCP to the proxy)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if "host" in query:  # postgresql://user@/db?host=/socket/dir
        port = parts.port or 5432
        upstream = Upstream(unix_path=f"{query['host'][0]}/.s.PGSQL.{port}")
    else:
        upstream = Upstream(parts.hostname or "127.0.0.1", parts.port or 0)

    def at(proxy_port: int) -> str:
        user = parts.username or ""
        auth = f"{user}:{parts.password}@" if parts.password else (f"{user}@" if user else "")
        return urlunsplit((parts.scheme, f"{auth}127.0.0.1:{proxy_port}", parts.path, "", ""))

    return upstream, at


# -- API instances --------------------------------------------------------------------------


@dataclass
class ApiInstance:
    base_url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def api_instance(name: str, env: dict[str, str], **overrides: str) -> Iterator[ApiInstance]:
    """Another ``kith api`` process (same database and keys as ``env`` unless overridden)."""
    port = free_port()
    OUTPUT.mkdir(exist_ok=True)
    log_path = OUTPUT / f"api-{name}.log"
    full = {**env, **overrides, "KITH_PORT": str(port)}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "api"],
            env=full,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_live(base, proc, log_path)
            yield ApiInstance(base, log_path, proc)
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _wait_live(base: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/health/live", timeout=1).status_code == 200:
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"API did not start; see {log_path}")
        time.sleep(0.1)


# -- reading an event stream ----------------------------------------------------------------


@dataclass
class SseEvent:
    event: str | None = None
    data: str | None = None
    id: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    def json(self) -> Any:
        assert self.data is not None
        return json.loads(self.data)


class SseReader:
    """Parse ``text/event-stream`` from an httpx streaming response, one event at a time
    (comments and ``retry:`` are kept on the event they precede or end)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines: AsyncIterator[str] = response.aiter_lines()

    async def next(self, within_s: float = 5.0) -> SseEvent | None:
        """The next event (or comment block); None when the stream ended."""
        return await asyncio.wait_for(self._next(), within_s)

    async def _next(self) -> SseEvent | None:
        event = SseEvent()
        seen = False
        async for line in self._lines:
            if line == "":
                if seen:
                    return event
                continue
            seen = True
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                event.comments.append(value)
            elif name == "event":
                event.event = value
            elif name == "data":
                event.data = value if event.data is None else f"{event.data}\n{value}"
            elif name == "id":
                event.id = value
            elif name == "retry":
                event.retry = int(value)
        return event if seen else None

    async def until(self, kind: str, within_s: float = 5.0) -> SseEvent:
        """Skip heartbeats and other events until one of type ``kind`` arrives."""
        deadline = time.monotonic() + within_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind!r} event within {within_s} s")
            event = await self.next(left)
            if event is None:
                raise AssertionError(f"the stream ended before a {kind!r} event")
            if event.event == kind:
                return event

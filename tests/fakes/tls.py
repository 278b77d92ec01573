"""TLS for the push fakes: a throwaway CA, a server certificate, and the HTTP/2 server.

``make_certs(directory)`` writes ``ca.pem`` (the CA a client trusts), ``server.pem`` and
``server-key.pem`` (a P-256 certificate for ``127.0.0.1`` and ``localhost``, SAN IP + DNS).

``FakeServer`` is what the fakes share: Hypercorn serving an ASGI app over TLS with ALPN
``h2`` (and ``http/1.1``) in the current event loop, on a port the OS picks unless one is
given; ``start()`` / ``stop()`` or ``async with``; ``url`` and ``ca_file``. ``run_process``
is the ``python -m tests.fakes.<name>`` entry point: it prints one ``READY {json}`` line
once the server listens and runs until SIGTERM / SIGINT.

Subclasses implement :meth:`FakeServer.handle` (one HTTP request). ``respond`` and
``read_body`` are the tiny ASGI helpers they use; nothing else runs per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import ipaddress
import json
import logging
import signal
import socket
import sys
import tempfile
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypercorn.asyncio import serve
from hypercorn.config import Config
from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGISendCallable,
    HTTPScope,
    Scope,
)

__all__ = [
    "CertPaths",
    "FakeServer",
    "Scripts",
    "make_certs",
    "read_body",
    "respond",
    "run_process",
    "wait_for_disconnect_or",
]

T = TypeVar("T")

GRACEFUL_S = 1.0  # how long stop() lets answers in flight finish

CA_FILE = "ca.pem"
CERT_FILE = "server.pem"
KEY_FILE = "server-key.pem"


@dataclass(frozen=True, slots=True)
class CertPaths:
    directory: Path
    ca_file: Path  # trust this on the client
    cert_file: Path  # the server's certificate (leaf only)
    key_file: Path  # the server's private key (PKCS#8, unencrypted)


def make_certs(
    directory: str | Path,
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    *,
    reuse: bool = True,
) -> CertPaths:
    """Write a throwaway CA and a server certificate for ``hosts`` into ``directory``.

    With ``reuse`` (the default) files already there are kept, so a benchmark and the
    fake it starts in another process can point at the same directory.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = CertPaths(d, d / CA_FILE, d / CERT_FILE, d / KEY_FILE)
    # Two fakes started at once on one directory must not write two different CAs.
    with (d / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if reuse and all(p.exists() for p in (paths.ca_file, paths.cert_file, paths.key_file)):
            return paths
        _write_certs(paths, hosts)
    return paths


def _write_certs(paths: CertPaths, hosts: Sequence[str]) -> None:

    now = dt.datetime.now(dt.UTC)
    not_before, not_after = now - dt.timedelta(hours=1), now + dt.timedelta(days=30)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Kith test push CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    paths.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths.key_file.chmod(0o600)


# --- ASGI helpers -------------------------------------------------------------------


async def read_body(receive: ASGIReceiveCallable, limit: int) -> tuple[bytes, int] | None:
    """The request body and its full size, or ``None`` if the client went away. Past
    ``limit`` bytes the rest is drained but not kept, so a huge body costs no memory."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.request":
            body = message["body"]
            if size <= limit:
                chunks.append(body)
            size += len(body)
            if not message["more_body"]:
                break
        elif message["type"] == "http.disconnect":
            return None
    return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), size


async def respond(
    send: ASGISendCallable,
    status: int,
    body: bytes = b"",
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    hdrs = list(headers)
    if body:
        hdrs.append((b"content-type", b"application/json"))
    hdrs.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def wait_for_disconnect_or(receive: ASGIReceiveCallable, event: asyncio.Event) -> bool:
    """Wait until the client drops the stream (``False``) or ``event`` is set (``True``).
    Call only after the body was read: then ``receive`` yields nothing but a disconnect."""
    released = asyncio.ensure_future(event.wait())
    dropped = asyncio.ensure_future(receive())
    try:
        await asyncio.wait((released, dropped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (released, dropped):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(released, dropped, return_exceptions=True)
    return event.is_set()


class Scripts(Generic[T]):
    """Scripted answers, FIFO, per device token or global; per-token ones go first.
    Each entry is given ``times`` times, then dropped."""

    def __init__(self) -> None:
        self._per_token: dict[str, deque[list[Any]]] = {}
        self._global: deque[list[Any]] = deque()

    def add(self, token: str | None, answer: T, times: int = 1) -> None:
        if times < 1:
            raise ValueError("times must be >= 1")
        queue = self._global if token is None else self._per_token.setdefault(token, deque())
        queue.append([answer, times])

    def take(self, token: str) -> T | None:
        if not self._global and not self._per_token:  # the benchmark's path: nothing scripted
            return None
        queue = self._per_token.get(token)
        if not queue:
            queue = self._global
            if not queue:
                return None
        entry = queue[0]
        entry[1] -= 1
        if entry[1] == 0:
            queue.popleft()
            if not queue and queue is not self._global:
                del self._per_token[token]
        answer: T = entry[0]
        return answer

    def clear(self) -> None:
        self._per_token.clear()
        self._global.clear()

    def __len__(self) -> int:
        queues = [self._global, *self._per_token.values()]
        return sum(entry[1] for q in queues for entry in q)


# --- the server -----------------------------------------------------------------------


class FakeServer:
    """Hypercorn over TLS (ALPN h2 + http/1.1) around :meth:`handle`, in this event loop.

    ``max_concurrent_streams`` is what the server advertises in its HTTP/2 SETTINGS.
    Hypercorn's default cap of 1000 requests per connection is lifted and idle connections
    are kept ``keep_alive_s``, so one connection carries a whole benchmark.
    """

    name = "fake"

    def __init__(
        self,
        *,
        cert_dir: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_concurrent_streams: int = 1000,
        keep_alive_s: float = 600.0,
    ) -> None:
        self.host = host
        self._want_port = port
        self._cert_dir = Path(cert_dir) if cert_dir is not None else None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._max_streams = max_concurrent_streams
        self._keep_alive_s = keep_alive_s
        self._certs: CertPaths | None = None
        self._port: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._shutdown: asyncio.Event | None = None
        self._started: asyncio.Event | None = None
        # Set on stop(): releases the streams a script told never to answer.
        self._release: asyncio.Event | None = None

    # -- what subclasses implement

    async def handle(
        self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        """Counters served at ``GET /_fake/stats`` (for a fake running as a process)."""
        return {}

    # -- public surface

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError(f"{self.name} is not started")
        return f"https://{self.host}:{self._port}"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._port

    @property
    def ca_file(self) -> Path:
        if self._certs is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._certs.ca_file

    @property
    def released(self) -> asyncio.Event:
        """Set when the server stops; ``never_answer`` streams wait for it."""
        if self._release is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._release

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"{self.name} already started")
        if self._cert_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"kith-{self.name}-")
            self._cert_dir = Path(self._tmp.name)
        self._certs = make_certs(self._cert_dir)

        # Bind (and listen) here so the port is known before Hypercorn runs; Hypercorn
        # adopts the descriptor through its ``fd://`` bind.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((self.host, self._want_port))
            sock.listen(1024)
            self._port = int(sock.getsockname()[1])
        except BaseException:
            sock.close()
            raise

        config = Config()
        config.bind = [f"fd://{sock.detach()}"]
        config.certfile = str(self._certs.cert_file)
        config.keyfile = str(self._certs.key_file)
        config.alpn_protocols = ["h2", "http/1.1"]
        config.h2_max_concurrent_streams = self._max_streams
        config.keep_alive_timeout = self._keep_alive_s
        config.keep_alive_max_requests = 2**62
        config.graceful_timeout = GRACEFUL_S
        config.backlog = 1024
        config.accesslog = None
        config.errorlog = logging.getLogger(f"tests.fakes.{self.name}")

        self._shutdown = asyncio.Event()
        self._started = asyncio.Event()
        self._release = asyncio.Event()
        self._task = asyncio.create_task(
            serve(self._asgi, config, shutdown_trigger=self._shutdown.wait, mode="asgi"),
            name=f"{self.name}-server",
        )
        started = asyncio.ensure_future(self._started.wait())
        await asyncio.wait((started, self._task), return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            started.cancel()
            await self._task  # raises what made the server fail
            raise RuntimeError(f"{self.name} stopped while starting")

    async def stop(self) -> None:
        """Stop: release ``never_answer`` streams, let answers in flight finish, close.

        Hypercorn closes idle connections at once, but a TLS close waits for the client's
        close_notify, which an idle client (one that is not reading) never sends; after
        the graceful period such connections are cancelled. Close your clients first and
        ``stop`` returns in milliseconds."""
        task = self._task
        if task is None:
            return
        assert self._shutdown is not None
        assert self._release is not None
        self._shutdown.set()
        try:
            # Streams of connections the client just closed learn it within a few loop
            # turns; answering one of those instead can stall Hypercorn's shutdown.
            await asyncio.sleep(0.02)
            self._release.set()
            await asyncio.wait({task}, timeout=GRACEFUL_S + 0.5)
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, asyncio.InvalidStateError):
                await task
        finally:
            self._task = None
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None
                self._cert_dir = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- ASGI plumbing

    async def _asgi(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "http":
            if scope["path"] == "/_fake/stats" and scope["method"] == "GET":
                await respond(send, 200, json.dumps(self.stats()).encode())
                return
            await self.handle(scope, receive, send)
        elif scope["type"] == "lifespan":
            # Startup only. The lifespan task then ends when the server stops, so a stop
            # that had to cancel Hypercorn (see ``stop``) leaves no task behind.
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
                assert self._started is not None
                assert self._release is not None
                self._started.set()
                await self._release.wait()


def run_process(server: FakeServer) -> None:
    """Serve ``server`` until SIGTERM / SIGINT, after printing one line to stdout:
    ``READY {"url": ..., "ca_file": ..., "port": ..., "pid": ...}``. The fake's counters
    are at ``GET {url}/_fake/stats`` and are printed as ``STATS {json}`` on exit."""
    import os

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            ready = {"url": server.url, "ca_file": str(server.ca_file), "port": server.port}
            print("READY " + json.dumps({**ready, "pid": os.getpid()}), flush=True)
            await stop.wait()
        print("STATS " + json.dumps(server.stats()), flush=True)

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main())

"""A second engine for the push fakes: raw ``h2`` on an asyncio TLS server, no Hypercorn.

Hypercorn (ASGI, a task per stream, validation) costs the fake ~1.1 ms of CPU per request,
so a fake APNs tops out near 900 requests/s: slower than the client a benchmark measures.
This engine runs the same request handling in callbacks on an :class:`asyncio.Protocol`
around h2's state machine, for a few hundred microseconds per request.

:class:`H2FakeServer` is a :class:`~tests.fakes.tls.FakeServer` with an ``engine`` switch:
``"hypercorn"`` (the default; :meth:`FakeServer.handle` serves) or ``"h2"``
(:meth:`H2FakeServer.handle_h2` serves, synchronously, one complete request at a time; it
answers with :meth:`H2Request.respond`, later with :meth:`H2Request.respond_later`, or
holds the stream with :meth:`H2Request.hold`). ``GET /_fake/stats`` is served by both.

Differences from the Hypercorn engine, all irrelevant to a benchmark: ALPN ``h2`` only (no
HTTP/1.1), inbound headers are not validated (names are lower-cased), no ``date`` /
``server`` response headers, no keep-alive timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from hpack import HeaderTuple, NeverIndexedHeaderTuple

from tests.fakes.tls import GRACEFUL_S, FakeServer, make_certs

__all__ = ["Engine", "H2FakeServer", "H2Request"]

Engine = Literal["hypercorn", "h2"]

_WINDOW = 1 << 20  # receive windows: never make a client wait to send a body
_CLOSE_WAIT_S = 0.5  # stop(): how long a TLS close may take before the socket is aborted
_STATUS = {code: str(code).encode() for code in range(100, 600)}

_Header = HeaderTuple | tuple[bytes, bytes]


class _H2Connection(h2.connection.H2Connection):
    """h2 walks all its streams to count the open ones each time a stream opens (and
    drops closed ones only then); here each stream is dropped once closed (:meth:`forget`,
    as h2 does), so the count is the size of the table."""

    @property
    def open_inbound_streams(self) -> int:
        return len(self.streams)

    def forget(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None and stream.closed:
            del self.streams[stream_id]
            self._closed_streams[stream_id] = stream.closed_by


class H2Request:
    """One complete request: ``method``, ``path`` (percent-decoded, no query),
    ``headers`` (``host`` first, from ``:authority``, then the rest; no pseudo-headers,
    as Hypercorn gives them), ``body`` (at most ``max_body`` bytes kept) and ``size``."""

    __slots__ = (
        "_chunks",
        "_conn",
        "_on_end",
        "body",
        "headers",
        "method",
        "path",
        "size",
        "stream_id",
    )

    def __init__(
        self,
        conn: _Connection,
        stream_id: int,
        method: str,
        path: str,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        self._conn = conn
        self.stream_id = stream_id
        self.method = method
        self.path = path
        self.headers = headers
        self.body = b""
        self.size = 0
        self._chunks: list[bytes] = []
        self._on_end: Callable[[bool], None] | None = None

    def respond(
        self, status: int, body: bytes = b"", headers: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        """Answer (``content-type: application/json`` when there is a body, and
        ``content-length``, as ``tls.respond`` does). A no-op if the stream is gone."""
        self._conn.respond(self, status, body, headers)

    def respond_later(
        self,
        delay_s: float,
        status: int,
        body: bytes = b"",
        headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        self._conn.loop.call_later(delay_s, self._conn.respond, self, status, body, headers)

    def hold(self, on_end: Callable[[bool], None]) -> None:
        """Leave the stream unanswered until the server stops (``on_end(True)``: answer
        now, with :meth:`respond`) or the client resets it or goes away
        (``on_end(False)``)."""
        self._on_end = on_end
        self._conn.server_held.add(self)

    @property
    def held(self) -> bool:
        return self._on_end is not None

    def end_hold(self, released: bool) -> None:
        """(The engine's side of :meth:`hold`.)"""
        on_end, self._on_end = self._on_end, None
        self._conn.server_held.discard(self)
        if on_end is not None:
            on_end(released)


class _Connection(asyncio.Protocol):
    def __init__(self, server: H2FakeServer, max_streams: int, max_body: int) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.max_body = max_body
        self.server_held = server._h2_held
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
        )
        self.h2 = _H2Connection(config=config)
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 1 << 16,
            },
        )
        self.transport: asyncio.Transport | None = None
        self.requests: dict[int, H2Request] = {}  # open streams not answered yet
        self.complete: set[int] = set()  # of those, the ones whose request was handled
        self.blocked: dict[int, memoryview] = {}  # answer bodies waiting for a window
        self.sent: dict[bytes, bytes] = {}  # response header name -> last value sent
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self._flush_scheduled = False

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        tls = transport.get_extra_info("ssl_object")
        if tls is None or tls.selected_alpn_protocol() != "h2":
            transport.abort()
            return
        self.server._h2_connections.add(self)
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(_WINDOW)
        self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.flush()  # the GOAWAY h2 queued
            if self.transport is not None:
                self.transport.close()
            return
        requests = self.requests
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self._request(event)
            elif isinstance(event, h2.events.DataReceived):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                req = requests.get(event.stream_id)
                if req is not None:
                    if req.size <= self.max_body:
                        req._chunks.append(event.data)
                    req.size += len(event.data)
            elif isinstance(event, h2.events.StreamEnded):
                req = requests.get(event.stream_id)
                if req is not None:
                    req.body = b"".join(req._chunks)
                    req._chunks = []
                    self.complete.add(event.stream_id)
                    self.server._dispatch_h2(req)
            elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
                if self.blocked:
                    for stream_id in list(self.blocked):
                        self._pump(stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self._drop(event.stream_id)
            elif isinstance(event, h2.events.ConnectionTerminated) and self.transport:
                self.transport.close()
        self.flush()

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        for stream_id in list(self.requests):
            self._drop(stream_id)
        self.blocked.clear()
        self.server._h2_connections.discard(self)
        if not self.lost.done():
            self.lost.set_result(None)

    # -- requests

    def _request(self, event: h2.events.RequestReceived) -> None:
        method, path, authority = "", "", b""
        headers: list[tuple[bytes, bytes]] = [(b"host", b"")]
        for name, value in event.headers:
            if name[:1] == b":":
                if name == b":method":
                    method = value.decode("latin-1")
                elif name == b":path":
                    path = value.decode("latin-1")
                elif name == b":authority":
                    authority = value
            else:
                headers.append((name.lower(), value))
        headers[0] = (b"host", authority)
        path = path.partition("?")[0]
        if "%" in path:
            path = unquote(path)
        self.requests[event.stream_id] = H2Request(self, event.stream_id, method, path, headers)

    def _drop(self, stream_id: int) -> None:
        """The client reset the stream or went away."""
        self.h2.forget(stream_id)
        self.complete.discard(stream_id)
        self.blocked.pop(stream_id, None)
        req = self.requests.pop(stream_id, None)
        if req is not None and req.held:
            req.end_hold(False)

    def respond(
        self,
        req: H2Request,
        status: int,
        body: bytes,
        headers: Iterable[tuple[bytes, bytes]],
    ) -> None:
        stream_id = req.stream_id
        if self.requests.pop(stream_id, None) is None:
            return  # reset by the client, or the connection is gone
        self.complete.discard(stream_id)
        block: list[_Header] = [(b":status", _STATUS.get(status) or str(status).encode())]
        sent = self.sent
        for name, value in headers:
            if sent.get(name) == value:
                block.append((name, value))
            else:  # a value that changes (apns-id): keep it out of the HPACK table
                sent[name] = value
                block.append(NeverIndexedHeaderTuple(name, value))
        if body:
            block.append((b"content-type", b"application/json"))
        block.append((b"content-length", str(len(body)).encode()))
        try:
            self.h2.send_headers(stream_id, block, end_stream=not body)
            if body:
                self.blocked[stream_id] = memoryview(body)
                self._pump(stream_id)
            else:
                self.h2.forget(stream_id)
        except h2.exceptions.ProtocolError:
            return
        self.schedule_flush()

    def _pump(self, stream_id: int) -> None:
        h2c = self.h2
        data = self.blocked[stream_id]
        while data:
            n = min(
                len(data), h2c.local_flow_control_window(stream_id), h2c.max_outbound_frame_size
            )
            if n <= 0:
                self.blocked[stream_id] = data
                return
            h2c.send_data(stream_id, data[:n], end_stream=n == len(data))
            data = data[n:]
        del self.blocked[stream_id]
        h2c.forget(stream_id)

    @property
    def answering(self) -> bool:
        """Whether a handled request still waits for its (possibly delayed) answer."""
        return any(not self.requests[s].held for s in self.complete)

    def close(self) -> None:
        """GOAWAY and close (answers already queued go out first)."""
        if self.transport is None or self.transport.is_closing():
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.close_connection(last_stream_id=self.h2.highest_inbound_stream_id)
        self.flush()
        self.transport.close()

    # -- writing

    def schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class H2FakeServer(FakeServer):
    """A :class:`FakeServer` that serves with Hypercorn or, with ``engine="h2"``, with
    the raw h2 engine above (subclasses then implement :meth:`handle_h2`). ``max_body``:
    the body bytes a request keeps (the rest is counted in ``size``, not stored)."""

    def __init__(
        self,
        *,
        engine: Engine = "hypercorn",
        max_body: int = 1 << 20,
        cert_dir: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_concurrent_streams: int = 1000,
        keep_alive_s: float = 600.0,
    ) -> None:
        if engine not in ("hypercorn", "h2"):
            raise ValueError(f"engine must be 'hypercorn' or 'h2', not {engine!r}")
        super().__init__(
            cert_dir=cert_dir,
            host=host,
            port=port,
            max_concurrent_streams=max_concurrent_streams,
            keep_alive_s=keep_alive_s,
        )
        self.engine: Engine = engine
        self._max_body = max_body
        self._h2_server: asyncio.Server | None = None
        self._h2_connections: set[_Connection] = set()
        self._h2_held: set[H2Request] = set()

    def handle_h2(self, request: H2Request) -> None:
        """Serve one complete request (engine ``"h2"``): answer, delay or hold it."""
        raise NotImplementedError

    def _dispatch_h2(self, request: H2Request) -> None:
        if request.path == "/_fake/stats" and request.method == "GET":
            request.respond(200, json.dumps(self.stats()).encode())
        else:
            self.handle_h2(request)

    async def start(self) -> None:
        if self.engine == "hypercorn":
            await super().start()
            return
        if self._h2_server is not None:
            raise RuntimeError(f"{self.name} already started")
        if self._cert_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"kith-{self.name}-")
            self._cert_dir = Path(self._tmp.name)
        self._certs = make_certs(self._cert_dir)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self._certs.cert_file, self._certs.key_file)
        context.set_alpn_protocols(["h2"])

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._want_port))
            sock.listen(1024)
            self._port = int(sock.getsockname()[1])
            max_streams, max_body = self._max_streams, self._max_body
            self._release = asyncio.Event()
            self._h2_server = await asyncio.get_running_loop().create_server(
                lambda: _Connection(self, max_streams, max_body), sock=sock, ssl=context
            )
        except BaseException:
            sock.close()
            raise

    async def stop(self) -> None:
        """Stop accepting; answer held streams (their ``on_end(True)``); give delayed
        answers up to ``GRACEFUL_S`` to go out; GOAWAY and close every connection, aborting
        those whose TLS close does not finish promptly."""
        if self.engine == "hypercorn":
            await super().stop()
            return
        server = self._h2_server
        if server is None:
            return
        self._h2_server = None
        try:
            server.close()
            assert self._release is not None
            self._release.set()
            for request in list(self._h2_held):
                request.end_hold(True)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + GRACEFUL_S
            while any(c.answering for c in self._h2_connections) and loop.time() < deadline:
                await asyncio.sleep(0.01)
            connections = list(self._h2_connections)
            for conn in connections:
                conn.close()
            if connections:
                await asyncio.wait([c.lost for c in connections], timeout=_CLOSE_WAIT_S)
            for conn in connections:
                if not conn.lost.done() and conn.transport is not None:
                    conn.transport.abort()
            await server.wait_closed()
        finally:
            self._h2_connections.clear()
            self._h2_held.clear()
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None
                self._cert_dir = None

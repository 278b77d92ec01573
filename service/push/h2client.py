"""A small asyncio HTTP/2 client on the ``h2`` state machine, for APNs (usable for FCM).

Why not httpx: its HTTP/2 path costs ~1.9 ms of CPU per request (measured through
:class:`~service.push.apns.APNsProvider`), which caps one worker near 500 sends/s; APNs
wants many concurrent streams on one connection, cheaply. httpx also leaves a stream it
gave up on (timeout) open, so the server keeps it counted against MAX_CONCURRENT_STREAMS.

What this does, per connection (``connections`` of them, used round-robin, each opened
lazily over TLS with ALPN ``h2`` and kept):

- at most the server's SETTINGS_MAX_CONCURRENT_STREAMS streams; more requests wait for a
  free stream, first come first served;
- flow control both ways: received data is acknowledged (h2 batches WINDOW_UPDATEs), and
  a request body larger than the peer's window is sent as the window opens;
- one deadline per request, covering connecting, waiting for a stream, sending and the
  answer; on expiry the stream is reset (RST_STREAM CANCEL) so the server frees it, and
  :class:`H2Timeout` is raised;
- GOAWAY: requests on streams above ``last_stream_id`` fail with a retriable
  :class:`H2ConnectionError`, the others may still finish, new requests go to a new
  connection; a lost connection fails its requests with :class:`H2ConnectionError` and
  the next request reconnects. PINGs are answered (h2 queues the ACK; it is flushed).

Cheap per request: header validation/normalisation is off (names must be lower-case ASCII,
as HTTP/2 requires; this client lower-cases them); HPACK literals are not Huffman-coded; a
header whose value differs from the last one sent under that name (the device token in
the path, ``apns-id``...) is sent never-indexed, so the dynamic table keeps only values
that repeat (``authorization``, ``apns-topic``...); everything queued in one event-loop
turn goes out in one TLS write.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.connection import ConnectionState
from h2.errors import ErrorCodes
from h2.events import Event
from hpack import Encoder, HeaderTuple, NeverIndexedHeaderTuple
from hyperframe.frame import Frame, GoAwayFrame

__all__ = ["H2Client", "H2ConnectionError", "H2Error", "H2Response", "H2StreamReset", "H2Timeout"]

#: Our receive windows: answers are small, but never make the server wait for a window.
_STREAM_WINDOW = 1 << 20
_CONNECTION_WINDOW = 16 << 20
_CLOSE_WAIT_S = 1.0  # aclose(): how long a TLS close may take before the socket is aborted

_Header = HeaderTuple | tuple[str, str]


class H2Error(Exception):
    """An HTTP/2 request failed without an answer. ``retriable``: the server certainly did
    not process it (it may be sent again as is)."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class H2Timeout(H2Error):
    """No complete answer within the request's deadline (the stream was reset)."""


class H2ConnectionError(H2Error):
    """Could not connect, the connection was lost, or the server sent GOAWAY before it
    processed this stream (then ``retriable``)."""


class H2StreamReset(H2Error):
    """The server reset the stream (RST_STREAM). REFUSED_STREAM is retriable."""

    def __init__(self, error_code: int) -> None:
        name = error_code.name if isinstance(error_code, ErrorCodes) else str(error_code)
        super().__init__(
            f"stream reset by the server ({name})",
            retriable=error_code == ErrorCodes.REFUSED_STREAM,
        )
        self.error_code = int(error_code)


@dataclass(frozen=True, slots=True)
class H2Response:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes


class _PlainEncoder(Encoder):
    """HPACK without Huffman coding: saves ~40 us per request in pure-Python hpack (and
    the server's decoding); the few extra bytes on the wire do not matter here."""

    def encode(
        self,
        headers: Iterable[
            HeaderTuple
            | tuple[bytes | str, bytes | str]
            | tuple[bytes | str, bytes | str, bool | None]
        ]
        | dict[bytes | str, bytes | str],
        huffman: bool = True,
    ) -> bytes:
        return super().encode(headers, huffman=False)


class _H2Connection(h2.connection.H2Connection):
    """Two changes to h2's connection.

    h2 counts open streams by walking every stream it holds, each time a stream opens, and
    drops closed ones only while it counts: O(streams in flight) per request (~10% of the
    client's CPU at 200 in flight, growing with more). Here the owner drops each stream as
    soon as it is closed (:meth:`forget`, as h2 does), so the streams left are the open ones.

    h2 closes its state machine on receiving GOAWAY and then refuses every frame, even the
    answers still owed on streams up to ``last_stream_id`` (python-hyper/h2#1181). Here
    the connection stays open for those; the owner opens no new stream after a GOAWAY.
    """

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list[Frame], list[Event]]:
        frames, events = super()._receive_goaway_frame(frame)
        if self.state_machine.state is ConnectionState.CLOSED:
            self.state_machine.state = ConnectionState.CLIENT_OPEN
        return frames, events

    @property
    def open_outbound_streams(self) -> int:
        return len(self.streams)

    def forget(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None and stream.closed:
            del self.streams[stream_id]
            # What h2 keeps of a closed stream: a late frame on a stream we reset is then
            # ignored rather than taken for a protocol error.
            self._closed_streams[stream_id] = stream.closed_by


class _Stream:
    __slots__ = ("body", "future", "headers", "pending")

    def __init__(self, future: asyncio.Future[H2Response]) -> None:
        self.future = future
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.pending: memoryview | None = None  # body bytes the peer's window held back


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a future's exception as seen (nobody may be waiting for it)."""
    if not future.cancelled():
        future.exception()


class _Connection(asyncio.Protocol):
    """One HTTP/2 connection: the h2 state machine between a TLS transport and futures."""

    def __init__(self, loop: asyncio.AbstractEventLoop, authority: str) -> None:
        self.loop = loop
        self.authority = authority
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
        )
        self.h2 = _H2Connection(config=config)
        self.h2.encoder = _PlainEncoder()
        self.h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _STREAM_WINDOW,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 1 << 16,
            },
        )
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, _Stream] = {}
        self.blocked: dict[int, _Stream] = {}  # streams whose body waits for a window
        self.active = 0  # streams in use or handed to a waiter; <= max_streams
        self.max_streams = 0  # the server's limit, known once its SETTINGS arrive
        self.waiters: deque[asyncio.Future[bool]] = deque()
        self.usable = False  # True from the server's SETTINGS until GOAWAY / loss / close
        self.ready: asyncio.Future[None] = loop.create_future()
        self.ready.add_done_callback(_retrieve)
        self.lost: asyncio.Future[None] = loop.create_future()
        self.sent: dict[str, str] = {}  # header name -> the value last sent under it
        self._flush_scheduled = False

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(_CONNECTION_WINDOW - 65_535)
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._flush()  # h2 queued a GOAWAY naming the error
            self._fail_all(f"HTTP/2 protocol error: {exc}")
            if self.transport is not None:
                self.transport.close()
            return
        streams = self.streams
        for event in events:
            if isinstance(event, h2.events.ResponseReceived):
                st = streams.get(event.stream_id)
                if st is not None:
                    st.headers = event.headers  # bytes: header_encoding=None
            elif isinstance(event, h2.events.StreamEnded):
                st = streams.pop(event.stream_id, None)
                if st is not None:
                    self._complete(event.stream_id, st)
            elif isinstance(event, h2.events.DataReceived):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                st = streams.get(event.stream_id)
                if st is not None:
                    st.body.append(event.data)
            elif isinstance(event, h2.events.WindowUpdated):
                if self.blocked:
                    self._unblock()
            elif isinstance(event, h2.events.StreamReset):
                self.h2.forget(event.stream_id)
                st = streams.pop(event.stream_id, None)
                if st is not None:
                    self.blocked.pop(event.stream_id, None)
                    if not st.future.done():
                        st.future.set_exception(H2StreamReset(event.error_code))
                    self._release()
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                self._settings_changed()
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._goaway(event)
            # Trailers, informational answers, pings (h2 queues the ACK), settings ACKs and
            # priority frames need nothing from us.
        self._flush()

    def eof_received(self) -> bool | None:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail_all(f"connection lost ({exc!r})" if exc else "connection closed by the server")
        if not self.lost.done():
            self.lost.set_result(None)

    # -- requests

    async def wait_for_stream(self) -> bool:
        """Wait (FIFO) until a stream slot is handed over: ``True``; ``False`` when this
        connection went away first (the request should use another one)."""
        waiter: asyncio.Future[bool] = self.loop.create_future()
        self.waiters.append(waiter)
        try:
            return await waiter
        except BaseException:
            if not waiter.done():
                self.waiters.remove(waiter)
            elif not waiter.cancelled() and waiter.result():
                self._release()  # handed a slot just as we were cancelled: give it back
            raise

    async def exchange(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> H2Response | None:
        """One request on a slot already counted in ``active``. ``None``: this connection
        cannot open more streams (try another); the slot was given back."""
        h2c = self.h2
        try:
            stream_id = h2c.get_next_available_stream_id()
            h2c.send_headers(stream_id, self._header_block(method, path, headers), not body)
        except (h2.exceptions.NoAvailableStreamIDError, h2.exceptions.ProtocolError):
            self.usable = False  # stream ids used up, or closed under us: drain this one
            self.active -= 1
            self._wake_elsewhere()
            self._close_if_drained()
            return None
        except BaseException:  # e.g. a header that is not text: the caller's bug
            self._release()
            raise
        st = _Stream(self.loop.create_future())
        self.streams[stream_id] = st
        if body:
            self._send_body(stream_id, st, body)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
        try:
            return await st.future
        except BaseException:
            # Timed out or cancelled: reset the stream so the server frees it.
            if self.streams.pop(stream_id, None) is not None:
                self.blocked.pop(stream_id, None)
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    h2c.reset_stream(stream_id, ErrorCodes.CANCEL)
                h2c.forget(stream_id)
                self._schedule_flush()
                self._release()
            raise

    def _header_block(
        self, method: str, path: str, headers: list[tuple[str, str]]
    ) -> list[_Header]:
        sent = self.sent
        block: list[_Header] = [
            (":method", method),
            (":scheme", "https"),
            (":authority", self.authority),
        ]
        if sent.get(":path") == path:
            block.append((":path", path))
        else:
            sent[":path"] = path
            block.append(NeverIndexedHeaderTuple(":path", path))
        for name, value in headers:
            name = name.lower()  # noqa: PLW2901
            if sent.get(name) == value:
                block.append((name, value))
            else:
                sent[name] = value
                block.append(NeverIndexedHeaderTuple(name, value))
        return block

    def _send_body(self, stream_id: int, st: _Stream, body: bytes) -> None:
        h2c = self.h2
        size = len(body)
        if size <= h2c.max_outbound_frame_size and size <= h2c.local_flow_control_window(stream_id):
            h2c.send_data(stream_id, body, end_stream=True)
        else:
            st.pending = memoryview(body)
            self._pump(stream_id, st)

    def _pump(self, stream_id: int, st: _Stream) -> None:
        """Send as much of a held-back body as the windows allow."""
        h2c = self.h2
        data = st.pending
        while data:
            n = min(
                len(data),
                h2c.local_flow_control_window(stream_id),
                h2c.max_outbound_frame_size,
            )
            if n <= 0:
                st.pending = data
                self.blocked[stream_id] = st
                return
            h2c.send_data(stream_id, data[:n], end_stream=n == len(data))
            data = data[n:]
        st.pending = None
        self.blocked.pop(stream_id, None)

    def _unblock(self) -> None:
        for stream_id, st in list(self.blocked.items()):
            self._pump(stream_id, st)

    def _complete(self, stream_id: int, st: _Stream) -> None:
        if st.pending is not None:
            # Answered before the whole body went out (e.g. 413): stop sending.
            self.blocked.pop(stream_id, None)
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.reset_stream(stream_id, ErrorCodes.NO_ERROR)
        self.h2.forget(stream_id)
        future = st.future
        if not future.done():
            status = b""
            headers: dict[str, str] = {}
            for name, value in st.headers:
                if name[:1] != b":":
                    headers[name.decode("latin-1").lower()] = value.decode("latin-1")
                elif name == b":status":
                    status = value
            body = st.body
            if len(status) == 3 and status.isdigit():
                future.set_result(
                    H2Response(int(status), headers, body[0] if len(body) == 1 else b"".join(body))
                )
            else:
                future.set_exception(H2Error(f"malformed answer (:status {status!r})"))
        self._release()

    # -- slots

    def _release(self) -> None:
        """A stream finished: hand its slot to the next waiter, or close a drained
        connection."""
        self.active -= 1
        if self.usable:
            if self.waiters:
                self._wake()
        else:
            self._close_if_drained()

    def _wake(self) -> None:
        waiters = self.waiters
        while waiters and self.active < self.max_streams:
            waiter = waiters.popleft()
            if not waiter.done():
                self.active += 1
                waiter.set_result(True)

    def _wake_elsewhere(self) -> None:
        """Send every waiter to another connection."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(False)

    def _settings_changed(self) -> None:
        self.max_streams = self.h2.remote_settings.max_concurrent_streams
        if not self.ready.done():
            self.usable = True
            self.ready.set_result(None)
        if self.usable and self.waiters:
            self._wake()
        if self.blocked:
            self._unblock()  # the initial window size may have grown

    # -- ending

    def _goaway(self, event: h2.events.ConnectionTerminated) -> None:
        self.usable = False
        last = event.last_stream_id or 0
        code = event.error_code
        name = code.name if isinstance(code, ErrorCodes) else str(code)
        for stream_id in [s for s in self.streams if s > last]:
            st = self.streams.pop(stream_id)
            self.blocked.pop(stream_id, None)
            if not st.future.done():
                st.future.set_exception(
                    H2ConnectionError(f"GOAWAY ({name}) before this stream", retriable=True)
                )
            self.active -= 1
        self._wake_elsewhere()
        if not self.ready.done():
            self.ready.set_exception(H2ConnectionError(f"GOAWAY ({name}) on connect"))
        self._close_if_drained()  # else streams up to last_stream_id may still be answered

    def _close_if_drained(self) -> None:
        if not self.streams and self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.close_connection()
            self._flush()
            self.transport.close()

    def _fail_all(self, message: str) -> None:
        self.usable = False
        streams, self.streams = self.streams, {}
        self.blocked.clear()
        self.active -= len(streams)
        for st in streams.values():
            if not st.future.done():
                st.future.set_exception(H2ConnectionError(message))
        self._wake_elsewhere()
        if not self.ready.done():
            self.ready.set_exception(H2ConnectionError(message))

    def close(self) -> None:
        """Fail what is in flight, say GOAWAY, close (``lost`` resolves when closed)."""
        self._fail_all("the client was closed")
        if self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.close_connection()
            self._flush()
            self.transport.close()
        elif self.transport is None and not self.lost.done():
            self.lost.set_result(None)

    def abort(self) -> None:
        self._fail_all("connection aborted")
        if self.transport is not None:
            self.transport.abort()

    # -- writing

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class H2Client:
    """HTTP/2 requests to one origin (``https://host[:port]``) over ``connections``
    multiplexed TLS connections. ``verify``: ``True`` (system CAs), ``False`` (no
    verification), or an :class:`ssl.SSLContext` (its ALPN is set to ``h2``).
    ``connects`` counts the connections opened so far (reconnects included)."""

    def __init__(
        self,
        base_url: str,
        *,
        verify: ssl.SSLContext | bool = True,
        connect_timeout_s: float = 10.0,
        connections: int = 1,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme != "https" or not url.hostname:
            raise ValueError(f"need an https:// URL, got {base_url!r}")
        if connections < 1:
            raise ValueError("connections must be >= 1")
        self._host = url.hostname
        self._port = url.port or 443
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._authority = host if self._port == 443 else f"{host}:{self._port}"
        if isinstance(verify, ssl.SSLContext):
            self._ssl = verify
        else:
            self._ssl = ssl.create_default_context()
            if not verify:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        self._connect_timeout_s = connect_timeout_s
        self._slots: list[_Connection | None] = [None] * connections
        self._open_connections: set[_Connection] = set()  # also those draining after GOAWAY
        self._connecting: list[asyncio.Task[_Connection] | None] = [None] * connections
        self._next = 0
        self._closed = False
        self.connects = 0

    async def request(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        timeout_s: float,
    ) -> H2Response:
        """Send one request and read the whole answer within ``timeout_s`` (connecting,
        waiting for a stream, sending, answer). Raises :class:`H2Timeout`,
        :class:`H2ConnectionError` or :class:`H2StreamReset`, never an HTTP status."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    if self._closed:
                        raise H2ConnectionError("the client is closed")
                    slot = self._next
                    if len(self._slots) > 1:
                        self._next = (slot + 1) % len(self._slots)
                    conn = self._slots[slot]
                    if conn is None or not conn.usable:
                        conn = await self._connection(slot)
                    if conn.active < conn.max_streams and not conn.waiters:
                        conn.active += 1
                    elif not await conn.wait_for_stream():
                        continue  # that connection went away before our turn
                    if not conn.usable:  # lost while we were being handed the slot
                        conn.active -= 1
                        continue
                    response = await conn.exchange(method, path, headers, body)
                    if response is not None:
                        return response
        except TimeoutError:
            raise H2Timeout(f"no complete answer within {timeout_s:g} s") from None

    async def _connection(self, slot: int) -> _Connection:
        task = self._connecting[slot]
        if task is None:
            task = asyncio.get_running_loop().create_task(self._open())
            self._connecting[slot] = task
            task.add_done_callback(lambda t: self._opened(slot, t))
        # Shielded: one request giving up must not abort the connect the others await.
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and (current is None or not current.cancelling()):
                raise H2ConnectionError("the client was closed") from None
            raise

    def _opened(self, slot: int, task: asyncio.Task[_Connection]) -> None:
        if self._connecting[slot] is task:
            self._connecting[slot] = None
        if task.cancelled() or task.exception() is not None:
            return
        conn = task.result()
        if self._closed:
            conn.close()
            return
        self._slots[slot] = conn  # the one it replaces is gone or draining

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        conn = _Connection(loop, self._authority)
        self._ssl.set_alpn_protocols(["h2"])
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await loop.create_connection(
                    lambda: conn,
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host,
                )
                assert conn.transport is not None
                tls = conn.transport.get_extra_info("ssl_object")
                if tls is None or tls.selected_alpn_protocol() != "h2":
                    raise H2ConnectionError(f"{self._authority} did not agree to HTTP/2 (ALPN)")
                await conn.ready  # the server's SETTINGS: its stream limit is known
                self.connects += 1
                self._open_connections.add(conn)
                conn.lost.add_done_callback(lambda _: self._open_connections.discard(conn))
        except H2ConnectionError:
            conn.abort()
            raise
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            conn.abort()
            raise H2ConnectionError(f"cannot connect to {self._authority}: {exc!r}") from exc
        except BaseException:
            conn.abort()
            raise
        return conn

    async def aclose(self) -> None:
        """Fail requests in flight (:class:`H2ConnectionError`), close the connections."""
        self._closed = True
        for task in self._connecting:
            if task is not None:
                task.cancel()
        conns = list(self._open_connections)
        self._slots = [None] * len(self._slots)
        for conn in conns:
            conn.close()
        if conns:
            await asyncio.wait([c.lost for c in conns], timeout=_CLOSE_WAIT_S)
            for conn in conns:
                if not conn.lost.done() and conn.transport is not None:
                    conn.transport.abort()

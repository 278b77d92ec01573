"""One Redis pub/sub connection per process, spoken directly (RESP2), with a read barrier.

Why not redis-py's ``PubSub``: it reconnects and resubscribes on its own, silently, so a
caller cannot tell that messages were lost in between — and everything built on this
connection (the seq memory behind the no-change pull, the session cache) is only true if
no message was missed. Here a reconnection is an event the owner sees (``on_state``) and
counts (:attr:`Subscription.epoch`).

The **barrier** (:meth:`Subscription.barrier`) is what makes the memory provable: it
sends ``PING`` on the subscribed connection and resolves on the matching ``pong``. Redis
answers in order on one connection, so once the pong is read, every message published
before the ``PING`` reached Redis — in particular every ``PUBLISH`` whose reply a writer
had received before our request began — has been handled. The barriers asked for during
one turn of the event loop share one ``PING``, sent at the end of that turn (so after
each of those requests began); PINGs are pipelined, so a request waits one round trip,
and under load the cost is one round trip per batch of requests, not per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = ["RespError", "Subscription", "redis_address"]

log = logging.getLogger("kith.realtime")

BARRIER_TIMEOUT_S = 1.0  # a barrier not answered by then fails (the caller uses PostgreSQL)
KEEPALIVE_S = 5.0  # PING an idle connection this often; two silent periods mean it is dead
CONNECT_TIMEOUT_S = 2.0
_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)

OnMessage = Callable[[bytes, bytes], None]
OnState = Callable[[bool], None]


class RespError(Exception):
    """Redis answered with an error, or with something this client does not expect."""


@dataclass(frozen=True, slots=True)
class RedisAddress:
    host: str | None
    port: int
    path: str | None  # a unix socket
    tls: bool
    username: str | None
    password: str | None


def redis_address(url: str) -> RedisAddress:
    """The parts of a ``redis://``, ``rediss://`` or ``unix://`` URL a subscriber needs
    (the database number does not matter: pub/sub is server-wide)."""
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss", "unix"}:
        raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r}")
    return RedisAddress(
        host=parts.hostname if parts.scheme != "unix" else None,
        port=parts.port or 6379,
        path=parts.path if parts.scheme == "unix" else None,
        tls=parts.scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _command(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


async def _read_reply(reader: asyncio.StreamReader, first: bytes | None = None) -> object:
    """One RESP2 reply (arrays, bulk and simple strings, integers; errors raise)."""
    line = first if first is not None else await reader.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("Redis closed the connection")
    kind, body = line[:1], line[1:-2]
    if kind == b"*":
        return [await _read_reply(reader) for _ in range(int(body))]
    if kind == b"$":
        size = int(body)
        return None if size < 0 else (await reader.readexactly(size + 2))[:-2]
    if kind == b":":
        return int(body)
    if kind == b"+":
        return body
    if kind == b"-":
        raise RespError(body.decode(errors="replace"))
    raise RespError(f"unexpected reply type {kind!r}")


class _Ping:
    """A barrier PING in flight and the requests waiting for its pong."""

    __slots__ = ("timer", "token", "waiters")

    def __init__(self, token: bytes, waiters: list[asyncio.Future[bool]]) -> None:
        self.token = token
        self.waiters = waiters
        self.timer: asyncio.TimerHandle | None = None

    def resolve(self, answered: bool) -> None:
        if self.timer is not None:
            self.timer.cancel()
        for future in self.waiters:
            if not future.done():
                future.set_result(answered)
        self.waiters = []


class Subscription:
    """Subscribe to ``channels`` and hand every message to ``on_message(channel, data)``,
    reconnecting with backoff until :meth:`close`. ``on_state(True)`` is called on each
    (re)subscription, ``on_state(False)`` when the connection is lost."""

    def __init__(
        self,
        url: str,
        channels: tuple[str, ...],
        on_message: OnMessage,
        on_state: OnState,
        *,
        keepalive_s: float = KEEPALIVE_S,
    ) -> None:
        self._address = redis_address(url)
        self._keepalive_s = keepalive_s
        self._heard = 0.0  # monotonic time of the last byte read
        self._silent = False  # the watchdog dropped the connection
        self._channels = [c.encode() for c in channels]
        self._on_message = on_message
        self._on_state = on_state
        self._writer: asyncio.StreamWriter | None = None
        self._batch: list[asyncio.Future[bool]] | None = None  # barriers of this loop turn
        self._inflight: deque[_Ping] = deque()  # PINGs sent, in order, awaiting pongs
        self._pings = 0
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.epoch = 0  # +1 per successful (re)subscription

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="kith-redis-subscription")

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._lost()

    # -- the barrier ---------------------------------------------------------------------

    def barrier(self) -> asyncio.Future[bool]:
        """A future that becomes True once every message published before this call has
        been handed to ``on_message``; False if that cannot be known (disconnected, or no
        answer within ``BARRIER_TIMEOUT_S``)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        if not self.connected:
            future.set_result(False)
            return future
        if self._batch is None:
            self._batch = []
            loop.call_soon(self._send_ping)  # once this turn's requests have all asked
        self._batch.append(future)
        return future

    def _send_ping(self) -> None:
        waiters, self._batch = self._batch or [], None
        ping = _Ping(b"", waiters)
        writer = self._writer
        if writer is None or writer.is_closing() or not self.connected:
            ping.resolve(False)
            return
        self._pings += 1
        ping.token = b"b%d" % self._pings
        writer.write(_command(b"PING", ping.token))
        ping.timer = asyncio.get_running_loop().call_later(BARRIER_TIMEOUT_S, ping.resolve, False)
        self._inflight.append(ping)

    def _pong(self, token: bytes) -> None:
        if token == b"k" or not self._inflight:
            return  # a keep-alive
        ping = self._inflight.popleft()  # Redis answers in order
        if ping.token != token:
            raise RespError("a pong out of order")
        ping.resolve(True)  # a no-op for requests that already gave up waiting

    def _fail_barriers(self) -> None:
        while self._inflight:
            self._inflight.popleft().resolve(False)

    # -- the connection ------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while not self._closed:
            try:
                reader = await self._connect()
                attempt = 0
                await self._read_loop(reader)
            except (OSError, EOFError, RespError, TimeoutError, ValueError) as exc:
                if attempt == 0 or attempt == len(_BACKOFF_S):
                    log.warning("Redis subscription unavailable: %s", type(exc).__name__)
            finally:
                self._lost()
            if self._closed:
                return
            await asyncio.sleep(_BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)])
            attempt += 1

    async def _connect(self) -> asyncio.StreamReader:
        a = self._address
        if a.path is not None:
            opening = asyncio.open_unix_connection(a.path)
        else:
            context = ssl.create_default_context() if a.tls else None
            opening = asyncio.open_connection(a.host, a.port, ssl=context)
        reader, writer = await asyncio.wait_for(opening, CONNECT_TIMEOUT_S)
        self._writer = writer
        if a.password is not None:
            auth = [b"AUTH", *([a.username.encode()] if a.username else []), a.password.encode()]
            writer.write(_command(*auth))
            await asyncio.wait_for(_read_reply(reader), CONNECT_TIMEOUT_S)
        writer.write(_command(b"SUBSCRIBE", *self._channels))
        for _ in self._channels:
            await asyncio.wait_for(_read_reply(reader), CONNECT_TIMEOUT_S)
        self.epoch += 1
        self.connected = True
        self._on_state(True)
        return reader

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        # No timeout per read (``wait_for`` costs a task and a timer per message, and every
        # no-change pull's barrier is a message): a watchdog checks for silence instead.
        self._heard = time.monotonic()
        self._silent = False
        watchdog = asyncio.create_task(self._watch(), name="kith-redis-keepalive")
        try:
            while True:
                first = await reader.readline()
                self._heard = time.monotonic()
                self._handle(await _read_reply(reader, first))
        finally:
            watchdog.cancel()
            if self._silent:
                raise TimeoutError("Redis stopped answering on the subscription")

    async def _watch(self) -> None:
        """PING a connection silent for ``keepalive_s``; drop one silent for two periods
        (the read loop then ends, and ``_run`` reconnects)."""
        while True:
            await asyncio.sleep(self._keepalive_s / 2)
            silent_for = time.monotonic() - self._heard
            writer = self._writer
            if writer is None:
                return
            if silent_for >= 2 * self._keepalive_s:
                self._silent = True
                writer.transport.abort()
                return
            if silent_for >= self._keepalive_s:
                writer.write(_command(b"PING", b"k"))

    def _handle(self, reply: object) -> None:
        if not isinstance(reply, list) or len(reply) < 2:
            raise RespError("unexpected reply on a subscribed connection")
        kind = reply[0]
        if kind == b"message" and len(reply) == 3:
            channel, data = reply[1], reply[2]
            if isinstance(channel, bytes) and isinstance(data, bytes):
                self._on_message(channel, data)
        elif kind == b"pong" and isinstance(reply[1], bytes):
            self._pong(reply[1])

    def _lost(self) -> None:
        was = self.connected
        self.connected = False
        self._fail_barriers()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if was:
            self._on_state(False)

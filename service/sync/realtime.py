"""Change notifications: every committed change is announced on Redis, and every API
process pokes its own connected devices (Server-Sent Events) and remembers each space's
latest sequence, so that a pull with nothing new needs no database at all.

Writers (``SyncService.push``/``server_write``, the insight evaluator) call, while holding
the space lock::

    announce(space, seq)   before COMMIT: raise kith:seq:{space} to seq and publish
                           {space, seq} on kith:announce (seq memory only)
    COMMIT
    publish(space, seq)    after COMMIT: publish {space, seq} on kith:changes (devices are
                           poked), raise the key if it exists (repairs a failed announcement)

The key only ever goes up, so it is always at least the space's committed ``seq``: a commit
is announced before anybody can read it. A reader that has seen the announcements up to
the moment its request began (``Realtime.latest``: a pub/sub barrier, or a ``GET`` of the
key) therefore knows a value no older than any commit that happened before the request,
and may answer "nothing new" when the cursor equals it. An announced commit that rolled
back leaves the key ahead of the database; then cursors never equal it and pulls take the
PostgreSQL path until the next commit reuses the number — slower, never wrong.

What is not provable: a writer that reaches PostgreSQL but not Redis commits without an
announcement. It retries the publish every second (that raises the key and pokes the
devices); until it gets through, processes that *can* reach Redis may answer "nothing new"
for that space. Keys and memory entries live ``SEQ_TTL_S`` after their last evidence, which
bounds that window even if the writer dies. A process that loses its subscription forgets
everything and uses PostgreSQL; after resubscribing it waits ``RECONNECT_GRACE_S`` (for
those republications) before trusting Redis again. When Redis is down for everyone — the
usual outage — every pull simply uses PostgreSQL.

Redis is an accelerator only: if it is down pushes succeed, pulls use PostgreSQL, streams
say ``{"realtime": false}`` and keep their heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field
from types import FrameType
from typing import Any

import asyncpg
import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from service.accounts.sessions import SessionCache
from service.infra.pubsub import Subscription
from service.store import accounts as account_store
from service.store import sync as sync_store

__all__ = [
    "ANNOUNCE_CHANNEL",
    "CHANNEL",
    "SEQ_TTL_S",
    "SESSIONS_CHANNEL",
    "ChangeNotifier",
    "EventStream",
    "Realtime",
    "seq_key",
]

CHANNEL = "kith:changes"  # committed: {space, seq} — poke the space's devices
ANNOUNCE_CHANNEL = "kith:announce"  # about to commit: {space, seq} — for the seq memory only
SESSIONS_CHANNEL = "kith:sessions"  # {user, device, keep?}: that device's sessions ended
_CHANNEL_BYTES = CHANNEL.encode()
_ANNOUNCE_BYTES = ANNOUNCE_CHANNEL.encode()
_SESSIONS_BYTES = SESSIONS_CHANNEL.encode()
SEQ_TTL_S = 60  # a seq key / memory entry is trusted this long after its last evidence
# After (re)subscribing, the seq memory and keys are trusted only this long later: writers
# that committed while Redis was away republish (repairing the key) within ~2 s of its return.
RECONNECT_GRACE_S = 3.0
MAX_SPACES = 200_000  # seq memory entries per process (then the oldest are forgotten)
_REDIS_TIMEOUT_S = 0.5  # a writer holding the space lock waits no longer for Redis
_BREAKER_S = 1.0  # after a failure, writers skip Redis this long (and repair later)
_MAX_REPAIRS = 10_000
_WARN_EVERY_S = 60.0
log = logging.getLogger("kith.realtime")


def seq_key(space_id: str) -> str:
    return f"kith:seq:{space_id}"


class _Change(msgspec.Struct):
    space: str
    seq: int


class _Revoked(msgspec.Struct, omit_defaults=True):
    user: str
    device: str
    keep: str | None = None  # a family of the device that stays live (a new login's)


_encode = msgspec.json.Encoder().encode
_decode_change = msgspec.json.Decoder(_Change).decode
_decode_revoked = msgspec.json.Decoder(_Revoked).decode

# Raise the key to ARGV[1] (creating it only if ARGV[3] == '1'), then publish ARGV[5] on
# ARGV[4] — atomically, so the channel is a faithful log of the key's increases.
_RAISE_AND_PUBLISH = """
local cur = tonumber(redis.call('GET', KEYS[1]))
local seq = tonumber(ARGV[1])
if (cur == nil and ARGV[3] == '1') or (cur ~= nil and seq > cur) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""
_GET_WITH_TTL = """
local v = redis.call('GET', KEYS[1])
if not v then return false end
return {v, redis.call('PTTL', KEYS[1])}
"""


# -- writers --------------------------------------------------------------------------------


class ChangeNotifier:
    """The writers' side: announce before commit, publish after, tell of revoked sessions.

    Never raises: a failure is logged, and a publish that could not be made is retried in
    the background (it is also the repair of a failed announcement)."""

    def __init__(self, client: aioredis.Redis, *, key_ttl_s: int = SEQ_TTL_S) -> None:
        self._redis = client
        self._script = client.register_script(_RAISE_AND_PUBLISH)
        self._ttl_ms = str(key_ttl_s * 1000)
        self._down_until = 0.0
        self._warned_at = -_WARN_EVERY_S
        self._repairs: dict[str, int] = {}
        self._repairer: asyncio.Task[None] | None = None

    async def announce(self, space_id: str, seq: int) -> None:
        """Before COMMIT, holding the space lock. On failure the commit goes ahead anyway
        (sync works without Redis); ``publish`` then repairs the key."""
        await self._raise(space_id, seq, ANNOUNCE_CHANNEL, create=True)

    async def publish(self, space_id: str, seq: int) -> None:
        """After COMMIT: poke the space's devices everywhere."""
        if not await self._raise(space_id, seq, CHANNEL, create=False):
            self._repair_later(space_id, seq)

    async def session_revoked(self, user_id: str, device_id: str, keep: str | None) -> None:
        try:
            await asyncio.wait_for(
                self._redis.publish(SESSIONS_CHANNEL, _encode(_Revoked(user_id, device_id, keep))),
                _REDIS_TIMEOUT_S,
            )
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("session revocation not published: %s", type(exc).__name__)

    async def close(self) -> None:
        if self._repairer is not None:
            self._repairer.cancel()

    async def _raise(self, space_id: str, seq: int, channel: str, *, create: bool) -> bool:
        if time.monotonic() < self._down_until:
            return False
        flag = "1" if create else "0"
        message = _encode(_Change(space_id, seq))
        args: list[int | str | bytes] = [seq, self._ttl_ms, flag, channel, message]
        try:
            await asyncio.wait_for(
                self._script(keys=[seq_key(space_id)], args=args), _REDIS_TIMEOUT_S
            )
        except (RedisError, OSError, TimeoutError) as exc:
            now = time.monotonic()
            self._down_until = now + _BREAKER_S
            if now - self._warned_at >= _WARN_EVERY_S:  # an outage logs once a minute
                self._warned_at = now
                log.warning(
                    "change notifications not published (%s): devices are not poked and "
                    "pulls use PostgreSQL until Redis answers",
                    type(exc).__name__,
                )
            return False
        return True

    def _repair_later(self, space_id: str, seq: int) -> None:
        if len(self._repairs) >= _MAX_REPAIRS:
            self._repairs.pop(next(iter(self._repairs)))  # the key's TTL covers it
        self._repairs[space_id] = max(seq, self._repairs.get(space_id, 0))
        if self._repairer is None or self._repairer.done():
            self._repairer = asyncio.create_task(self._repair(), name="kith-publish-repair")

    async def _repair(self) -> None:
        while self._repairs:
            await asyncio.sleep(_BREAKER_S)
            for space_id, seq in list(self._repairs.items()):
                if not await self._raise(space_id, seq, CHANNEL, create=False):
                    break
                if self._repairs.get(space_id) == seq:
                    del self._repairs[space_id]


# -- one connected device --------------------------------------------------------------------


@dataclass(eq=False, repr=False, slots=True)  # a stream is itself: hashed by identity
class EventStream:
    """What one open ``GET /v1/sync/events`` still has to tell its device. The process's
    :class:`Realtime` sets the flags and wakes it; the HTTP handler drains them."""

    user_id: str
    device_id: str
    space_id: str
    family_id: str
    _: KW_ONLY
    expires_at: float
    sent_seq: int | None  # the newest seq the device is known to have been told of
    realtime: bool
    ending: str | None = field(default=None, init=False)  # why: session_revoked, shutdown, …
    wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _poke: int | None = field(default=None, init=False)
    _status: bool = field(default=False, init=False)
    _heartbeat: bool = field(default=False, init=False)

    def poke(self, seq: int) -> None:
        if self.sent_seq is None or seq > self.sent_seq:
            self._poke = max(seq, self._poke or 0)
            self.wake.set()

    def status(self, realtime: bool) -> None:
        if realtime != self.realtime:
            self.realtime = realtime
            self._status = True
            self.wake.set()

    def heartbeat(self) -> None:
        self._heartbeat = True
        self.wake.set()

    def end(self, reason: str) -> None:
        if self.ending is None:
            self.ending = reason
        self.wake.set()

    def take_status(self) -> bool:
        due, self._status = self._status, False
        return due

    def take_poke(self) -> int | None:
        seq, self._poke = self._poke, None
        if seq is not None and (self.sent_seq is None or seq > self.sent_seq):
            self.sent_seq = seq
            return seq
        return None

    def take_heartbeat(self) -> bool:
        due, self._heartbeat = self._heartbeat, False
        return due


# -- one per API process ---------------------------------------------------------------------


class Realtime:
    """The process's one subscription to ``kith:changes`` and ``kith:sessions``: pokes the
    process's own streams, remembers each space's latest announced seq (for the no-change
    pull) and invalidates the session cache when a session ends anywhere."""

    def __init__(
        self,
        *,
        redis_url: str,
        client: aioredis.Redis,
        pool: asyncpg.Pool[Any],
        sessions: SessionCache,
        notifier: ChangeNotifier,
        heartbeat_s: float,
    ) -> None:
        self._redis = client
        self._get_seq = client.register_script(_GET_WITH_TTL)
        self._pool = pool
        self.sessions = sessions
        self._notifier = notifier
        self._heartbeat_s = heartbeat_s
        channels = (CHANNEL, ANNOUNCE_CHANNEL, SESSIONS_CHANNEL)
        self._sub = Subscription(redis_url, channels, self._on_message, self._on_state)
        self._seqs: dict[str, tuple[int, float]] = {}  # space -> (seq, trusted until)
        self._by_space: dict[str, set[EventStream]] = {}
        self._by_device: dict[tuple[str, str], set[EventStream]] = {}
        self._trust_from = 0.0  # monotonic time from which memory and keys may answer pulls
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._unhook: Callable[[], None] = lambda: None
        self.stopping = False

    async def start(self) -> None:
        self._sub.start()
        self._ticker = asyncio.create_task(self._tick_forever(), name="kith-sse-heartbeat")
        self._unhook = _on_shutdown_signal(asyncio.get_running_loop(), self.begin_shutdown)

    def begin_shutdown(self) -> None:
        """End every stream with a reconnect hint (and refuse to keep new ones open)."""
        self.stopping = True
        for stream in self.streams():
            stream.end("shutdown")

    async def stop(self) -> None:
        """End every stream, then drop the subscription."""
        self.begin_shutdown()
        self._unhook()
        if self._ticker is not None:
            self._ticker.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self._sub.close()

    @property
    def connected(self) -> bool:
        return self._sub.connected

    # -- the no-change pull -----------------------------------------------------------------

    async def latest(self, space_id: str) -> int | None:
        """A seq of ``space_id`` at least as new as every commit made before this call, or
        None when that cannot be known without PostgreSQL (Redis down, key unknown)."""
        sub = self._sub
        if not sub.connected or time.monotonic() < self._trust_from:
            return None
        epoch = sub.epoch
        entry = self._seqs.get(space_id)
        if entry is not None and entry[1] > time.monotonic():
            if not await sub.barrier():
                return None
            entry = self._seqs.get(space_id)
            return entry[0] if entry is not None and sub.epoch == epoch else None
        try:
            found = await asyncio.wait_for(self._get_seq(keys=[seq_key(space_id)]), 1.0)
        except (RedisError, OSError, TimeoutError):
            return None
        if not found:
            return None
        seq, ttl_ms = int(found[0]), int(found[1])
        if sub.connected and sub.epoch == epoch and ttl_ms > 0:
            self._learn(space_id, seq, ttl_ms / 1000)
        return seq

    async def learned(self, space_id: str, seq: int) -> None:
        """``seq`` was just read from PostgreSQL and Redis had no key: create it, unless a
        writer created one meanwhile (NX — a writer's value is never older than ours)."""
        if not self._sub.connected:
            return
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await asyncio.wait_for(
                self._redis.set(seq_key(space_id), seq, nx=True, px=SEQ_TTL_S * 1000), 1.0
            )

    async def committed_seq(self, space_id: str) -> int:
        """The space's committed seq, from PostgreSQL: what a (re)connecting stream is
        compared with. Not the seq memory — it may hold a number announced but not yet
        committed, and a poke for it would be spent before the change could be pulled."""
        return (await sync_store.space_position(self._pool, space_id)).seq

    def _learn(self, space_id: str, seq: int, ttl_s: float) -> None:
        until = time.monotonic() + ttl_s
        old = self._seqs.pop(space_id, None)
        if old is not None and old[0] > seq:
            seq, until = old  # never go back: an older message arrived late
        elif old is not None and old[0] == seq:
            until = max(until, old[1])
        self._seqs[space_id] = (seq, until)  # re-inserted: the dict's end is the newest
        if len(self._seqs) > MAX_SPACES:
            for key in list(self._seqs)[: MAX_SPACES // 10]:
                del self._seqs[key]

    # -- sessions ---------------------------------------------------------------------------

    async def session_revoked(self, user_id: str, device_id: str, keep: str | None = None) -> None:
        """A session of ``(user, device)`` ended here (logout, device removed, refresh token
        replayed, a new login): forget it at once in this process, end its streams, and
        tell the other processes."""
        self._revoke_locally(user_id, device_id, keep)
        await self._notifier.session_revoked(user_id, device_id, keep)

    def _revoke_locally(self, user_id: str, device_id: str, keep: str | None) -> None:
        self.sessions.invalidate(user_id, device_id, keep=keep)
        for stream in list(self._by_device.get((user_id, device_id), ())):
            if stream.family_id != keep:
                stream.end("session_revoked")

    # -- streams ----------------------------------------------------------------------------

    def open(
        self,
        user_id: str,
        device_id: str,
        space_id: str,
        family_id: str,
        *,
        expires_at: float,
        since: int | None,
    ) -> EventStream:
        stream = EventStream(
            user_id,
            device_id,
            space_id,
            family_id,
            expires_at=expires_at,
            sent_seq=since,
            realtime=self._sub.connected,
        )
        self._by_space.setdefault(space_id, set()).add(stream)
        self._by_device.setdefault((user_id, device_id), set()).add(stream)
        if self.stopping:
            stream.end("shutdown")
        return stream

    def close(self, stream: EventStream) -> None:
        _discard(self._by_space, stream.space_id, stream)
        _discard(self._by_device, (stream.user_id, stream.device_id), stream)

    def streams(self) -> list[EventStream]:
        return [s for group in self._by_space.values() for s in group]

    # -- the subscription's callbacks ---------------------------------------------------------

    def _on_message(self, channel: bytes, data: bytes) -> None:
        try:
            if channel == _ANNOUNCE_BYTES:
                change = _decode_change(data)
                self._learn(change.space, change.seq, SEQ_TTL_S)
            elif channel == _CHANNEL_BYTES:
                change = _decode_change(data)
                self._learn(change.space, change.seq, SEQ_TTL_S)
                for stream in self._by_space.get(change.space, ()):
                    stream.poke(change.seq)
            elif channel == _SESSIONS_BYTES:
                revoked = _decode_revoked(data)
                self._revoke_locally(revoked.user, revoked.device, revoked.keep)
        except msgspec.DecodeError:
            log.warning("ignored a malformed message on %s", channel.decode(errors="replace"))

    def _on_state(self, connected: bool) -> None:
        # Whatever was learned before a disconnection may have missed a message since.
        self._seqs.clear()
        self._trust_from = time.monotonic() + RECONNECT_GRACE_S
        self.sessions.trust(connected)
        for stream in self.streams():
            stream.status(connected)
        if connected and self._by_space:
            self._spawn(self._catch_up())

    async def _catch_up(self) -> None:
        """After Redis came back: poke every stream whose space moved while it was away."""
        try:
            seqs = await sync_store.space_seqs(self._pool, list(self._by_space))
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("catch-up after Redis returned failed: %s", type(exc).__name__)
            return
        for space_id, seq in seqs.items():
            for stream in self._by_space.get(space_id, ()):
                stream.poke(seq)

    # -- heartbeats -------------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            try:
                await self.tick()
            except Exception:
                log.exception("SSE heartbeat failed")

    async def tick(self) -> None:
        """Heartbeat every stream; end those whose token expired or whose session was
        signed out (checked in PostgreSQL, one query for all, in case a revocation message
        was lost)."""
        streams = self.streams()
        log.debug("%d event streams open", len(streams))
        if not streams:
            return
        now = time.time()
        families = {s.family_id for s in streams}
        try:
            active = await account_store.active_families(self._pool, list(families))
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("session check of open streams failed: %s", type(exc).__name__)
            active = families
        for stream in streams:
            if stream.family_id not in active:
                stream.end("session_revoked")
            elif stream.expires_at <= now:
                stream.end("token_expired")
            else:
                stream.heartbeat()

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _on_shutdown_signal(
    loop: asyncio.AbstractEventLoop, callback: Callable[[], None]
) -> Callable[[], None]:
    """Call ``callback`` (in the loop) when SIGTERM/SIGINT arrives; return the undo.

    Why: on SIGTERM Granian stops accepting and waits for in-flight requests to finish
    before it runs the lifespan shutdown — and an event stream never finishes by itself,
    so every process would sit out its kill timeout. The handler is chained at the Python
    level: the server's own asyncio handler still runs (the loop learns of the signal from
    its wakeup fd, not from this function). Nothing is installed where no Python handler
    was (the default action must stay), nor outside the main thread."""
    installed: list[tuple[int, Any]] = []

    def notify() -> None:
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(callback)

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue
        prior: Callable[[int, FrameType | None], Any] = previous

        def handler(signum: int, frame: FrameType | None, prior: Any = prior) -> None:
            notify()
            prior(signum, frame)

        try:
            signal.signal(sig, handler)
        except ValueError:  # not the main thread
            break
        installed.append((sig, previous))

    def undo() -> None:
        for sig, previous in installed:
            with contextlib.suppress(ValueError):
                signal.signal(sig, previous)

    return undo


def _discard(index: dict[Any, set[EventStream]], key: Any, stream: EventStream) -> None:
    group = index.get(key)
    if group is not None:
        group.discard(stream)
        if not group:
            del index[key]

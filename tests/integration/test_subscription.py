"""The per-process Redis subscription (service/infra/pubsub.py) against a real Redis: messages
and barriers flow; a connection that goes silent is noticed by the keep-alive and
dropped (so the no-change pull stops trusting its memory), and it comes back by itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import redis.asyncio as aioredis

from service.infra.pubsub import Subscription
from tests.integration.realtime_support import TcpProxy, proxied_url

KEEPALIVE_S = 0.3


async def _until(check: Callable[[], bool], seconds: float) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, "timed out"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_a_silent_connection_is_dropped_and_the_subscription_comes_back(
    redis_url: str,
) -> None:
    upstream, at = proxied_url(redis_url)
    messages: list[tuple[bytes, bytes]] = []
    states: list[bool] = []
    publisher = aioredis.Redis.from_url(redis_url)
    with TcpProxy(upstream) as proxy:
        sub = Subscription(
            at(proxy.port),
            ("kith:test-sub",),
            lambda channel, data: messages.append((channel, data)),
            states.append,
            keepalive_s=KEEPALIVE_S,
        )
        sub.start()
        try:
            await _until(lambda: sub.connected, 5)
            assert await sub.barrier()
            await publisher.publish("kith:test-sub", b"one")
            assert await sub.barrier()  # published before the PING: handled before its pong
            assert messages == [(b"kith:test-sub", b"one")]

            # Idle but healthy: keep-alive PINGs are answered, nothing is dropped.
            await asyncio.sleep(KEEPALIVE_S * 4)
            assert states == [True]
            assert sub.connected

            proxy.stalled = True
            stalled_at = time.monotonic()
            assert not await sub.barrier()  # no pong: the barrier gives up, never hangs
            await _until(lambda: not sub.connected, 5)
            noticed = time.monotonic() - stalled_at
            assert states[-1] is False
            # Silence is noticed after two keep-alive periods (checked every half period),
            # not at the barrier's 1 s timeout or later.
            assert noticed < KEEPALIVE_S * 2.5 + 0.3, noticed

            proxy.stalled = False
            epoch = sub.epoch
            await _until(lambda: sub.connected, 15)
            assert sub.epoch == epoch + 1
            await publisher.publish("kith:test-sub", b"two")
            assert await sub.barrier()
            assert messages[-1] == (b"kith:test-sub", b"two")
        finally:
            await sub.close()
            await publisher.aclose()

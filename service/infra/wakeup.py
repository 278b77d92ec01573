"""Wake idle workers through Redis pub/sub when a job is queued.

Only an accelerator: if Redis is down the listener retries quietly and workers keep
polling the jobs table, so no job waits longer than the poll interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

__all__ = ["JOBS_CHANNEL", "listen", "notify"]

JOBS_CHANNEL = "kith:jobs"
log = logging.getLogger("kith.worker")


async def notify(client: aioredis.Redis) -> None:
    """Tell idle workers there is work (call after the enqueueing transaction commits)."""
    try:
        # Bounded: with Redis unreachable the request that queued the job must not wait
        # on it (workers poll anyway).
        await asyncio.wait_for(client.publish(JOBS_CHANNEL, b"1"), 0.5)
    except (RedisError, OSError, TimeoutError) as exc:
        log.debug("job wake-up not published: %s", type(exc).__name__)


async def listen(redis_url: str, on_wake: Callable[[], None], stop: asyncio.Event) -> None:
    """Call ``on_wake`` for every notification until ``stop`` is set."""
    delay = 0.5
    while not stop.is_set():
        client = aioredis.Redis.from_url(redis_url, socket_connect_timeout=2)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(JOBS_CHANNEL)
            delay = 0.5
            while not stop.is_set():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None:
                    on_wake()
        except (RedisError, OSError) as exc:
            log.info("job wake-ups unavailable (%s); polling only", type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
            await client.aclose()

"""Change notifications: after a commit, publish ``{space, seq}`` on Redis pub/sub.

API processes relay these to connected devices (Server-Sent Events), which then pull.
Redis is an accelerator only: if it is down the push still succeeds and devices catch up
on their next pull.
"""

from __future__ import annotations

import logging

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

__all__ = ["CHANNEL", "ChangeNotifier"]

CHANNEL = "kith:changes"
log = logging.getLogger("kith.realtime")


class _Poke(msgspec.Struct):
    space: str
    seq: int


_encode = msgspec.json.Encoder().encode


class ChangeNotifier:
    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client

    async def publish(self, space_id: str, seq: int) -> None:
        try:
            await self._redis.publish(CHANNEL, _encode(_Poke(space_id, seq)))
        except (RedisError, OSError) as exc:
            log.warning("change notification not published: %s", type(exc).__name__)

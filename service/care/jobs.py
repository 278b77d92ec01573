"""The ``care_push`` job: one caregiver alert, all-clear or check-in reminder to one device.

Sent through the same providers and reason-code policy as nudges
(:func:`service.push.delivery.deliver`); the collapse id names the alert, so a retried
send shows once.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg

from service.jobs import Job, Kind, Permanent
from service.push.base import Notification, Provider
from service.push.delivery import deliver
from service.store import push as push_store

__all__ = ["CARE_CATEGORY", "CarePushJobs"]

CARE_CATEGORY = "KITH_CARE"  # the app opens the person's summary
ALERT_TTL_S = 6 * 3600
log = logging.getLogger("kith.care")


def _data(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {"kind": "care"}
    return {str(k): str(v) for k, v in value.items()}


class CarePushJobs:
    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        providers: Mapping[str, Provider],
        rnd: random.Random | None = None,
    ) -> None:
        self._pool = pool
        self._providers = providers
        self._rng = rnd or random.Random()  # noqa: S311 - jitter, not secrecy

    def handlers(self) -> dict[str, Callable[[Job], Awaitable[None]]]:
        return {Kind.CARE_PUSH: self.push}

    async def push(self, job: Job) -> None:
        space_id = job.space_id
        device_id = str(job.payload.get("device_id", ""))
        if not space_id or not device_id:
            raise Permanent("care_push without a space or device")
        address = await push_store.device_address(self._pool, space_id, device_id)
        if address is None:
            return  # signed out or no push address since
        provider = self._providers.get(address.provider)
        if provider is None:
            log.warning(
                "no %s credentials configured: a care alert was not pushed", address.provider
            )
            return
        notification = Notification(
            collapse_id=str(job.payload["collapse_id"]),
            title=str(job.payload["title"]),
            body=str(job.payload["body"]),
            # An alert carries KITH_HELP (its "I'm on it" button) and the ids the app posts
            # back with it (service/care/alerts.py); reminders and all-clears just open.
            category=str(job.payload.get("category") or CARE_CATEGORY),
            data=_data(job.payload.get("data")),
            ttl_s=ALERT_TTL_S,
            time_sensitive=bool(job.payload.get("time_sensitive")),
        )
        await deliver(self._pool, space_id, provider, address, notification, job, self._rng)

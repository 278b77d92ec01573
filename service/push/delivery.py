"""Send one notification and act on the provider's answer — for nudges and caregiver pushes
alike.

One policy for every provider (``service/push/policy.py``): re-mint an expired provider
token once, try the other APNs environment on BadDeviceToken, forget dead tokens (only if
registered before the provider says they died), wait out busy providers, stop an app whose
credentials are refused. The answer is turned into the job runner's vocabulary: return
(delivered, or nothing more to do), :class:`~service.jobs.Retry` or
:class:`~service.jobs.Permanent`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from service.jobs import Job, Permanent, Retry, backoff_s
from service.push.base import Address, Notification, Provider, SendResult
from service.push.credentials import Disabled
from service.push.policy import Action, Verdict, judge
from service.store import push as store

__all__ = ["PushObserver", "deliver"]

log = logging.getLogger("kith.push")

CREDENTIALS_WAIT_S = 15 * 60.0
RETRY_BASE_S = 5.0
RETRY_CAP_S = 30 * 60.0


class PushObserver(Protocol):
    """Where sends are reported (``service.infra.metrics.Metrics``): the provider, what Kith does
    about the answer (``delivered``, ``retry``, ``drop_token``, ...) and the provider's
    reason."""

    def push_result(self, provider: str, outcome: str, reason: str | None) -> None: ...


async def deliver(
    pool: asyncpg.Pool[Any],
    space_id: str,
    provider: Provider,
    address: Address,
    notification: Notification,
    job: Job,
    rng: random.Random,
    *,
    metrics: PushObserver | None = None,
) -> None:
    """Send once and act on the answer (``policy.judge``): re-mint an expired provider
    token once, try the other APNs environment on BadDeviceToken, forget dead tokens, wait
    out busy providers, stop an app whose credentials are refused. ``space_id`` is the
    recipient's space (their device is found through it). Raises :class:`Retry` or
    :class:`Permanent` for the job runner."""
    try:
        result, verdict = await _send_once(provider, address, notification)
        if verdict.action is Action.REMINT:
            result, verdict = await _remint_and_resend(provider, address, notification, result)
        if verdict.action is Action.OTHER_ENVIRONMENT:
            target = _Target(pool, space_id, provider, address)
            result, verdict = await _other_environment(target, notification)
    except Disabled as exc:
        if metrics is not None:
            metrics.push_result(provider.name, "credentials_disabled", None)
        raise Retry(f"credentials disabled: {exc}", after_s=CREDENTIALS_WAIT_S) from None
    if metrics is not None:
        metrics.push_result(provider.name, verdict.action.value, result.reason)
    await _act(_Target(pool, space_id, provider, address), result, verdict, job, rng)


async def _send_once(
    provider: Provider, address: Address, notification: Notification
) -> tuple[SendResult, Verdict]:
    result = await provider.send(address, notification)
    return result, judge(provider.name, result, address.registered_at)


async def _remint_and_resend(
    provider: Provider, address: Address, notification: Notification, rejected: SendResult
) -> tuple[SendResult, Verdict]:
    """ExpiredProviderToken / UNAUTHENTICATED: re-mint once and resend; a second refusal of
    a fresh token is a credentials problem (the alarm), not something to retry."""
    creds = provider.credentials
    if creds is None or rejected.credential is None:
        return rejected, Verdict(Action.CREDENTIALS)
    await creds.remint(rejected.credential)
    result, verdict = await _send_once(provider, address, notification)
    if verdict.action is Action.REMINT:
        return result, Verdict(Action.CREDENTIALS)
    return result, verdict


@dataclass(frozen=True, slots=True)
class _Target:
    """Where a notification goes: a device's address at a provider, in a person's space
    (``pool``: where the address is corrected or forgotten)."""

    pool: asyncpg.Pool[Any]
    space_id: str
    provider: Provider
    address: Address


async def _other_environment(
    target: _Target, notification: Notification
) -> tuple[SendResult, Verdict]:
    """APNs BadDeviceToken usually means a sandbox token sent to production (a debug build)
    or the reverse: try the other gateway once before giving the token up."""
    address = target.address
    other = "sandbox" if (address.environment or "production") == "production" else "production"
    result, verdict = await _send_once(
        target.provider, dataclasses.replace(address, environment=other), notification
    )
    if verdict.action is Action.DELIVERED:
        await store.set_environment(
            target.pool, target.space_id, address.device_id, address.token, other
        )
    elif verdict.action is Action.OTHER_ENVIRONMENT:
        return result, Verdict(Action.DROP_TOKEN)
    return result, verdict


async def _act(
    target: _Target, result: SendResult, verdict: Verdict, job: Job, rng: random.Random
) -> None:
    provider, address = target.provider, target.address
    action = verdict.action
    name = provider.name
    if action is Action.DELIVERED:
        return
    if action is Action.DROP_TOKEN:
        since = (
            dt.datetime.fromtimestamp(result.timestamp_ms / 1000, dt.UTC)
            if result.timestamp_ms is not None
            else None
        )
        dropped = await store.drop_token(
            target.pool, target.space_id, address.device_id, address.token, since
        )
        log.info("%s: %s — device token %s", name, result.reason, "dropped" if dropped else "kept")
        return
    if action is Action.KEEP_TOKEN:
        log.info("%s: %s older than the token's registration — kept", name, result.reason)
        return
    if action is Action.BAD_MESSAGE:
        log.error("%s refused a nudge as malformed (%s): a bug, not retried", name, result.reason)
        raise Permanent(f"{name} {result.status} {result.reason}")
    if action is Action.CREDENTIALS:
        if provider.credentials is not None:
            await provider.credentials.disable(f"{name} answered {result.status} {result.reason}")
        else:
            log.error("%s refused our credentials: %s %s", name, result.status, result.reason)
        raise Retry(f"{name} credentials refused", after_s=CREDENTIALS_WAIT_S)
    if action is Action.WAIT_TOKEN_LIMIT:
        log.error("%s: TooManyProviderTokenUpdates — not minting for 20 minutes", name)
        raise Retry(f"{name} token refresh limit", after_s=verdict.min_delay_s)
    delay = max(backoff_s(job.attempt, RETRY_BASE_S, RETRY_CAP_S, rng), verdict.min_delay_s)
    raise Retry(f"{name} {result.status} {result.reason}", after_s=delay)

"""Jobs that turn nudge requests into push notifications.

* ``nudge_plan`` (one per person, debounced) — under a per-person lock: decide what to do
  with the pending requests (``service/nudges/planning.py``) within the budget
  (``service/nudges/budget.py``); for the one that goes out, write its text, mark it sent and
  queue a ``push_send`` per device *in the same transaction* (the job rows are the outbox);
  then queue itself again for the next slot if anything still waits.
* ``push_send`` (one per nudge and device) — read the nudge's text and the device's address
  as they are now, send once with a deadline, and act on the answer by ``policy.judge``.
  A send that is retried (a worker killed mid-send, a 503) carries the same collapse id, so
  the phone shows the nudge once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

import asyncpg
import msgspec

from service.insights.service import NUDGE_PLAN
from service.nudges.budget import Budget, in_quiet_hours, next_slot, wall_time
from service.nudges.planning import Decision, Tie, compose, decide
from service.push.base import Address, Notification, Provider, SendResult
from service.push.credentials import Disabled
from service.push.policy import Action, Verdict, judge
from service.store import jobs as job_store
from service.store import push as store
from service.store.db import Connection, Executor
from service.worker.runner import Job, Permanent, Retry, backoff_s

__all__ = ["PLAN", "SEND", "NudgeJobs", "PushObserver", "deliver", "schedule_plan"]

PLAN = NUDGE_PLAN
SEND = "push_send"
SEND_MAX_ATTEMPTS = 12
#: A nudge is for its day: one that could not be delivered within this is not sent late.
STALE_AFTER = dt.timedelta(hours=20)
CREDENTIALS_WAIT_S = 15 * 60.0
RETRY_BASE_S = 5.0
RETRY_CAP_S = 30 * 60.0

log = logging.getLogger("kith.push")
K = TypeVar("K")
V = TypeVar("V")
_encode = msgspec.json.Encoder()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def schedule_plan(conn: Executor, space_id: str, delay_s: float = 0.0) -> None:
    await job_store.enqueue_or_advance(
        conn, PLAN, space_id=space_id, dedupe_key=space_id, delay_s=max(delay_s, 0.0)
    )


def _ttl_s(now: dt.datetime, budget: Budget) -> int:
    """Until the person's next quiet hours begin: a phone that was off all day must not
    light up with this nudge at midnight."""
    local = now.astimezone(budget.zone)
    for offset in (0, 1):
        start = wall_time(local.date() + dt.timedelta(days=offset), budget.quiet_start, budget.zone)
        if start > now:
            return max(int((start - now).total_seconds()), 60)
    return 24 * 3600


Outcome = tuple[str, str, str, str | None]  # (nudge id, state, reason, merged into)


class PushObserver(Protocol):
    """Where sends are reported (``service.infra.metrics.Metrics``): the provider, what Kith does
    about the answer (``delivered``, ``retry``, ``drop_token``, ...) and the provider's
    reason."""

    def push_result(self, provider: str, outcome: str, reason: str | None) -> None: ...


class NudgeJobs:
    """The two job handlers, sharing the pool, the providers and the clock."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        providers: Mapping[str, Provider],
        *,
        clock: Callable[[], dt.datetime] = _utcnow,
        rnd: random.Random | None = None,
        metrics: PushObserver | None = None,
    ) -> None:
        self._pool = pool
        self._providers = providers
        self._metrics = metrics
        self._clock = clock
        self._rng = rnd or random.Random()  # noqa: S311 - jitter, not secrecy
        self._targets: Batcher[tuple[str, str, str], store.PushTarget | None] = Batcher(
            lambda keys: store.push_targets(pool, keys)
        )

    def handlers(self) -> dict[str, Callable[[Job], Awaitable[None]]]:
        return {PLAN: self.plan, SEND: self.send}

    # -- planning -----------------------------------------------------------------------

    async def plan(self, job: Job) -> None:
        space_id = job.space_id
        if not space_id:
            raise Permanent("nudge_plan without a space")
        now = self._clock()
        async with self._pool.acquire() as conn, conn.transaction():
            await store.lock_plan(conn, space_id)
            inputs = await store.load_plan_inputs(conn, space_id, now)
            if not inputs.pending:
                return
            budget = Budget.from_settings(inputs.settings)
            slot = next_slot(now, budget, inputs.sent)
            ties = {
                t.id: Tie(t.name, t.live, t.snoozed_until, t.last_met_at)
                for t in inputs.ties.values()
            }
            decision = decide(
                inputs.pending,
                ties,
                inputs.open_insights,
                now=now,
                today=now.astimezone(budget.zone).date(),
                enabled=budget.allows_any,
                may_send=slot is not None and slot <= now,
                digest=budget.digest,
            )
            outcomes: list[Outcome] = [(p.id, "merged", why, i) for p, why, i in decision.merged]
            outcomes += [(p.id, "skipped", why, None) for p, why in decision.skipped]
            outcomes += [(p.id, "cancelled", why, None) for p, why in decision.cancelled]
            sent = list(inputs.sent)
            if decision.send is not None:
                devices = await store.push_devices(conn, space_id)
                if devices:
                    await self._send_lead(conn, space_id, decision, ties, devices, budget, now)
                    sent.append(now)
                else:
                    outcomes = _nowhere_to_push(decision, outcomes)
            await store.mark_decided(conn, space_id, outcomes, now)
            if decision.waiting and (following := next_slot(now, budget, sent)) is not None:
                await schedule_plan(conn, space_id, (following - now).total_seconds())

    async def _send_lead(
        self,
        conn: Connection,
        space_id: str,
        decision: Decision,
        ties: Mapping[str, Tie],
        devices: list[str],
        budget: Budget,
        now: dt.datetime,
    ) -> None:
        """Word the nudge, mark it sent and queue one send per device — one transaction."""
        lead = decision.send
        assert lead is not None
        title, body = compose(
            lead,
            ties.get(lead.contact_id) if lead.contact_id else None,
            decision.merged_names(ties),
            now=now,
            local_weekday=now.astimezone(budget.zone).weekday(),
        )
        await store.mark_sent(conn, space_id, lead.id, title, body, now)
        payloads = [_encode.encode({"nudge_id": lead.id, "device_id": d}).decode() for d in devices]
        await job_store.enqueue_many(conn, SEND, space_id, payloads, max_attempts=SEND_MAX_ATTEMPTS)

    # -- sending ------------------------------------------------------------------------

    async def send(self, job: Job) -> None:
        space_id = job.space_id
        nudge_id = str(job.payload.get("nudge_id", ""))
        device_id = str(job.payload.get("device_id", ""))
        if not space_id or not nudge_id or not device_id:
            raise Permanent("push_send without space, nudge or device")
        target = await self._targets.load((space_id, nudge_id, device_id))
        if target is None or target.state != "sent" or not target.token or not target.provider:
            return  # the nudge or the device's address is gone since: nothing to deliver
        now = self._clock()
        if target.sent_at is not None and now - target.sent_at > STALE_AFTER:
            log.info("a nudge could not be delivered on its day; not sent late")
            return
        provider = self._providers.get(target.provider)
        if provider is None:
            log.warning("no %s credentials configured: a nudge was not pushed", target.provider)
            return
        budget = Budget.from_settings(target.settings)
        if in_quiet_hours(now.astimezone(budget.zone).time(), budget.quiet_start, budget.quiet_end):
            # A retry that slipped into the night waits for the morning.
            raise Retry("quiet hours", after_s=_until_quiet_end(now, budget))
        address = Address(
            device_id,
            provider.name,
            target.token,
            target.registered_at or now,
            target.environment,
            target.topic,
            target.keys,
        )
        notification = Notification(
            collapse_id=nudge_id,
            title=target.title or "",
            body=target.body or "",
            data={
                "nudge_id": nudge_id,
                "insight_id": target.insight_id,
                "contact_id": target.contact_id or "",
            },
            ttl_s=_ttl_s(now, budget),
        )
        await deliver(
            self._pool,
            space_id,
            provider,
            address,
            notification,
            job,
            self._rng,
            metrics=self._metrics,
        )


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
            result, verdict = await _other_environment(
                pool, space_id, provider, address, notification
            )
    except Disabled as exc:
        if metrics is not None:
            metrics.push_result(provider.name, "credentials_disabled", None)
        raise Retry(f"credentials disabled: {exc}", after_s=CREDENTIALS_WAIT_S) from None
    if metrics is not None:
        metrics.push_result(provider.name, verdict.action.value, result.reason)
    await _act(pool, space_id, provider, address, result, verdict, job, rng)


class Batcher(Generic[K, V]):
    """Coalesces the lookups made in one event-loop turn into one call of ``fetch``: the
    runner starts a claimed batch of sends together, and each would otherwise cost its own
    database round trip (measured: a third of the worker's time at 1,000 sends/s)."""

    def __init__(self, fetch: Callable[[list[K]], Awaitable[list[V]]]) -> None:
        self._fetch = fetch
        self._waiting: list[tuple[K, asyncio.Future[V]]] = []

    async def load(self, key: K) -> V:
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        if not self._waiting:
            asyncio.get_running_loop().call_soon(self._start)
        self._waiting.append((key, future))
        return await future

    def _start(self) -> None:
        batch, self._waiting = self._waiting, []
        task = asyncio.ensure_future(self._run(batch))
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def _run(self, batch: list[tuple[K, asyncio.Future[V]]]) -> None:
        try:
            values = await self._fetch([key for key, _ in batch])
        except Exception as exc:  # every waiter fails (and its job retries), none hangs
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), value in zip(batch, values, strict=True):
            if not future.done():
                future.set_result(value)


_background: set[asyncio.Task[None]] = set()


def _nowhere_to_push(decision: Decision, outcomes: list[Outcome]) -> list[Outcome]:
    """No device has a push address: every live request is skipped, and says why (the
    insights are in the app all the same) rather than spending the budget."""
    assert decision.send is not None
    digest = {p.id for p, why, _ in decision.merged if why == "digest"}
    kept = [o for o in outcomes if o[0] not in digest]
    live = [decision.send.id, *(p.id for p in decision.waiting), *sorted(digest)]
    decision.waiting = []
    return kept + [(i, "skipped", "no_push_address", None) for i in live]


def _until_quiet_end(now: dt.datetime, budget: Budget) -> float:
    local = now.astimezone(budget.zone)
    for offset in (0, 1):
        end = wall_time(local.date() + dt.timedelta(days=offset), budget.quiet_end, budget.zone)
        if end > now:
            return (end - now).total_seconds()
    return 3600.0


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


async def _other_environment(
    pool: asyncpg.Pool[Any],
    space_id: str,
    provider: Provider,
    address: Address,
    notification: Notification,
) -> tuple[SendResult, Verdict]:
    """APNs BadDeviceToken usually means a sandbox token sent to production (a debug build)
    or the reverse: try the other gateway once before giving the token up."""
    other = "sandbox" if (address.environment or "production") == "production" else "production"
    result, verdict = await _send_once(
        provider, dataclasses.replace(address, environment=other), notification
    )
    if verdict.action is Action.DELIVERED:
        await store.set_environment(pool, space_id, address.device_id, address.token, other)
    elif verdict.action is Action.OTHER_ENVIRONMENT:
        return result, Verdict(Action.DROP_TOKEN)
    return result, verdict


async def _act(
    pool: asyncpg.Pool[Any],
    space_id: str,
    provider: Provider,
    address: Address,
    result: SendResult,
    verdict: Verdict,
    job: Job,
    rng: random.Random,
) -> None:
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
        dropped = await store.drop_token(pool, space_id, address.device_id, address.token, since)
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

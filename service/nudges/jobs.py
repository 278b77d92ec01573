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
import datetime as dt
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Generic, TypeVar

import asyncpg
import msgspec

from service.infra.clock import WallClock, utcnow
from service.jobs import Job, Kind, Permanent, Retry
from service.nudges.budget import Budget, in_quiet_hours, next_slot, wall_time
from service.nudges.planning import Decision, Tie, compose, decide
from service.push.base import Address, Notification, Provider
from service.push.delivery import PushObserver, deliver
from service.store import jobs as job_store
from service.store import nudges as store
from service.store import push as push_store
from service.store.db import Connection, Executor

__all__ = ["NudgeJobs", "schedule_plan"]

SEND_MAX_ATTEMPTS = 12
#: A nudge is for its day: one that could not be delivered within this is not sent late.
STALE_AFTER = dt.timedelta(hours=20)

log = logging.getLogger("kith.push")
K = TypeVar("K")
V = TypeVar("V")
_encode = msgspec.json.Encoder()


async def schedule_plan(conn: Executor, space_id: str, delay_s: float = 0.0) -> None:
    await job_store.enqueue_or_advance(
        conn, Kind.NUDGE_PLAN, space_id=space_id, dedupe_key=space_id, delay_s=max(delay_s, 0.0)
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


@dataclass(eq=False)
class NudgeJobs:
    """The two job handlers, sharing the pool, the providers and the clock."""

    pool: asyncpg.Pool[Any]
    providers: Mapping[str, Provider]
    _: KW_ONLY
    clock: WallClock = utcnow
    rng: random.Random = field(default_factory=random.Random)  # jitter, not secrecy
    metrics: PushObserver | None = None

    def __post_init__(self) -> None:
        self._targets: Batcher[tuple[str, str, str], push_store.PushTarget | None] = Batcher(
            lambda keys: push_store.push_targets(self.pool, keys)
        )

    def handlers(self) -> dict[str, Callable[[Job], Awaitable[None]]]:
        return {Kind.NUDGE_PLAN: self.plan, Kind.PUSH_SEND: self.send}

    # -- planning -----------------------------------------------------------------------

    async def plan(self, job: Job) -> None:
        space_id = job.space_id
        if not space_id:
            raise Permanent("nudge_plan without a space")
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
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
                devices = await push_store.push_devices(conn, space_id)
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
        await job_store.enqueue_many(
            conn, Kind.PUSH_SEND, space_id, payloads, max_attempts=SEND_MAX_ATTEMPTS
        )

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
        now = self.clock()
        if target.sent_at is not None and now - target.sent_at > STALE_AFTER:
            log.info("a nudge could not be delivered on its day; not sent late")
            return
        provider = self.providers.get(target.provider)
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
            self.pool,
            space_id,
            provider,
            address,
            notification,
            job,
            self.rng,
            metrics=self.metrics,
        )


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

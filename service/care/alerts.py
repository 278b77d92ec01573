"""A help request closes its loop: a caregiver acknowledges, everyone learns who is on it,
and the person or a caregiver resolves it (decision 0018).

* **Acknowledge** (API, web page, or the push's "I'm on it" button, which the app posts to
  the API): once per caregiver — a retry changes nothing — and the first one wins. Only a
  caregiver whose link is active and has the ``alerts`` scope may; the alert is locked
  while deciding, so two caregivers at once still give one winner. It ends the escalation
  ladder at once.
* **What the person sees**: an ``alerts`` record in their own space ("Carol saw your
  request at 05:03" — a caregiver's name and a time, nothing else), on their next pull,
  and, on the first acknowledgement, a push to their devices.
* **What the other caregivers see**: the summary's alert entry ("Carol is on it"), and a
  push that replaces the alert on their phones (same collapse id).
* **Resolve**: the person (``POST /v1/care/alerts/{alert_id}/resolve``) or a caregiver; a
  resolved alert climbs no further rung.
* Every acknowledgement and resolution is in the person's audit.

The alert's change and the pushes and follow-up job it calls for are one transaction; the
person's records and the summaries are then written at once, and again by the
``care_alerts_sync`` job queued in that transaction, so a crash in between loses nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
import msgspec

from service.care.service import CareService
from service.care.summary import alert_entry
from service.errors import Code, Conflict, Forbidden, NotFound
from service.infra.clock import WallClock, utcnow
from service.jobs import Job, Kind, Permanent
from service.nudges.budget import Budget
from service.store import care as care_store
from service.store import care_alerts as store
from service.store import jobs as job_store
from service.store import push as push_store
from service.store import sync as sync_store
from service.store.db import Executor
from service.sync.service import SyncService

__all__ = [
    "ALERT_CATEGORY",
    "AlertService",
    "Channel",
    "alert_collapse_id",
    "caregiver_pushes",
    "person_fields",
    "record_id",
]

#: The caregiver's alert push: its one action button, "I'm on it" (``acknowledge``),
#: posts ``{"via": "push"}`` to the alert's acknowledge route (docs/protocol.md).
ALERT_CATEGORY = "KITH_HELP"
#: The person's pushes about their own alerts: opening the app shows them.
PERSON_CATEGORY = "KITH_CARE"
Channel = Literal["api", "web", "push"]
log = logging.getLogger("kith.care")


def _digest(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def alert_collapse_id(space_id: str, alert_id: str) -> str:
    """One notification per alert on each caregiver's phone, replaced in place by every
    later push about it (a repeat, "Carol is on it", "all is well"). It names the person's
    space, as every caregiver push does (``care-<space>-…``: erasing the person drops the
    queued ones), and fits APNs' 64 bytes for a 32-character space id."""
    prefix = f"care-{space_id}-"
    return prefix + _digest(space_id, alert_id)[: max(8, 64 - len(prefix))]


def record_id(alert_id: str) -> str:
    """The person's ``alerts`` record for an alert (a valid record id whatever the alert id)."""
    return "alert-" + _digest(alert_id)[:24]


def _hhmm(at: dt.datetime, zone: Any) -> str:
    return at.astimezone(zone).strftime("%H:%M")


def person_fields(a: store.AlertState, zone: Any) -> dict[str, Any]:
    """The person's view of one alert: its state, every acknowledgement as (name, time),
    and one sentence to show — in their own time zone."""
    first = a.first
    if a.resolved_by == "person":
        resolved_by: str | None = "you"
    elif a.resolved_by == "check_in":
        resolved_by = "check_in"
    else:
        resolved_by = a.resolved_by_name
    what = "request" if a.kind == "need_help" else "missed check-in"
    status = a.status
    if status == "resolved":
        at = _hhmm(a.resolved_at or a.cleared_at or a.raised_at, zone)
        if resolved_by == "you":
            message = f"You said all is well at {at}."
        elif resolved_by == "check_in":
            message = f"Your check-in at {at} closed it."
        else:
            message = f"{resolved_by or 'A caregiver'} marked it resolved at {at}."
    elif first is not None:
        message = f"{first.name} saw your {what} at {_hhmm(first.at, zone)}"
    elif a.acknowledged_at is not None:  # that caregiver's account is gone since
        message = f"A caregiver saw your {what} at {_hhmm(a.acknowledged_at, zone)}"
    elif status == "no_response":
        message = (
            "Nobody has answered yet. If you need help now, call someone directly "
            "or your local emergency number."
        )
    elif a.kind == "need_help":
        message = f"Your request for help went to your caregivers at {_hhmm(a.raised_at, zone)}."
    else:
        message = "Your caregivers were told you had not checked in yet."
    return {
        "alert_id": a.id,
        "kind": a.kind,
        "raised_at": a.raised_at.isoformat(),
        "status": status,
        "acknowledged_by": first.name if first else None,
        "acknowledged_at": a.acknowledged_at.isoformat() if a.acknowledged_at else None,
        "acknowledgements": [{"by": k.name, "at": k.at.isoformat()} for k in a.acknowledgements],
        "no_response_at": a.no_response_at.isoformat() if a.no_response_at else None,
        "resolved_at": (a.resolved_at or a.cleared_at).isoformat()  # type: ignore[union-attr]
        if a.resolved
        else None,
        "resolved_by": resolved_by if a.resolved else None,
        "message": message,
    }


async def caregiver_pushes(
    conn: Executor,
    space_id: str,
    alert_id: str,
    title: Callable[[str], str],
    body: Callable[[str], str],
    *,
    time_sensitive: bool,
    actionable: bool,
    skip_link: str | None = None,
) -> int:
    """Queue one push about an alert to every device of every caregiver with the
    ``alerts`` scope (but ``skip_link``'s), in the caller's transaction; ``title`` and
    ``body`` get the caregiver's label for the person ("Mum"). Returns how many."""
    recipients = await care_store.alert_recipients(conn, space_id)
    collapse = alert_collapse_id(space_id, alert_id)
    count = 0
    for caregiver_space, device_id, label, link_id in recipients:
        if link_id == skip_link:
            continue
        notification: dict[str, Any] = {
            "collapse_id": collapse,
            "title": title(label),
            "body": body(label),
            "time_sensitive": time_sensitive,
            "data": {"kind": "care_alert", "link_id": link_id, "alert_id": alert_id},
        }
        if actionable:
            notification["category"] = ALERT_CATEGORY
        await store.enqueue_pushes(
            conn, Kind.CARE_PUSH, [(caregiver_space, device_id)], notification
        )
        count += 1
    return count


@dataclass(eq=False)
class AlertService:
    pool: asyncpg.Pool[Any]
    sync: SyncService
    care: CareService
    clock: WallClock = utcnow
    wake_workers: Callable[[], Awaitable[None]] | None = None

    def handlers(self) -> dict[str, Callable[[Job], Awaitable[None]]]:
        return {Kind.CARE_ALERTS_SYNC: self._sync_job}

    # -- the caregiver -------------------------------------------------------------------

    async def acknowledge(
        self, caregiver_user_id: str, link_id: str, alert_id: str, channel: Channel
    ) -> dict[str, Any]:
        """ "I'm on it". Idempotent per caregiver; the first one wins; too late once the
        alert is resolved (409 ``alert_resolved``) unless this caregiver had answered."""
        link = await self._alerts_link(caregiver_user_id, link_id)
        space_id, now = link.space_id, self.clock()
        changed = False
        async with self.pool.acquire() as conn, conn.transaction():
            state = await self._locked(conn, space_id, alert_id)
            if state.resolved:
                if not await store.has_acknowledged(conn, space_id, alert_id, link.id):
                    raise Conflict("this alert is resolved already", code=Code.ALERT_RESOLVED)
            else:
                recorded, first = await store.acknowledge(
                    conn, space_id, alert_id, link.id, link.caregiver_user_id, channel, now
                )
                if recorded:
                    changed = True
                    await store.add_action_audit(
                        conn, space_id, link.id, link.caregiver_user_id, channel,
                        "acknowledged", alert_id,
                    )  # fmt: skip
                if first:
                    await store.cancel_ladder(conn, Kind.HELP_LADDER, space_id, alert_id)
                    await self._tell_person(conn, space_id, alert_id, link.caregiver_name, now)
                    name = link.caregiver_name
                    await caregiver_pushes(
                        conn,
                        space_id,
                        alert_id,
                        lambda label: f"{name} is on it",
                        lambda label: f"{name} saw {label}'s alert and is responding.",
                        time_sensitive=False,
                        actionable=False,
                        skip_link=link.id,
                    )
                if changed:
                    await self._queue_sync(conn, space_id)
        if changed:
            await self._after(space_id)
        return await self._entry(space_id, alert_id, link.id)

    async def resolve_for_caregiver(
        self, caregiver_user_id: str, link_id: str, alert_id: str, channel: Channel
    ) -> dict[str, Any]:
        link = await self._alerts_link(caregiver_user_id, link_id)
        name = link.caregiver_name
        done = await self._resolve(
            link.space_id,
            alert_id,
            by=link.id,
            actor=(link.id, link.caregiver_user_id, channel),
            title=lambda label: f"Resolved: {label}",
            body=lambda label: f"{name} marked {label}'s alert resolved.",
        )
        if done:
            await self._after(link.space_id)
        return await self._entry(link.space_id, alert_id, link.id)

    # -- the person ----------------------------------------------------------------------

    async def resolve_for_person(
        self, space_id: str, user_id: str, alert_id: str
    ) -> dict[str, Any]:
        """ "All is well now", from the person's app. Idempotent."""
        done = await self._resolve(
            space_id,
            alert_id,
            by="person",
            actor=(None, user_id, "api"),
            title=lambda label: f"{label} is OK now",
            body=lambda label: f"{label} says all is well now.",
        )
        if done:
            await self._after(space_id)
        [mine] = [f for f in await self.of_person(space_id, only=alert_id)]
        return mine

    async def of_person(self, space_id: str, *, only: str | None = None) -> list[dict[str, Any]]:
        """The person's open alerts and those resolved in the last day, as they see them."""
        now = self.clock()
        states = await store.alert_states(self.pool, space_id, now, only=only)
        if only is not None and not states:
            raise NotFound("you have no alert with this id", code=Code.ALERT_NOT_FOUND)
        zone = await self._zone(space_id)
        return [person_fields(a, zone) for a in states]

    # -- writing what everyone reads -----------------------------------------------------

    async def publish(self, space_id: str) -> None:
        """Write the person's ``alerts`` records that changed, then every caregiver's
        summary. Idempotent: the ``care_alerts_sync`` job runs it again after a crash."""
        now = self.clock()
        states = await store.alert_states(self.pool, space_id, now)
        if states:
            zone = await self._zone(space_id)
            ids = [record_id(a.id) for a in states]
            async with self.pool.acquire() as conn:
                current = await sync_store.load_records(conn, space_id, "alerts", ids)
            for a, rid in zip(states, ids, strict=True):
                fields = msgspec.json.decode(msgspec.json.encode(person_fields(a, zone)))
                have = current.get(rid)
                if have is not None and all(have.fields.get(k) == v for k, v in fields.items()):
                    continue
                await self.sync.server_write(space_id, "alerts", rid, fields, create=True)
        await self.care.refresh(space_id)

    async def _sync_job(self, job: Job) -> None:
        if not job.space_id:
            raise Permanent("care_alerts_sync without a space")
        await self.publish(job.space_id)

    # -- helpers -------------------------------------------------------------------------

    async def _resolve(
        self,
        space_id: str,
        alert_id: str,
        *,
        by: str,
        actor: tuple[str | None, str, str],
        title: Callable[[str], str],
        body: Callable[[str], str],
    ) -> bool:
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            state = await self._locked(conn, space_id, alert_id)
            if state.resolved:
                return False  # resolving twice changes nothing
            await store.resolve(conn, space_id, alert_id, by, now)
            await store.cancel_ladder(conn, Kind.HELP_LADDER, space_id, alert_id)
            link_id, user_id, channel = actor
            await store.add_action_audit(
                conn, space_id, link_id, user_id, channel, "resolved", alert_id
            )
            await caregiver_pushes(
                conn, space_id, alert_id, title, body,
                time_sensitive=False, actionable=False, skip_link=link_id,
            )  # fmt: skip
            await self._queue_sync(conn, space_id)
        return True

    async def _tell_person(
        self, conn: Executor, space_id: str, alert_id: str, name: str, now: dt.datetime
    ) -> None:
        devices = await push_store.push_devices(conn, space_id)
        zone = await self._zone(space_id, conn)
        await store.enqueue_pushes(
            conn,
            Kind.CARE_PUSH,
            [(space_id, d) for d in devices],
            {
                "collapse_id": "ack-" + _digest(space_id, alert_id)[:40],
                "title": f"{name} saw your request",
                "body": f"{name} is on it (seen at {_hhmm(now, zone)}).",
                "time_sensitive": True,  # the moment their worry is highest
                "category": PERSON_CATEGORY,
                "data": {"kind": "care_alert_seen", "alert_id": alert_id},
            },
        )

    async def _queue_sync(self, conn: Executor, space_id: str) -> None:
        await job_store.enqueue(conn, Kind.CARE_ALERTS_SYNC, space_id=space_id, dedupe_key=space_id)

    async def _after(self, space_id: str) -> None:
        """After the commit: workers woken for the pushes, the records written now."""
        if self.wake_workers is not None:
            await self.wake_workers()
        try:
            await self.publish(space_id)
        except (OSError, asyncpg.PostgresError) as exc:  # the queued job writes them
            log.warning("alert records left to the worker: %s", type(exc).__name__)

    async def _alerts_link(self, caregiver_user_id: str, link_id: str) -> care_store.Link:
        link = await care_store.link_for_caregiver(self.pool, caregiver_user_id, link_id)
        if link is None or link.state != "active":
            raise NotFound("you do not care for anyone with this link")
        if "alerts" not in link.scopes:
            raise Forbidden(
                f"{link.label} has not shared alerts with you", code=Code.ALERTS_NOT_SHARED
            )
        return link

    @staticmethod
    async def _locked(conn: Executor, space_id: str, alert_id: str) -> store.AlertState:
        state = await store.lock_alert(conn, space_id, alert_id)
        if state is None:
            raise NotFound("there is no alert with this id", code=Code.ALERT_NOT_FOUND)
        return state

    async def _entry(self, space_id: str, alert_id: str, viewer: str) -> dict[str, Any]:
        [state] = await store.alert_states(self.pool, space_id, self.clock(), only=alert_id)
        return alert_entry(state, viewer)

    async def _zone(self, space_id: str, conn: Executor | None = None) -> Any:
        settings = await sync_store.settings_of(conn or self.pool, space_id) or {}
        return Budget.from_settings(settings).zone

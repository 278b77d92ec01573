"""Daily check-in escalation, as durable jobs, in the older adult's own wall-clock time.

With a ``check_in_deadline`` in their settings, each local day has three moments:

* deadline minus 60 min — a reminder push to the older adult's own devices;
* deadline — a second reminder ("due now");
* deadline + ``check_in_grace_min`` — if there is still no check-in that day, an alert:
  every caregiver with the ``alerts`` scope gets a time-sensitive push ("No check-in from
  Mum yet today"), and the summary shows it. If in-person contact has also been declining,
  the alert is raised with high priority and says so.

A check-in cancels the rest of that day's moments; a late one clears the alert and sends
caregivers an all-clear. A ``need_help`` check-in alerts caregivers at once (its own job,
queued by the sync push in the same transaction as the check-in), and, in the same
transaction as that alert, the first rung of its escalation ladder
(``service/care/ladder.py``, decision 0018); alerts carry the "I'm on it" button
(``service/care/alerts.py``). One ``checkin_tick`` job per person waits for the next
moment (DST-correct: computed from the wall clock each time, never by adding 24 hours);
its payload says which moment and which day it is for.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec

from service.care.alerts import AlertService, caregiver_pushes
from service.care.ladder import queue_rung
from service.care.service import CareService, clock_time
from service.care.summary import declining, weekly_counts
from service.config import CareSettings
from service.infra.clock import WallClock, utcnow
from service.jobs import Job, Kind, Permanent
from service.nudges.budget import Budget, wall_time
from service.store import care as store
from service.store import push as push_store
from service.store import sync as sync_store
from service.store.db import Executor

__all__ = [
    "Escalation",
    "moments",
]

REMIND_BEFORE = dt.timedelta(minutes=60)
HELP_WINDOW = dt.timedelta(hours=24)
#: A phone's clock may run a little ahead of ours (sync clamps stamps at 5 minutes): a
#: check-in stamped "in a minute" has happened.
CLOCK_TOLERANCE = dt.timedelta(minutes=5)

log = logging.getLogger("kith.care")
_encode = msgspec.json.Encoder()
Moment = tuple[dt.datetime, str]  # (when, "remind_before" | "remind_due" | "alert")


def _deadline(settings: dict[str, Any]) -> dt.time | None:
    """The daily deadline; None without one, or if what is stored is not ``HH:MM``."""
    return clock_time(settings.get("check_in_deadline"))


def _grace(settings: dict[str, Any]) -> dt.timedelta:
    value = settings.get("check_in_grace_min")
    return dt.timedelta(minutes=value if isinstance(value, int) else 30)


def moments(day: dt.date, settings: dict[str, Any]) -> list[Moment]:
    """A local day's three moments, as UTC instants (empty without a deadline)."""
    deadline = _deadline(settings)
    if deadline is None:
        return []
    due = wall_time(day, deadline, Budget.from_settings(settings).zone)
    return [
        (due - REMIND_BEFORE, "remind_before"),
        (due, "remind_due"),
        (due + _grace(settings), "alert"),
    ]


@dataclass(eq=False)
class Escalation:
    pool: asyncpg.Pool[Any]
    care: CareService
    clock: WallClock = utcnow
    settings: CareSettings = field(default_factory=CareSettings)
    alerts: AlertService | None = None

    async def _publish(self, space_id: str) -> None:
        """The summaries, and (with the alert service) the person's own alert records."""
        if self.alerts is not None:
            await self.alerts.publish(space_id)
        else:
            await self.care.refresh(space_id)

    def handlers(self) -> dict[str, Callable[[Job], Any]]:
        return {
            Kind.CHECKIN_TICK: self.tick,
            Kind.CARE_CHECK_IN: self.check_in,
        }

    # -- scheduling ----------------------------------------------------------------------

    async def schedule(
        self, space_id: str, *, after: dt.datetime | None = None
    ) -> dt.datetime | None:
        """Queue the person's next moment (replacing any queued one) — the first one later
        than now and than ``after`` (the moment a tick just handled: a job may start a
        little before its instant by the app's clock). None if they have no deadline."""
        now = self.clock()
        threshold = max(now, after) if after is not None else now
        settings = await sync_store.settings_of(self.pool, space_id) or {}
        zone = Budget.from_settings(settings).zone
        today = now.astimezone(zone).date()
        nxt: tuple[dt.datetime, str, dt.date] | None = None
        for offset in range(3):
            day = today + dt.timedelta(days=offset)
            if await self._checked_in(space_id, day, zone, now):
                continue
            for at, event in moments(day, settings):
                # Only moments still ahead: a deadline set at 20:00 must not alert anyone
                # about that morning. (A moment missed while workers were down is not lost:
                # its queued tick is past due, runs when a worker is back, and is never
                # replaced by a later schedule — see the upsert below.)
                if at > threshold:
                    nxt = (at, event, day)
                    break
            if nxt is not None:
                break
        async with self.pool.acquire() as conn:
            if nxt is None:
                await conn.execute(
                    """
                    DELETE FROM jobs WHERE kind = $1 AND dedupe_key = $2 AND state = 'queued'
                      AND run_at > now()
                    """,
                    Kind.CHECKIN_TICK,
                    space_id,
                )
                return None
            at, event, day = nxt
            await conn.execute(
                """
                INSERT INTO jobs (kind, space_id, dedupe_key, payload, run_at)
                VALUES ($1, $2, $2, $3::jsonb, now() + make_interval(secs => $4))
                ON CONFLICT (kind, dedupe_key) WHERE state = 'queued' AND dedupe_key IS NOT NULL
                DO UPDATE SET payload = excluded.payload, run_at = excluded.run_at,
                              updated_at = now()
                WHERE jobs.run_at > now()  -- a moment already due runs first
                """,
                Kind.CHECKIN_TICK,
                space_id,
                _encode.encode({"event": event, "date": day.isoformat()}).decode(),
                max((at - now).total_seconds(), 0.0),
            )
        return at

    async def _checked_in(self, space_id: str, day: dt.date, zone: Any, now: dt.datetime) -> bool:
        start = wall_time(day, dt.time(0), zone)
        end = wall_time(day + dt.timedelta(days=1), dt.time(0), zone)
        found = await store.check_ins_on(
            self.pool, space_id, start, min(end, now + CLOCK_TOLERANCE)
        )
        return bool(found)

    # -- the jobs ------------------------------------------------------------------------

    async def tick(self, job: Job) -> None:
        space_id = job.space_id
        if not space_id:
            raise Permanent("checkin_tick without a space")
        event = str(job.payload.get("event", ""))
        day = dt.date.fromisoformat(str(job.payload.get("date")))
        now = self.clock()
        settings = await sync_store.settings_of(self.pool, space_id) or {}
        zone = Budget.from_settings(settings).zone
        if not await self._checked_in(space_id, day, zone, now) and _deadline(settings):
            if event == "alert":
                await self._missed(space_id, day, settings, now)
            elif event in {"remind_before", "remind_due"}:
                await self._remind(space_id, day, event, settings)
        handled = [at for at, name in moments(day, settings) if name == event]
        await self.schedule(space_id, after=handled[0] if handled else None)

    async def check_in(self, job: Job) -> None:
        """A check-in arrived (or changed): need-help alerts at once; a late one clears the
        day's alert with an all-clear; then summaries and the schedule follow."""
        space_id = job.space_id
        if not space_id:
            raise Permanent("care_check_in without a space")
        now = self.clock()
        settings = await sync_store.settings_of(self.pool, space_id) or {}
        zone = Budget.from_settings(settings).zone
        recent = await store.check_ins_on(
            self.pool, space_id, now - HELP_WINDOW, now + CLOCK_TOLERANCE
        )
        if recent:
            record_id, latest = recent[-1]
            if latest.status == "need_help":
                await self._need_help(space_id, record_id, latest.at, now)
            else:
                cleared = await store.clear_missed_alert(
                    self.pool, space_id, latest.at.astimezone(zone).date(), now
                )
                cleared_help = await store.clear_help_alerts(self.pool, space_id, now)
                if cleared or cleared_help:
                    local = latest.at.astimezone(zone).strftime("%H:%M")
                    await self._to_caregivers(
                        space_id,
                        "all-clear:" + record_id,
                        lambda label: f"{label} checked in",
                        f"All clear: they checked in at {local}.",
                        time_sensitive=False,
                    )
        await self._publish(space_id)
        await self.schedule(space_id)

    # -- what each moment does -----------------------------------------------------------

    async def _remind(
        self, space_id: str, day: dt.date, event: str, settings: dict[str, Any]
    ) -> None:
        deadline = _deadline(settings)
        assert deadline is not None
        if event == "remind_before":
            title = "Time for your daily check-in"
            body = f"Let your family know how you are — it's due at {deadline:%H:%M}."
        else:
            title = "Your check-in is due now"
            body = "One tap tells the people who care about you that you're OK."
        devices = await push_store.push_devices(self.pool, space_id)
        await self._enqueue_pushes(
            [(space_id, d) for d in devices],
            f"checkin-{day.isoformat()}",  # the second reminder replaces the first
            title,
            body,
            time_sensitive=False,
        )

    async def _missed(
        self, space_id: str, day: dt.date, settings: dict[str, Any], now: dt.datetime
    ) -> None:
        zone = Budget.from_settings(settings).zone
        inputs = await store.summary_inputs(self.pool, space_id, now)
        falling = declining(weekly_counts(inputs.touches, now.astimezone(zone).date(), zone))
        deadline = _deadline(settings)
        body = f"Their check-in was due at {deadline:%H:%M}. You might give them a call."
        if falling:
            body += " They have also been seeing people less in recent weeks."
        alert_id = f"missed:{day.isoformat()}"
        # The alert and its pushes in one transaction: a failure between them must not
        # leave an alert raised whose pushes a retry would never queue (it is not new then).
        async with self.pool.acquire() as conn, conn.transaction():
            raised = await store.raise_alert(
                conn, space_id, alert_id, "missed_check_in", "high" if falling else "normal",
                day, now,
            )  # fmt: skip
            if raised:
                await caregiver_pushes(
                    conn,
                    space_id,
                    alert_id,
                    lambda label: f"No check-in from {label} yet today",
                    lambda label: body,
                    time_sensitive=True,
                    actionable=True,
                )
        if not raised:
            return
        await self._publish(space_id)
        log.info("missed check-in alert raised")

    async def _need_help(
        self, space_id: str, record_id: str, at: dt.datetime, now: dt.datetime
    ) -> None:
        settings = await sync_store.settings_of(self.pool, space_id) or {}
        zone = Budget.from_settings(settings).zone
        alert_id = f"help:{record_id}"
        local = at.astimezone(zone).strftime("%H:%M")
        # The alert, its pushes and its ladder's first rung in one transaction: a failure
        # between them must not leave an alert raised that nobody is told about or that
        # never escalates (a retry finds it raised and does nothing).
        async with self.pool.acquire() as conn, conn.transaction():
            raised = await store.raise_alert(
                conn, space_id, alert_id, "need_help", "high", at.astimezone(zone).date(), now
            )
            if raised:
                await caregiver_pushes(
                    conn,
                    space_id,
                    alert_id,
                    lambda label: f"{label} asked for help",
                    lambda label: (
                        f"They checked in with \u201cI need help\u201d at {local}. "
                        "Please reach them."
                    ),
                    time_sensitive=True,
                    actionable=True,
                )
                await queue_rung(conn, self.settings, space_id, alert_id, 1, now, now)
        if raised:
            log.info("need-help alert raised")

    async def _to_caregivers(
        self,
        space_id: str,
        collapse_id: str,
        title: Callable[[str], str],
        body: str,
        *,
        time_sensitive: bool,
        conn: Executor | None = None,
    ) -> None:
        recipients = await store.alert_recipients(conn or self.pool, space_id)
        for caregiver_space, device_id, label, _ in recipients:
            await self._enqueue_pushes(
                [(caregiver_space, device_id)],
                f"care-{space_id}-{collapse_id}",
                title(label),
                body,
                time_sensitive=time_sensitive,
                conn=conn,
            )

    async def _enqueue_pushes(
        self,
        targets: list[tuple[str, str]],
        collapse_id: str,
        title: str,
        body: str,
        *,
        time_sensitive: bool,
        conn: Executor | None = None,
    ) -> None:
        if not targets:
            return
        await (conn or self.pool).execute(
            """
            INSERT INTO jobs (kind, space_id, payload, max_attempts)
            SELECT $1, t.space_id, jsonb_build_object(
                       'device_id', t.device_id, 'collapse_id', $4::text, 'title', $5::text,
                       'body', $6::text, 'time_sensitive', $7::boolean), 12
            FROM unnest($2::text[], $3::text[]) AS t(space_id, device_id)
            """,
            Kind.CARE_PUSH,
            [t[0] for t in targets],
            [t[1] for t in targets],
            collapse_id,
            title,
            body,
            time_sensitive,
        )

"""The ladder an unanswered "need help" climbs (decision 0018), as durable jobs.

Rung 0 is the alert itself: every caregiver with the ``alerts`` scope, at once
(``service/care/escalation.py``), queued with rung 1 in one transaction. Then, counted from
when the alert was raised (``CareSettings``, defaults 5, 10 and 20 minutes):

1. ``repeat`` — pushed again to every caregiver with the ``alerts`` scope (the same
   notification, replaced in place, sounding again);
2. ``everyone`` — every caregiver with the ``alerts`` scope *now* (one who was granted it
   or resumed since is included) is told that nobody has answered yet: no one may assume
   another caregiver is on it;
3. ``no_response`` — the alert is marked "no response": the person's ``alerts`` record and
   their devices say so (with what to do now), the summaries show it, and ``kith report``
   lists it.

Each rung is one ``help_ladder`` job, run under the alert's row lock: a rung finds the alert
acknowledged or resolved and stops; a rung already climbed (``ladder_step``, written in the
transaction that queued its pushes and the next rung) is never climbed again, so a worker
killed at any point resumes without sending a rung twice. No quiet hours and no nudge
budget: nothing here waits for a better moment.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from service.care.alerts import PERSON_CATEGORY, AlertService, caregiver_pushes
from service.config import CareSettings
from service.infra.clock import WallClock, utcnow
from service.jobs import Job, Kind, Permanent
from service.store import care_alerts as store
from service.store import jobs as job_store
from service.store import push as push_store
from service.store.db import Executor

__all__ = ["LAST_RUNG", "RUNGS", "Ladder", "queue_rung"]

RUNGS = ("alert", "repeat", "everyone", "no_response")
LAST_RUNG = len(RUNGS) - 1
log = logging.getLogger("kith.care")
_encode = msgspec.json.Encoder()


def rung_at(settings: CareSettings, raised_at: dt.datetime, step: int) -> dt.datetime:
    """When rung ``step`` (1..3) is due."""
    seconds = {
        1: settings.help_repeat_after_s,
        2: settings.help_everyone_after_s,
        3: settings.help_no_response_after_s,
    }[step]
    return raised_at + dt.timedelta(seconds=seconds)


async def queue_rung(
    conn: Executor,
    settings: CareSettings,
    space_id: str,
    alert_id: str,
    step: int,
    raised_at: dt.datetime,
    now: dt.datetime,
) -> None:
    """Queue rung ``step`` in the caller's transaction (one queued rung per alert)."""
    wait = (rung_at(settings, raised_at, step) - now).total_seconds()
    await job_store.enqueue(
        conn,
        Kind.HELP_LADDER,
        _encode.encode({"alert_id": alert_id, "step": step}).decode(),
        space_id=space_id,
        dedupe_key=store.ladder_dedupe_key(space_id, alert_id),
        delay_s=max(wait, 0.0),
        max_attempts=20,
    )


@dataclass(eq=False)
class Ladder:
    pool: asyncpg.Pool[Any]
    alerts: AlertService
    settings: CareSettings
    clock: WallClock = utcnow

    def handlers(self) -> dict[str, Callable[[Job], Awaitable[None]]]:
        return {Kind.HELP_LADDER: self.climb}

    async def climb(self, job: Job) -> None:
        space_id = job.space_id
        alert_id = str(job.payload.get("alert_id", ""))
        step = job.payload.get("step")
        if not space_id or not alert_id or not isinstance(step, int) or not 0 < step <= LAST_RUNG:
            raise Permanent("help_ladder without a space, an alert or a rung")
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            alert = await store.lock_alert(conn, space_id, alert_id)
            if alert is None or alert.resolved or alert.acknowledged_at is not None:
                return  # answered: the ladder ends here
            if alert.ladder_step >= step:
                climbed = False  # a worker died after this rung committed: never twice
            else:
                await self._rung(conn, alert, step)
                await store.advance_ladder(conn, space_id, alert_id, step)
                if step < LAST_RUNG:
                    await queue_rung(
                        conn, self.settings, space_id, alert_id, step + 1, alert.raised_at, now
                    )
                climbed = True
        if climbed:
            log.info("help ladder: rung %s", RUNGS[step])
        if step == LAST_RUNG:
            await self.alerts.publish(space_id)  # idempotent, so also on a re-run

    async def _rung(self, conn: Executor, alert: store.AlertState, step: int) -> None:
        space_id, alert_id = alert.space_id, alert.id
        if step == 1:
            minutes = self.settings.help_repeat_after_s // 60
            waited = f"{minutes} minutes ago" if minutes >= 2 else "a moment ago"
            await caregiver_pushes(
                conn,
                space_id,
                alert_id,
                lambda label: f"Still waiting: {label} asked for help",
                lambda label: (
                    f"{label} asked for help {waited} and nobody has said they are on "
                    "it yet. Please reach them, then tap I'm on it."
                ),
                time_sensitive=True,
                actionable=True,
            )
        elif step == 2:
            await caregiver_pushes(
                conn,
                space_id,
                alert_id,
                lambda label: f"Nobody has answered {label} yet",
                lambda label: (
                    f"None of {label}'s caregivers has said they are on it. Please call them now."
                ),
                time_sensitive=True,
                actionable=True,
            )
        else:
            await store.mark_no_response(conn, space_id, alert_id, self.clock())
            devices = await push_store.push_devices(conn, space_id)
            await store.enqueue_pushes(
                conn,
                Kind.CARE_PUSH,
                [(space_id, d) for d in devices],
                {
                    "collapse_id": "nr-" + alert_id[-40:],
                    "title": "Nobody has answered yet",
                    "body": "Your caregivers have not answered. If you need help now, call "
                    "someone directly or your local emergency number.",
                    "time_sensitive": True,
                    "category": PERSON_CATEGORY,
                    "data": {"kind": "care_alert_no_response", "alert_id": alert_id},
                },
            )
            await job_store.enqueue(
                conn, Kind.CARE_ALERTS_SYNC, space_id=space_id, dedupe_key=space_id
            )

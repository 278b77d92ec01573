"""Caregiver sharing, as the older adult controls it.

* The older adult invites (a short single-use code, 72 hours), a caregiver accepts; the
  older adult chooses the scopes, and can change them, pause, resume or revoke at any time.
  A caregiver can also leave.
* The summary lives in the **caregiver's own space** as a server-written ``care_summaries``
  row, so their phone pulls it like anything else and shows it offline. It holds only the
  granted scopes' fields. Pausing or revoking deletes that row (the caregiver's devices drop
  it on their next pull); resuming writes a new one (deletes are final, so it gets a new id).
* Every read of a summary through the API or the web page is audited; the older adult can
  list who looked and when.
* A summary leaves out what it cannot read rather than failing: a stored row whose event
  time no reader can hold, or a scope whose section cannot be computed from what is
  stored, is omitted and logged (counts and exception types only, never the person's
  data), so the caregiver always sees the rest — above all an open "need help" alert.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from service.care.summary import SCOPES, build_summary
from service.errors import Code, Conflict, NotFound
from service.infra.clock import WallClock, utcnow
from service.nudges.budget import Budget
from service.store import care as store
from service.sync.service import SyncService

__all__ = ["INVITATION_TTL", "CareService", "clock_time", "normalize_code"]

log = logging.getLogger("kith.care")
INVITATION_TTL = dt.timedelta(hours=72)
#: No 0/O, 1/I/L: read aloud over the phone to a parent, or typed on a small keyboard.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
Channel = Literal["api", "web"]
#: Fields summaries once carried and no longer do: ``cared_for_user_id`` told the
#: caregiver's phone the older adult's account id, which it has no use for (the link id
#: names the person in every caregiver route) — removed from rows as they are refreshed.
RETIRED_FIELDS = frozenset({"cared_for_user_id"})


def normalize_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def _hash(code: str) -> bytes:
    return hashlib.sha256(normalize_code(code).encode()).digest()


def clock_time(value: Any) -> dt.time | None:
    """``HH:MM`` as a time; None if absent or not one (a row from an older client)."""
    if not isinstance(value, str):
        return None
    try:
        hour, minute = value.split(":")
        return dt.time(int(hour), int(minute))
    except ValueError:
        return None


@dataclass(eq=False)
class CareService:
    pool: asyncpg.Pool[Any]
    sync: SyncService
    clock: WallClock = utcnow

    # -- the older adult -----------------------------------------------------------------

    async def invite(
        self, space_id: str, user_id: str, scopes: Sequence[str] = ()
    ) -> tuple[str, dt.datetime]:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        expires_at = self.clock() + INVITATION_TTL
        await store.create_invitation(
            self.pool, space_id, user_id, _hash(code), expires_at, _ordered(scopes)
        )
        return f"{code[:4]}-{code[4:]}", expires_at

    async def caregivers(self, space_id: str) -> list[store.Link]:
        return await store.links_of_person(self.pool, space_id)

    async def set_scopes(self, space_id: str, link_id: str, scopes: Sequence[str]) -> store.Link:
        async with self.pool.acquire() as conn, conn.transaction():
            link = await self._owned(conn, space_id, link_id)
            await store.update_link(conn, space_id, link_id, scopes=_ordered(scopes))
        if link.state == "active":
            await self.refresh(space_id, only=link_id)
        return await self._reload(space_id, link_id)

    async def pause(self, space_id: str, link_id: str) -> store.Link:
        async with self.pool.acquire() as conn, conn.transaction():
            link = await self._owned(conn, space_id, link_id)
            if link.state == "active":
                await store.update_link(conn, space_id, link_id, state="paused")
        await self._remove_row(link)
        return await self._reload(space_id, link_id)

    async def resume(self, space_id: str, link_id: str) -> store.Link:
        async with self.pool.acquire() as conn, conn.transaction():
            link = await self._owned(conn, space_id, link_id)
            if link.state == "paused":
                await store.update_link(
                    conn, space_id, link_id, state="active", new_generation=True
                )
        await self.refresh(space_id, only=link_id)
        return await self._reload(space_id, link_id)

    async def revoke(self, space_id: str, link_id: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            link = await self._owned(conn, space_id, link_id)
            await store.update_link(conn, space_id, link_id, state="revoked")
        await self._remove_row(link)

    async def audit(self, space_id: str, limit: int = 200) -> list[store.AuditRow]:
        return await store.list_audit(self.pool, space_id, limit)

    # -- the caregiver -------------------------------------------------------------------

    async def accept(
        self, caregiver_user_id: str, caregiver_space_id: str, code: str, label: str | None
    ) -> store.Link:
        link_id = "cl" + secrets.token_hex(8)
        async with self.pool.acquire() as conn, conn.transaction():
            taken = await store.take_invitation(conn, _hash(code), self.clock())
            if taken is None:
                raise NotFound(
                    "this code is not valid: it may have expired or been used already",
                    code=Code.INVITATION_INVALID,
                )
            space_id, user_id, scopes = taken
            if user_id == caregiver_user_id:
                raise Conflict("you cannot be your own caregiver", code=Code.OWN_INVITATION)
            name = await conn.fetchval("SELECT display_name FROM users WHERE id = $1", user_id)
            created = await store.create_link(
                conn,
                space_id=space_id,
                link_id=link_id,
                user_id=user_id,
                caregiver_user_id=caregiver_user_id,
                caregiver_space_id=caregiver_space_id,
                label=(label or str(name or "")).strip()[:80] or "them",
                scopes=scopes,
            )
            if not created:
                raise Conflict("you already care for this person", code=Code.ALREADY_LINKED)
        await self.refresh(space_id, only=link_id)
        return await self._reload(space_id, link_id)

    async def people(self, caregiver_user_id: str) -> list[store.Link]:
        return await store.links_of_caregiver(self.pool, caregiver_user_id)

    async def leave(self, caregiver_user_id: str, link_id: str) -> None:
        link = await store.link_for_caregiver(self.pool, caregiver_user_id, link_id)
        if link is None:
            raise NotFound("you do not care for anyone with this link")
        async with self.pool.acquire() as conn, conn.transaction():
            await store.update_link(conn, link.space_id, link_id, state="revoked")
        await self._remove_row(link)

    async def summary_for(
        self, caregiver_user_id: str, link_id: str, channel: Channel
    ) -> tuple[store.Link, dict[str, Any], dt.datetime]:
        """The live summary for a caregiver, audited. Paused or revoked: not found."""
        link = await store.link_for_caregiver(self.pool, caregiver_user_id, link_id)
        if link is None or link.state != "active":
            raise NotFound("you do not care for anyone with this link")
        now = self.clock()
        summary = await self._compute(link, now)
        await store.add_audit(self.pool, link, channel)
        return link, summary, now

    # -- the summaries -------------------------------------------------------------------

    async def refresh(self, space_id: str, *, only: str | None = None) -> int:
        """Recompute and write the summary row of every active link of ``space_id``."""
        links = await store.active_links(self.pool, space_id)
        now = self.clock()
        written = 0
        inputs = await store.summary_inputs(self.pool, space_id, now) if links else None
        failed: Exception | None = None
        for link in links:
            if only is not None and link.id != only:
                continue
            assert inputs is not None
            fields = {
                "display_name": link.label,
                "scopes": link.scopes,
                "summary": self._build(link, inputs, now),
                "computed_at": now.isoformat(),
            }
            try:
                await self.sync.server_write(
                    link.caregiver_space_id,
                    "care_summaries",
                    link.summary_id,
                    fields,
                    create=True,
                    retired=RETIRED_FIELDS,
                )
            except Exception as exc:  # the other caregivers still get theirs
                log.warning("care summary: writing one failed (%s)", type(exc).__name__)
                failed = exc
                continue
            written += 1
        if failed is not None:
            raise failed  # the job retries; the summaries written stay written
        return written

    async def _compute(self, link: store.Link, now: dt.datetime) -> dict[str, Any]:
        inputs = await store.summary_inputs(self.pool, link.space_id, now)
        return self._build(link, inputs, now)

    @staticmethod
    def _build(link: store.Link, inputs: store.SummaryInputs, now: dt.datetime) -> dict[str, Any]:
        """The granted scopes' sections; a section that cannot be computed is left out
        (and logged), so one bad value never hides the others — alerts above all."""
        if inputs.unreadable:
            log.warning("care summary: left out %d rows it cannot read", inputs.unreadable)
        settings = inputs.settings or {}
        grace = settings.get("check_in_grace_min")
        out: dict[str, Any] = {}
        for scope in link.scopes:
            try:
                out |= build_summary(
                    [scope],
                    now=now,
                    zone=Budget.from_settings(settings).zone,
                    check_ins=inputs.check_ins,
                    touches=inputs.touches,
                    deadline=clock_time(settings.get("check_in_deadline")),
                    grace_min=grace if isinstance(grace, int) else 30,
                    alerts=inputs.alerts,
                    isolation_risk=inputs.isolation_risk,
                    viewer=link.id,
                )
            except Exception as exc:  # one section's failure must not hide the others
                log.warning("care summary: left out %s (%s)", scope, type(exc).__name__)
        return out

    async def _remove_row(self, link: store.Link) -> None:
        await self.sync.server_write(
            link.caregiver_space_id, "care_summaries", link.summary_id, None
        )

    async def _owned(self, conn: Any, space_id: str, link_id: str) -> store.Link:
        link = await store.link_for_owner(conn, space_id, link_id, lock=True)
        if link is None:
            raise NotFound("you have no caregiver with this link")
        return link

    async def _reload(self, space_id: str, link_id: str) -> store.Link:
        async with self.pool.acquire() as conn:
            link = await store.link_for_owner(conn, space_id, link_id)
        if link is None:
            raise NotFound("you have no caregiver with this link")
        return link


def _ordered(scopes: Sequence[str]) -> list[str]:
    """Known scopes, once each, in the catalogue's order."""
    return [s for s in SCOPES if s in set(scopes)]

"""Deleting an account: nothing of the person remains, and it finishes whatever happens.

Two halves (decision 0019):

* :meth:`Erasure.request` — the person asked (API or web page), in one transaction: the
  sign-in is scrubbed, every device and session is signed out, and an ``account_erase``
  job is queued. After the commit every device's event streams end (this process at once,
  the others through ``kith:sessions``) and the workers are woken.
* :meth:`Erasure.run` — the job, in steps that can each be re-run: (0) the person's data
  key is destroyed, so their private text is unreadable from then on wherever a copy of it
  lies — a backup included (decision 0021); (1) every caregiver link
  of the person's is ended — the summary in each caregiver's space becomes a tombstone
  (their devices drop it on their next pull), queued pushes about the person are dropped
  and each caregiver's devices are told sharing ended, once; (2) the links they held as a
  caregiver end and their views in other people's audit trails stop naming them; (3) one
  transaction deletes everything else — every row of their space in every table, their
  devices, sessions, refresh tokens, the job itself — and the user. A worker killed
  between steps leaves the job to be taken again when its lease expires.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec

from service.jobs import Job, Kind, Permanent
from service.store import jobs as jobs_store
from service.store import keys as keys_store
from service.store import lifecycle as store
from service.store import push as push_store
from service.sync.service import SyncService

__all__ = ["Erasure", "OnRevoke"]

log = logging.getLogger("kith.lifecycle")

#: Told after a device's sessions ended: ``(user_id, device_id, keep)``, as
#: ``service.accounts.service.OnRevoke`` (``Realtime.session_revoked`` in the API,
#: ``ChangeNotifier.session_revoked`` in the worker).
OnRevoke = Callable[[str, str, str | None], Awaitable[None]]

ENDED_TITLE = "{label} stopped sharing"
ENDED_BODY = "{label} closed their Kith account. Their summary has been removed."
_payload = msgspec.json.Encoder()


class Erasure:
    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        sync: SyncService,
        *,
        on_revoke: OnRevoke | None = None,
        wake_workers: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._pool = pool
        self._sync = sync
        self._on_revoke = on_revoke
        self._wake = wake_workers

    async def request(self, user_id: str) -> bool:
        """Start erasing the account (idempotent); False if there is no such account."""
        async with self._pool.acquire() as conn, conn.transaction():
            start = await store.begin_erasure(conn, user_id, Kind.ACCOUNT_ERASE)
        if start is None:
            return False
        await self._signed_out(user_id, start.device_ids)
        if self._wake is not None:
            await self._wake()
        if start.started:
            log.info("account erasure requested")  # no ids: the log outlives the account
        return True

    async def run(self, job: Job) -> None:
        """The ``account_erase`` job: every step, each safe to run again."""
        space_id, user_id = job.space_id, job.payload.get("user_id")
        if not space_id or not isinstance(user_id, str) or not user_id:
            raise Permanent("account_erase without a space or user")
        await self._destroy_key(space_id)
        await self._end_links_as_person(space_id)
        await self._end_links_as_caregiver(user_id)
        devices = await store.device_ids(self._pool, user_id)
        async with self._pool.acquire() as conn, conn.transaction():
            await store.erase_account(conn, user_id, space_id)
        # Once more, from here: in case the requesting process could not announce it.
        await self._signed_out(user_id, devices)
        log.info("account erased")

    async def _destroy_key(self, space_id: str) -> None:
        """First, in its own statement: once this commits, every copy of the person's
        private text — in the rows deleted below, in the backups that hold them — is
        ciphertext without a key. (A push still in flight when the devices were signed out
        may make a new key; the last step deletes that one with the rest.)"""
        if self._sync.private is not None:
            self._sync.private.forget(space_id)  # this process's copy; others' expire
        await keys_store.destroy_key(self._pool, space_id)

    async def _end_links_as_person(self, space_id: str) -> None:
        for link in await store.links_as_person(self._pool, space_id):
            # The tombstone first: a re-run after a crash here writes nothing new (deletes
            # are final), and the link is only marked ended once its summary is gone.
            # (LookupError: the caregiver's own account was erased meanwhile.)
            with contextlib.suppress(LookupError):
                await self._sync.server_write(
                    link.caregiver_space_id, "care_summaries", link.summary_id, None
                )
            async with self._pool.acquire() as conn, conn.transaction():
                await store.drop_care_pushes_about(conn, link.caregiver_space_id, space_id)
                if await store.end_link(conn, link.space_id, link.id):
                    await self._tell_caregiver(conn, link)

    async def _tell_caregiver(self, conn: Any, link: store.LinkEnd) -> None:
        """Queue one push per device of the caregiver's, in the transaction that ends the
        link (so they are told exactly once). The collapse id names only the link."""
        for device_id in await push_store.push_devices(conn, link.caregiver_space_id):
            payload = {
                "device_id": device_id,
                "collapse_id": f"care-ended-{link.id}",
                "title": ENDED_TITLE.format(label=link.label),
                "body": ENDED_BODY.format(label=link.label),
                "time_sensitive": False,
            }
            await jobs_store.enqueue(
                conn,
                Kind.CARE_PUSH,
                _payload.encode(payload).decode(),
                space_id=link.caregiver_space_id,
                max_attempts=12,
            )

    async def _end_links_as_caregiver(self, user_id: str) -> None:
        for link in await store.links_as_caregiver(self._pool, user_id):
            async with self._pool.acquire() as conn, conn.transaction():
                await store.end_link(conn, link.space_id, link.id)
        await store.anonymise_caregiver_audit(self._pool, user_id)

    async def _signed_out(self, user_id: str, device_ids: list[str]) -> None:
        if self._on_revoke is None:
            return
        for device_id in device_ids:
            await self._on_revoke(user_id, device_id, None)

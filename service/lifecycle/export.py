"""Exporting everything Kith holds about a person, as one JSON document, streamed.

The document is ``schemas.account.AccountExport`` (format ``kith-export``, version 1),
written piece by piece: the records and the conflict history a page at a time (keyset pages
of :data:`PAGE` rows), each page encoded and sent before the next is read, so a space of
100,000 records is exported in the memory of one page (``bench/account_export.py``
measures it). Everything is read in one REPEATABLE READ, READ ONLY transaction, so the
document is one consistent moment even while the person's phones keep syncing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec

from schemas.account import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    ExportAccount,
    ExportConflict,
    ExportConsent,
    ExportDevice,
    ExportLink,
    ExportNudge,
    ExportRecord,
    ExportView,
)
from schemas.auth import IdentityOut
from schemas.tables import TABLES
from service.errors import NotFound
from service.store import lifecycle as store
from service.sync.private_text import PRIVATE_FIELDS, PrivateText, SpaceCipher, has_sealed

__all__ = ["PAGE", "Exporter"]

PAGE = 500
_encode = msgspec.json.Encoder().encode


def _items(values: list[Any]) -> bytes:
    """``values`` as the inside of a JSON array (no brackets), to continue one."""
    return _encode(values)[1:-1]


class Exporter:
    def __init__(
        self, pool: asyncpg.Pool[Any], private: PrivateText | None, *, page: int = PAGE
    ) -> None:
        """``private`` opens the person's private text (the export is in the clear)."""
        self._pool = pool
        self._private = private
        self._page = page

    async def _opener(self, space_id: str) -> SpaceCipher:
        if self._private is None:
            raise RuntimeError("sealed text to open, but the exporter has no keys")
        return await self._private.opener(space_id)

    async def open(self, user_id: str, space_id: str) -> AsyncIterator[bytes]:
        """Check the account is there (404 before anything is sent), then return the
        document's chunks. The connection is held until the last chunk is sent or the
        client goes away."""
        if await store.export_profile(self._pool, user_id) is None:
            raise NotFound("there is no account to export")
        return self._chunks(user_id, space_id)

    async def _chunks(self, user_id: str, space_id: str) -> AsyncIterator[bytes]:
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            profile = await store.export_profile(conn, user_id)
            if profile is None:  # erased between the check and the snapshot
                return
            yield b'{"format":' + _encode(EXPORT_FORMAT)
            yield b',"version":' + _encode(EXPORT_VERSION)
            yield b',"exported_at":' + _encode(dt.datetime.now(dt.UTC))
            yield b',"account":' + _encode(_account(profile))
            devices = [_device(d) for d in await store.export_devices(conn, user_id)]
            yield b',"devices":' + _encode(devices)
            identities = [IdentityOut(**i) for i in await store.export_identities(conn, user_id)]
            yield b',"identities":' + _encode(identities)
            yield b',"records":{'
            cipher: SpaceCipher | None = None  # fetched once, at the first sealed text
            for n, table in enumerate(TABLES):
                yield (b"," if n else b"") + _encode(table) + b":["
                first = True
                async for rows in store.export_records(conn, space_id, table, page=self._page):
                    if cipher is None and any(has_sealed(r[1]) for r in rows):
                        cipher = await self._opener(space_id)
                    opened = cipher.open_json if cipher is not None else _as_is
                    records = [
                        ExportRecord(r[0], msgspec.Raw(opened(table, r[0], r[1])), *r[2:])
                        for r in rows
                    ]
                    yield (b"" if first else b",") + _items(records)
                    first = False
                yield b"]"
            yield b'},"conflicts":['
            first = True
            async for page in store.export_conflicts(conn, space_id, page=self._page):
                if cipher is None and any(_sealed(c) for c in page):
                    cipher = await self._opener(space_id)
                conflicts = [_conflict(c, cipher if _sealed(c) else None) for c in page]
                yield (b"" if first else b",") + _items(conflicts)
                first = False
            nudges = [ExportNudge(**n) for n in await store.export_nudges(conn, space_id)]
            yield b'],"nudges":' + _encode(nudges)
            links = [ExportLink(**x) for x in await store.export_links(conn, space_id, user_id)]
            yield b',"caregiver_links":' + _encode(links)
            views = [ExportView(**v) for v in await store.export_audit(conn, space_id)]
            yield b',"summary_views":' + _encode(views) + b"}"


def _account(p: dict[str, Any]) -> ExportAccount:
    return ExportAccount(
        user_id=p["id"],
        email=p["email"],
        display_name=p["display_name"],
        time_zone=p["time_zone"],
        created_at=p["created_at"],
        consent=ExportConsent(
            p["terms_version"], p["terms_accepted_at"], p["wellbeing_consent_at"]
        ),
    )


def _device(d: dict[str, Any]) -> ExportDevice:
    return ExportDevice(
        d["id"],
        d["platform"],
        d["name"],
        d["created_at"],
        d["last_seen_at"],
        d["revoked_at"],
        d["push_provider"],
    )


def _as_is(table: str, record_id: str, text: str) -> str:
    return text


def _sealed(c: dict[str, Any]) -> bool:
    return c["field"] in PRIVATE_FIELDS.get(c["tbl"], ()) and has_sealed(c["value"])


def _conflict(c: dict[str, Any], cipher: SpaceCipher | None) -> ExportConflict:
    value = msgspec.Raw(c["value"])
    if cipher is not None:
        opened = cipher.open_value(c["tbl"], c["record_id"], c["field"], msgspec.json.decode(value))
        value = msgspec.Raw(_encode(opened))
    return ExportConflict(
        c["tbl"],
        c["record_id"],
        c["field"],
        value,
        c["hlc"],
        c["winner_hlc"],
        c["reason"],
        c["recorded_at"],
    )

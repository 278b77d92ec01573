"""Private text at rest: what a person writes for themselves is sealed under their own key.

The fields a table declares ``private`` (``schemas/tables.py``: a contact's notes, an
interaction's and a check-in's note, a reflection's body and gratitude) are stored sealed
(``service/infra/crypto.py``) wherever a value is kept: the records' JSONB and the conflict
history. The sync engine seals them on the way in — before the merge, so the stored state,
the merge and the conflict history only ever see sealed values — and opens them on the way
out: pull pages, the conflict history, the WatermelonDB pull, the export. Empty text stays
empty (nothing to hide; no key needed). Decision 0021 says why, and what is not sealed.

Each person's data key is made on their first private write, stored wrapped
(``service/store/keys.py``), and destroyed first when the account is erased, which makes
every copy of their text — backups included — unreadable. Unwrapped keys are cached per
process (bounded, for ``key_cache_ttl_s``), so a pull unwraps once, not per record.

A stored value is told sealed by its prefix; a value written before migration 0011 is
plain text and is returned as it is, until ``kith seal-existing``
(:meth:`PrivateText.seal_existing`) seals it where it lies, with the service running.
"""

from __future__ import annotations

import re
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from schemas.tables import TABLES
from service.infra.crypto import (
    SEALED_PREFIX,
    DataKey,
    MasterKeys,
    Undecryptable,
    UnknownMasterKey,
    new_data_key,
)
from service.store import keys as store
from service.store import private_text as clear_store
from service.store import sync as sync_store
from service.store.db import Connection

__all__ = [
    "PRIVATE_FIELDS",
    "SEALED_PATTERN",
    "PrivateText",
    "Rotation",
    "Sealing",
    "SpaceCipher",
    "has_sealed",
    "in_the_clear",
    "needs_sealing",
]

#: table -> its private fields, from their one declaration.
PRIVATE_FIELDS: dict[str, frozenset[str]] = {t: s.private for t, s in TABLES.items() if s.private}
#: How a sealed value starts inside JSON text: a quick test before any decoding.
_MARK = '"' + SEALED_PREFIX
_MARK_LEN = len(_MARK)
#: table -> each private field: its name, and its key as it stands before a value in JSON
#: text (PostgreSQL writes ``"notes": ``; compact JSON ``"notes":``).
_KEYS = {
    t: tuple((n, f'"{n}": ', f'"{n}":') for n in sorted(names))
    for t, names in PRIVATE_FIELDS.items()
}
_WELL_FORMED = SEALED_PREFIX + "[A-Za-z0-9+/]+={0,2}"
#: A well-formed sealed value, as a PostgreSQL regular expression: what ``kith
#: seal-existing`` leaves alone (text that merely starts like one is sealed like any other).
SEALED_PATTERN = f"^{_WELL_FORMED}$"
_sealed_value = re.compile(_WELL_FORMED)
#: Where the conflict history keeps private values: ``table.field``.
_PLACES = sorted(f"{t}.{n}" for t, names in PRIVATE_FIELDS.items() for n in names)
_decode = msgspec.json.decode
_encode = msgspec.json.encode


def needs_sealing(table: str, fields: Mapping[str, Any]) -> bool:
    """Whether ``fields`` (as a device or the server wrote them: text, never sealed) holds
    private text to seal — any that is not empty, even text that looks sealed."""
    private = PRIVATE_FIELDS.get(table)
    if not private:
        return False
    for name in private & fields.keys():
        value = fields[name]
        if isinstance(value, str) and value:
            return True
    return False


def has_sealed(text: str) -> bool:
    """Whether JSON ``text`` may hold a sealed value (a false yes costs a decode)."""
    return _MARK in text


class SpaceCipher:
    """One person's data key, bound to their space: seals and opens private fields, each
    value tied to its table, record and field (a value moved elsewhere does not open)."""

    __slots__ = ("_key", "_prefix")

    def __init__(self, space_id: str, key: DataKey) -> None:
        self._key = key
        self._prefix = space_id.encode() + b"\0"

    def __repr__(self) -> str:
        return "SpaceCipher(…)"

    def _aad(self, table: str, record_id: str, name: str) -> bytes:
        return self._prefix + f"{table}\0{record_id}\0{name}".encode()

    def seal_value(self, table: str, record_id: str, name: str, text: str) -> str:
        """``text`` sealed for its place: the same string a push of it would store."""
        return self._key.seal(text, self._aad(table, record_id, name))

    def seal_fields(self, table: str, record_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """``fields`` as written (text, never sealed: a person may well write something
        that starts like a sealed value) with its private text sealed — a copy; the same
        dict if there is none."""
        private = PRIVATE_FIELDS.get(table)
        if not private or not (private & fields.keys()):
            return fields
        out = fields
        for name in private & fields.keys():
            value = fields[name]
            if isinstance(value, str) and value:
                if out is fields:
                    out = dict(fields)
                out[name] = self.seal_value(table, record_id, name, value)
        return out

    def open_value(self, table: str, record_id: str, name: str, value: Any) -> Any:
        if isinstance(value, str) and value.startswith(SEALED_PREFIX):
            return self._key.open(value, self._aad(table, record_id, name))
        return value

    def open_fields(self, table: str, record_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """``fields`` (a decoded record) with its private text opened, in place."""
        for name in PRIVATE_FIELDS.get(table, frozenset()) & fields.keys():
            fields[name] = self.open_value(table, record_id, name, fields[name])
        return fields

    def open_json(self, table: str, record_id: str, text: str) -> str:
        """A record's fields as JSON text, private text opened (``text`` itself if it
        holds none: most records of a pull cost one substring test).

        Each sealed value is replaced where it stands, the rest of the text untouched: a
        pull's hottest work, a fraction of the cost of decoding and re-encoding the record.
        A ``"kith:1:`` counts only right after a private field's key: inside a JSON string
        every quote is escaped, so no value can spell ``"notes": "kith:1:``; and a value
        that does not open under this record's place fails loudly."""
        keys = _KEYS.get(table)
        start = text.find(_MARK) if keys is not None else -1
        if start < 0 or keys is None:
            return text
        parts: list[str] = []
        done = 0
        while start >= 0:
            end = text.find('"', start + 1)
            if end < 0:
                break
            for name, spaced, tight in keys:
                if text.endswith((spaced, tight), 0, start):
                    aad = self._aad(table, record_id, name)
                    plain = self._key.open_payload(text[start + _MARK_LEN : end], aad)
                    parts += (text[done:start], _encode(plain).decode())
                    done = end + 1
                    break
            start = text.find(_MARK, end + 1)
        if not parts:
            return text
        parts.append(text[done:])
        return "".join(parts)


@dataclass(frozen=True, slots=True)
class Rotation:
    """What ``kith rotate-keys`` did: keys re-wrapped under the current master key, and
    keys it could not re-wrap (under a master key not configured here, or not opening)."""

    rewrapped: int
    unknown_kid: int
    undecryptable: int


@dataclass(frozen=True, slots=True)
class Sealing:
    """What ``kith seal-existing`` did: values sealed, per table (``conflicts``: the
    conflict history), and spaces with text in the clear it could not seal because their
    key is under a master key not configured here, or does not open."""

    sealed: dict[str, int]
    unreadable: int


class PrivateText:
    """Every person's data key, made, unwrapped (cached) and re-wrapped here."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        keys: MasterKeys,
        *,
        cache_size: int = 10_000,
        cache_ttl_s: float = 300,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._keys = keys
        self._size = cache_size
        self._ttl = cache_ttl_s
        self._now = now
        self._cache: OrderedDict[str, tuple[float, SpaceCipher]] = OrderedDict()

    def _cached(self, space_id: str) -> SpaceCipher | None:
        hit = self._cache.get(space_id)
        if hit is None:
            return None
        if hit[0] < self._now():
            del self._cache[space_id]
            return None
        self._cache.move_to_end(space_id)
        return hit[1]

    def _keep(self, wrapped: store.WrappedKey) -> SpaceCipher:
        raw = self._keys.unwrap(wrapped.space_id, wrapped.master_kid, wrapped.wrapped)
        cipher = SpaceCipher(wrapped.space_id, DataKey(raw))
        self._cache[wrapped.space_id] = (self._now() + self._ttl, cipher)
        self._cache.move_to_end(wrapped.space_id)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return cipher

    async def for_reading(self, space_id: str) -> SpaceCipher | None:
        """The space's cipher, or None if it has no key (it never wrote private text, or
        its account was erased)."""
        cipher = self._cached(space_id)
        if cipher is not None:
            return cipher
        wrapped = await store.key_of(self._pool, space_id)
        return None if wrapped is None else self._keep(wrapped)

    async def for_writing(self, space_id: str) -> SpaceCipher:
        """The space's cipher, its key made (and committed) first if it has none."""
        cipher = await self.for_reading(space_id)
        if cipher is not None:
            return cipher
        kid, blob = self._keys.wrap(space_id, new_data_key())
        # Its own transaction, committed before anything is sealed with it (see create_key).
        async with self._pool.acquire() as conn:
            return self._keep(await store.create_key(conn, space_id, kid, blob))

    async def opener(self, space_id: str) -> SpaceCipher:
        """The cipher to open text known to be sealed; the key must exist."""
        cipher = await self.for_reading(space_id)
        if cipher is None:
            raise Undecryptable("this space's key is gone: its sealed text cannot be read")
        return cipher

    def forget(self, space_id: str) -> None:
        """Drop the space's key from this process's cache (its account is being erased)."""
        self._cache.pop(space_id, None)

    async def rotate(self, *, batch: int = 500) -> Rotation:
        """Re-wrap every key not under the current master key, ``batch`` at a time, while
        the service runs: readers unwrap under any configured master key, each key is
        replaced only if unchanged since it was read, and the data keys themselves (and so
        every sealed value) stay as they are."""
        current = self._keys.current
        after, rewrapped, unknown, broken = "", 0, 0, 0
        while True:
            page = await store.keys_not_under(self._pool, current, after, batch)
            if not page:
                return Rotation(rewrapped, unknown, broken)
            after = page[-1].space_id
            for old in page:
                try:
                    raw = self._keys.unwrap(old.space_id, old.master_kid, old.wrapped)
                except UnknownMasterKey:
                    unknown += 1
                    continue
                except Undecryptable:
                    broken += 1
                    continue
                kid, blob = self._keys.wrap(old.space_id, raw)
                new = store.WrappedKey(old.space_id, kid, blob)
                rewrapped += await store.rewrap(self._pool, old, new)

    async def seal_existing(self, *, batch: int = 500) -> Sealing:
        """Seal every private value still stored in the clear (written before migration
        0011), in every space, ``batch`` at a time, while the service runs.

        Each page is sealed under the space's lock (the one a push takes), and each value
        replaced only if it is still the text that was read, so no write is lost; a value
        is sealed exactly as a push of it would be (the nonce is synthetic), so pulls
        return the same text and the merge compares what it would have stored. Nothing
        moves a sequence number. A space whose account is being erased is skipped (no key
        is made for it). Killed halfway, it leaves every value either clear or sealed;
        run again, it finds only what is left."""
        if batch < 1:
            raise ValueError("batch must be at least 1")
        sealed = dict.fromkeys([*clear_store.PRIVATE_TABLES, "conflicts"], 0)
        after, unreadable = "", 0
        while True:
            spaces = await clear_store.spaces_after(self._pool, after, batch)
            if not spaces:
                return Sealing(sealed, unreadable)
            after = spaces[-1]
            for space_id in spaces:
                done = Counter[str]()
                try:
                    await self._seal_space(space_id, batch, done)
                except (UnknownMasterKey, Undecryptable):
                    unreadable += 1  # its key does not open here: its text stays as it is
                for table, n in done.items():
                    sealed[table] += n

    async def _seal_space(self, space_id: str, batch: int, done: Counter[str]) -> None:
        # The key is looked up only once there is text to seal: a space without any (most,
        # on a rerun) costs a read per table and never touches its key.
        cipher: SpaceCipher | None = None
        for table in (*clear_store.PRIVATE_TABLES, "conflicts"):
            # First without the lock: a table with nothing to seal (all of them, on a rerun)
            # costs one read and keeps no push waiting.
            if not await self._has_clear(table, space_id):
                continue
            after: str | int | None = 0 if table == "conflicts" else ""
            while after is not None:
                async with self._pool.acquire() as conn, conn.transaction():
                    # The sync engine's lock, held for one page (a few ms): a push or a
                    # server write to this space runs wholly before or after it.
                    try:
                        await sync_store.lock_space(conn, space_id)
                    except LookupError:
                        return  # erased meanwhile
                    if await clear_store.being_erased(conn, space_id):
                        return
                    page = await self._seal_page(conn, cipher, table, space_id, after, batch)
                if page is None:
                    # Text to seal and no cipher yet: the key is made, if new, as a push
                    # makes it — committed on its own, under the space's share lock, never
                    # for a space that is gone — outside the lock above (the key's
                    # statement would wait for it).
                    try:
                        cipher = await self.for_writing(space_id)
                    except LookupError:
                        return
                    continue
                done[table] += page[0]
                after = page[1]

    async def _has_clear(self, table: str, space_id: str) -> bool:
        if table == "conflicts":
            return bool(
                await clear_store.clear_conflicts(
                    self._pool, space_id, _PLACES, SEALED_PATTERN, 0, 1
                )
            )
        names = sorted(PRIVATE_FIELDS[table])
        found = await clear_store.clear_records(
            self._pool, table, space_id, names, SEALED_PATTERN, "", 1
        )
        return bool(found)

    async def _seal_page(
        self,
        conn: Connection,
        cipher: SpaceCipher | None,
        table: str,
        space_id: str,
        after: str | int,
        batch: int,
    ) -> tuple[int, str | int | None] | None:
        """The next page of ``table``'s clear values in the space, sealed: (values sealed,
        the cursor after the page or None at the end); None if it found text to seal but
        ``cipher`` is None."""
        if table == "conflicts":
            kept = await clear_store.clear_conflicts(
                conn, space_id, _PLACES, SEALED_PATTERN, int(after), batch
            )
            if not kept:
                return 0, None
            if cipher is None:
                return None
            writes = [
                (c.id, c.value, _seal_json(cipher, c.table, c.record_id, c.field, c.value))
                for c in kept
            ]
            n = await clear_store.seal_conflicts(conn, space_id, writes)
            return n, (kept[-1].id if len(kept) == batch else None)
        names = sorted(PRIVATE_FIELDS[table])
        rows = await clear_store.clear_records(
            conn, table, space_id, names, SEALED_PATTERN, str(after), batch
        )
        if not rows:
            return 0, None
        if cipher is None:
            return None
        values: dict[str, int] = {}
        record_writes: list[tuple[str, str, str]] = []
        for r in rows:
            fields = _decode(r.fields)
            clear = {n: v for n in names if in_the_clear(v := fields.get(n))}
            if clear:
                out = {n: cipher.seal_value(table, r.id, n, v) for n, v in clear.items()}
                record_writes.append((r.id, _encode(clear).decode(), _encode(out).decode()))
                values[r.id] = len(out)
        changed = await clear_store.seal_records(conn, table, space_id, record_writes)
        return sum(values[i] for i in changed), (rows[-1].id if len(rows) == batch else None)


def in_the_clear(value: Any) -> bool:
    """Whether a stored private value is text in the clear: a non-empty string that is not
    a well-formed sealed value (what ``kith seal-existing`` seals; the SQL that finds such
    values applies :data:`SEALED_PATTERN`, the same test)."""
    return isinstance(value, str) and bool(value) and not _sealed_value.fullmatch(value)


def _seal_json(cipher: SpaceCipher, table: str, record_id: str, name: str, value: str) -> str:
    """A kept value (JSON text of a string) as the JSON text of its sealed form."""
    return _encode(cipher.seal_value(table, record_id, name, _decode(value))).decode()

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
plain text and is returned as it is.
"""

from __future__ import annotations

import time
from collections import OrderedDict
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

__all__ = [
    "PRIVATE_FIELDS",
    "PrivateText",
    "Rotation",
    "SpaceCipher",
    "has_sealed",
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
                out[name] = self._key.seal(value, self._aad(table, record_id, name))
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

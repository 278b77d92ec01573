"""``kith seed``: fill a database with a generated population, for benchmarks and demos.

Each person ``i`` becomes a user ``seed-{i}@example.invalid`` with a space, a settings row
and the contacts, interactions and reflections that :mod:`service.rules.synthetic`
generates for them, stored exactly as sync stores records: ``fields`` JSON, a server HLC,
and the space's own sequence numbers (settings 1, then contacts, interactions,
reflections), with ``spaces.seq`` at the last of them — so a device that logs in pulls
the whole history, and the rules engine reads it like any other.

Deterministic from ``--seed`` (and ``--now``, which the timelines end at): ids, emails and
records are the same on every run. One Argon2 hash is computed and shared by every
account (password ``--password``). People are generated in a helper process while the
previous chunk is being copied in, one transaction per chunk.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, TextIO

import asyncpg
import msgspec
from argon2 import PasswordHasher

from schemas.tables import SETTINGS_ID, TABLES
from service.rules.synthetic import generate_person
from service.store import seed as store
from sync.hlc import format_hlc

__all__ = ["SeedError", "SeedOptions", "SeedResult", "build_chunk", "seed_database"]

_encode = msgspec.json.encode


class SeedError(Exception):
    """A seed that cannot run as asked (the message says why)."""


@dataclass(frozen=True, slots=True)
class SeedOptions:
    people: int
    contacts: int = 30
    days: int = 730
    seed: int = 1
    start: int = 0  # index of the first person (to add people to a seeded database)
    now: dt.datetime | None = None  # the timelines end here; default: the current time
    chunk: int = 250  # people per transaction
    password: str = "kith-seed-password"  # noqa: S105 -- generated demo accounts
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536


@dataclass(frozen=True, slots=True)
class SeedResult:
    people: int
    rows: dict[str, int]
    seconds: float


@dataclass(frozen=True, slots=True)
class Chunk:
    users: list[store.SeedUser]
    rows: dict[str, list[store.SyncedRow]]


def _hex_id(seed: int, kind: str, index: int) -> str:
    """A uuid-sized hex id, the same for the same seed and person."""
    return hashlib.sha256(f"kith-seed:{seed}:{kind}:{index}".encode()).hexdigest()[:32]


def build_chunk(
    seed: int,
    first: int,
    count: int,
    now: dt.datetime,
    contacts: int,
    days: int,
    password_hash: str,
    hlc: str,
) -> Chunk:
    """People ``first`` .. ``first + count - 1`` as rows ready for COPY (pure, picklable:
    runs in the helper process)."""
    settings_defaults = TABLES["settings"].defaults
    clocks_empty = "{}"
    users: list[store.SeedUser] = []
    rows: dict[str, list[store.SyncedRow]] = {t: [] for t in store.SEEDED_TABLES}
    for index in range(first, first + count):
        person = generate_person(seed, index, now, contacts=contacts, days=days)
        space_id = _hex_id(seed, "space", index)
        time_zone = str(person.settings["time_zone"])
        settings = {**settings_defaults, **person.settings}
        seq = 1
        rows["settings"].append(
            (
                space_id,
                SETTINGS_ID,
                _encode(settings).decode(),
                _encode({"time_zone": hlc}).decode(),
                False,
                "",
                hlc,
                seq,
            )
        )
        for table, records in (
            ("contacts", person.contacts),
            ("interactions", person.interactions),
            ("reflections", person.reflections),
        ):
            out = rows[table]
            for record_id, fields in records.items():
                seq += 1
                out.append(
                    (
                        space_id,
                        record_id,
                        _encode(fields).decode(),
                        clocks_empty,
                        False,
                        "",
                        hlc,
                        seq,
                    )
                )
        users.append(
            store.SeedUser(
                id=_hex_id(seed, "user", index),
                space_id=space_id,
                email=f"seed-{index}@example.invalid",
                password_hash=password_hash,
                display_name=f"Seed person {index}",
                time_zone=time_zone,
                seq=seq,
            )
        )
    return Chunk(users, rows)


class ProgressBar:
    """A one-line text bar on a stream (stderr), redrawn at most a few times a second."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        self._total = max(total, 1)
        self._stream = stream if stream is not None else sys.stderr
        self._width = width
        self._start = time.monotonic()
        self._drawn = 0.0

    def update(self, done: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._drawn < 0.25:
            return
        self._drawn = now
        share = min(done / self._total, 1.0)
        filled = int(share * self._width)
        elapsed = now - self._start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self._total - done) / rate if rate > 0 else 0.0
        bar = "#" * filled + "-" * (self._width - filled)
        self._stream.write(
            f"\r[{bar}] {done:,}/{self._total:,} people {share:4.0%} "
            f"{rate:,.0f}/s {elapsed:5.0f}s elapsed, ~{eta:.0f}s left "
        )
        if final:
            self._stream.write("\n")
        self._stream.flush()


async def seed_database(
    database_url: str,
    options: SeedOptions,
    *,
    progress: Callable[[int], None] | None = None,
) -> SeedResult:
    """Insert ``options.people`` generated people; ``progress`` gets the count done so far."""
    if options.people < 1:
        raise SeedError("--people must be at least 1")
    started = time.monotonic()
    now = options.now or dt.datetime.now(dt.UTC)
    hasher = PasswordHasher(
        time_cost=options.argon2_time_cost, memory_cost=options.argon2_memory_kib, parallelism=1
    )
    password_hash = hasher.hash(options.password)  # once, shared by every account
    hlc = format_hlc(int(time.time() * 1000), 0, "seed")
    first, end = options.start, options.start + options.people
    starts = list(range(first, end, options.chunk))
    counts: dict[str, int] = dict.fromkeys(store.SEEDED_TABLES, 0)
    conn: asyncpg.Connection[Any] = await asyncpg.connect(database_url)
    loop = asyncio.get_running_loop()
    try:
        taken = await store.existing_emails(
            conn, [f"seed-{i}@example.invalid" for i in (first, end - 1)]
        )
        if taken:
            raise SeedError(
                f"{taken[0]} already exists: seed a fresh database, or pass --start "
                "to add people after the ones already there"
            )
        with ProcessPoolExecutor(max_workers=1) as pool:

            def submit(at: int) -> asyncio.Future[Chunk]:
                n = min(options.chunk, end - at)
                return loop.run_in_executor(
                    pool,
                    build_chunk,
                    options.seed,
                    at,
                    n,
                    now,
                    options.contacts,
                    options.days,
                    password_hash,
                    hlc,
                )

            pending = submit(starts[0])
            done = 0
            for k in range(len(starts)):
                chunk = await pending
                if k + 1 < len(starts):  # generate the next chunk while this one is copied
                    pending = submit(starts[k + 1])
                try:
                    async with conn.transaction():
                        await store.insert_chunk(conn, chunk.users, chunk.rows)
                except asyncpg.UniqueViolationError as exc:
                    raise SeedError(
                        f"some of people {starts[k]}..{starts[k] + len(chunk.users) - 1} "
                        f"already exist ({exc.constraint_name}); seed a fresh database"
                    ) from None
                for table, records in chunk.rows.items():
                    counts[table] += len(records)
                done += len(chunk.users)
                if progress is not None:
                    progress(done)
        await conn.execute("ANALYZE users, spaces, settings, contacts, interactions, reflections")
    finally:
        await conn.close()
    return SeedResult(options.people, counts, time.monotonic() - started)

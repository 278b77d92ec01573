"""Sync throughput: one device pushes contacts, a fresh device of the same person pulls them.

Each is measured next to its ceiling, raw asyncpg doing the same rows' database work with
nothing around it:

* push — ``POST /v1/sync/push`` in batches of 500 over one keep-alive connection; ceiling:
  the same set-based upsert (``INSERT … SELECT FROM unnest(…) ON CONFLICT DO UPDATE``) of
  the same rows, batch for batch, into a scratch table shaped like ``contacts``.
* pull — ``POST /v1/sync/pull`` in pages of 1,000, the client decoding each page (record
  ``fields`` kept as raw JSON); ceiling: a keyset read on ``(space_id, seq)`` of the same
  columns from ``contacts``, 1,000 rows a page.

Request bodies, and the ceiling's JSON, are encoded before the clock starts: what is timed
is the server's work (or the database's) plus the client's HTTP. The same exchanges are
then replayed against the transport floor (:mod:`bench.http_floor`), which shows how much
of the gap is the HTTP stack itself rather than Kith.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, get_args

import asyncpg
import httpx
import msgspec

from bench import client
from bench.http_floor import Exchange, replay
from bench.measure import Plan, Result, Samples, rounds
from bench.servers import Stack
from bench.wire import Wire
from schemas.common import Circle, Relationship
from schemas.tables import TABLES

__all__ = ["Contact", "make_contacts", "push_pull"]

PUSH_BATCH = 500
PULL_PAGE = 1_000
PUSH_TARGET = 0.4
PULL_TARGET = 0.8

_encode = msgspec.json.encode


# -- the data ---------------------------------------------------------------------------

_FIRST = ("Ana", "Bruno", "Chloé", "Dmitri", "Esi", "Farah", "Gus", "Hana", "Ivo", "Jun")
_LAST = ("Almeida", "Brandt", "Costa", "Dubois", "Eze", "Fischer", "Gomes", "Haddad", "Ito")
_TAGS = ("school", "climbing", "book-club", "work", "neighbours", "choir", "uni", "running")
_NOTE = (
    "met at the market, loves bread and long walks; ask about her sister's new job and "
    "the garden. Prefers calls after dinner, not texts. Moving to Porto in spring maybe."
)
_WORDS = tuple(_NOTE.split())


@dataclass(frozen=True, slots=True)
class Contact:
    id: str
    fields: dict[str, Any]


def make_contacts(n: int, seed: int) -> list[Contact]:
    """``n`` contacts with the fields an app really fills in (seeded: same rows each run)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = rng.sample(_WORDS, len(_WORDS))
        out.append(
            Contact(
                f"{rng.getrandbits(128):032x}",  # a client-minted UUID-sized id
                {
                    "display_name": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
                    "relationship": rng.choice(get_args(Relationship)),
                    "circle": rng.choice(get_args(Circle)),
                    "cadence_days": rng.choice((7, 14, 30, 60, 90, 180)),
                    "notes": " ".join(words)[:100],
                    "tags": rng.sample(_TAGS, rng.randint(0, 3)),
                },
            )
        )
    return out


# -- the workload -----------------------------------------------------------------------


def _http(base_url: str) -> httpx.AsyncClient:
    """One keep-alive connection, as a device holds."""
    return httpx.AsyncClient(
        base_url=base_url, timeout=30.0, limits=httpx.Limits(max_connections=1)
    )


async def push_pull(stack: Stack, plan: Plan) -> AsyncIterator[Result]:
    contacts = make_contacts(plan.records, plan.seed)
    async with (
        _http(stack.base_url) as http,
        _http(stack.floor_url) as floor_http,
        Wire(stack.base_url) as wire,
        Wire(stack.floor_url) as floor_wire,
        _connect(stack.database_url) as conn,
    ):
        # A run may measure twice on one database (bench/citus_scale_out.py): start clean.
        await conn.execute("DROP TABLE IF EXISTS bench_contacts")
        await conn.execute("CREATE TABLE bench_contacts (LIKE contacts INCLUDING ALL)")

        kith, ceiling, floor = Samples(), Samples(), Samples()
        account: client.Account | None = None
        for r in rounds(plan):
            account = await client.register(http)
            hlcs = client.stamps(account.device_id, len(contacts))
            rows = [(c.id, c.fields, h) for c, h in zip(contacts, hlcs, strict=True)]
            bodies = client.push_bodies(account.device_id, "contacts", rows, PUSH_BATCH)
            exchanges: list[Exchange] = []
            kith.add(r, await client.push_batches(wire, account, bodies, exchanges))
            ceiling.add(r, await _ceiling_push(conn, f"ceiling-{r.index}", contacts, hlcs))
            floor.add(r, await replay(floor_http, floor_wire, exchanges, client.push_decoder))
        assert account is not None
        n = len(contacts)
        yield Result(
            f"push {n:,} contacts, batches of {PUSH_BATCH}",
            kith.rate(n),
            ceiling.rate(n),
            "records/s",
            PUSH_TARGET,
            _notes("push", n, kith, ceiling, floor),
        )

        # Pull what the last round pushed: its space holds the contacts and the settings row.
        space_id = await conn.fetchval("SELECT space_id FROM users WHERE id = $1", account.user_id)
        kith, ceiling, floor = Samples(), Samples(), Samples()
        resting, peak, exact = stack.api.rss(), 0, True
        pulled = 0
        for r in rounds(plan):
            device = await client.login(http, account.email)  # a fresh device: from scratch
            exchanges = []
            exact = stack.api.reset_peak_rss() and exact
            seconds, pulled = await client.pull_all(
                wire, device, PULL_PAGE, max_pages=n // PULL_PAGE + 5, record=exchanges
            )
            peak = max(peak, stack.api.peak_rss())
            kith.add(r, seconds)
            ceiling.add(r, await _ceiling_pull(conn, space_id, n))
            floor.add(r, await replay(floor_http, floor_wire, exchanges, client.pull_decoder))
        mib = 1024 * 1024
        yield Result(
            f"pull {pulled:,} records (fresh device), pages of {PULL_PAGE:,}",
            kith.rate(pulled),
            ceiling.rate(n),
            "records/s",
            PULL_TARGET,
            (
                *_notes("pull", pulled, kith, ceiling, floor, ceiling_items=n),
                f"pull — API RSS (Granian supervisor + worker): {resting / mib:.0f} MiB before "
                f"the pulls, peak {peak / mib:.0f} MiB during them"
                + ("" if exact else " (peak since start: could not reset the high-water mark)"),
            ),
        )


def _notes(
    name: str,
    items: int,
    kith: Samples,
    ceiling: Samples,
    floor: Samples,
    *,
    ceiling_items: int | None = None,
) -> tuple[str, ...]:
    """Spreads, and the transport floor with the ratio it leaves reachable: a device waits
    for each answer, so Kith's time is at least the floor's plus the database's."""
    f, c = floor.rate(items), ceiling.rate(ceiling_items or items)
    return (
        f"{name} — kith: {kith.spread()}",
        f"{name} — ceiling: {ceiling.spread()}",
        f"{name} — transport floor (same bytes through the lean client and Granian, no app): "
        f"{f:,.0f} records/s, {floor.spread()}; best reachable ratio ≈ {f / (f + c):.2f}",
    )


@asynccontextmanager
async def _connect(url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    """One asyncpg connection with the API pool's session settings (JIT off)."""
    conn: asyncpg.Connection[Any] = await asyncpg.connect(
        url, command_timeout=60, server_settings={"application_name": "kith-bench", "jit": "off"}
    )
    try:
        yield conn
    finally:
        await conn.close()


# -- the ceilings: raw asyncpg ----------------------------------------------------------

# The statement Kith's store runs for a push (service/store/sync.py), minus everything
# around it: no space lock, no read of the current state, no merge, no idempotency record.
_UPSERT = """
    INSERT INTO bench_contacts AS r (space_id, id, fields, clocks, deleted, deleted_hlc, hlc, seq)
    SELECT $1, w.id, w.fields::jsonb, w.clocks::jsonb, w.deleted, w.deleted_hlc, w.hlc, w.seq
    FROM unnest($2::text[], $3::text[], $4::text[], $5::bool[], $6::text[], $7::text[],
                $8::bigint[]) AS w(id, fields, clocks, deleted, deleted_hlc, hlc, seq)
    ON CONFLICT (space_id, id) DO UPDATE
       SET fields = EXCLUDED.fields, clocks = EXCLUDED.clocks, deleted = EXCLUDED.deleted,
           deleted_hlc = EXCLUDED.deleted_hlc, hlc = EXCLUDED.hlc, seq = EXCLUDED.seq,
           updated_at = now()
"""

# One table's keyset page: what Kith's pull reads, without the other synced tables.
_PAGE = """
    SELECT id, fields::text AS fields, deleted, hlc, seq FROM contacts
    WHERE space_id = $1 AND seq > $2 ORDER BY seq LIMIT $3
"""


async def _ceiling_push(
    conn: asyncpg.Connection[Any], space_id: str, contacts: list[Contact], hlcs: list[str]
) -> float:
    defaults = TABLES["contacts"].defaults
    batches = []
    for i in range(0, len(contacts), PUSH_BATCH):
        chunk, stamps = contacts[i : i + PUSH_BATCH], hlcs[i : i + PUSH_BATCH]
        batches.append(
            (
                [c.id for c in chunk],
                [_encode({**defaults, **c.fields}).decode() for c in chunk],
                [
                    _encode(dict.fromkeys(c.fields, h)).decode()
                    for c, h in zip(chunk, stamps, strict=True)
                ],
                [False] * len(chunk),
                [""] * len(chunk),
                stamps,
                list(range(i + 1, i + len(chunk) + 1)),
            )
        )
    start = time.perf_counter()
    for columns in batches:
        await conn.execute(_UPSERT, space_id, *columns)
    return time.perf_counter() - start


async def _ceiling_pull(conn: asyncpg.Connection[Any], space_id: str, expected: int) -> float:
    after, records = 0, 0
    start = time.perf_counter()
    while True:
        rows = await conn.fetch(_PAGE, space_id, after, PULL_PAGE)
        records += len(rows)
        if len(rows) < PULL_PAGE:
            break
        after = rows[-1]["seq"]
    seconds = time.perf_counter() - start
    if records != expected:
        raise RuntimeError(f"ceiling pull read {records} rows, expected {expected}")
    return seconds

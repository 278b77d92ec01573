"""Account export: one person with 100,000 records downloads everything Kith holds about them.

``GET /v1/account/export`` streams one JSON document; the client reads it in chunks and
keeps none of it. The ceiling is Kith's own paged pull of the same records by a fresh
device (pages of 1,000 over one keep-alive connection) — the way the same data already
leaves the server, in bounded pages. Two rows:

* time — records per second, export vs the paged pull;
* memory — records per MiB of the API's peak resident memory above its resting level,
  exporting vs pulling (a ratio ≥ 1 means the export needs no more memory than the paged
  pull). A note adds the export's peak for a person with a tenth of the records: bounded
  memory means the two are about the same.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx

from bench import client
from bench.measure import Plan, Result, Samples, rounds
from bench.servers import Stack
from bench.sync_throughput import make_contacts
from bench.wire import Wire

__all__ = ["account_export"]

RECORDS = 100_000
PUSH_BATCH = 1_000
PULL_PAGE = 1_000
TIME_TARGET = 0.5
MEMORY_TARGET = 0.5
_MIB = 1024 * 1024


async def _person(http: httpx.AsyncClient, wire: Wire, n: int, seed: int) -> client.Account:
    """A person whose space holds ``n`` contacts (plus the settings row), pushed in batches."""
    account = await client.register(http)
    contacts = make_contacts(n, seed)
    hlcs = client.stamps(account.device_id, n)
    rows = [(c.id, c.fields, h) for c, h in zip(contacts, hlcs, strict=True)]
    bodies = client.push_bodies(account.device_id, "contacts", rows, PUSH_BATCH)
    await client.push_batches(wire, account, bodies, [])
    return account


async def _export(http: httpx.AsyncClient, account: client.Account) -> tuple[float, int]:
    """Seconds to receive the whole document, and its size in bytes (not kept)."""
    size = 0
    start = time.perf_counter()
    async with http.stream("GET", "/v1/account/export", headers=account.headers) as r:
        if r.status_code != 200:
            raise RuntimeError(f"export answered {r.status_code}: {(await r.aread())[:500]!r}")
        async for chunk in r.aiter_raw():
            size += len(chunk)
    seconds = time.perf_counter() - start
    if size < 2:
        raise RuntimeError("the export was empty")
    return seconds, size


async def account_export(stack: Stack, plan: Plan) -> AsyncIterator[Result]:
    n = max(RECORDS, plan.records)
    async with (
        httpx.AsyncClient(base_url=stack.base_url, timeout=300.0) as http,
        Wire(stack.base_url) as wire,
    ):
        person = await _person(http, wire, n, plan.seed)
        small = await _person(http, wire, n // 10, plan.seed + 1)
        api = stack.api
        exact = True
        export_s, pull_s = Samples(), Samples()
        export_growth, pull_growth, small_growth, size = 0, 0, 0, 0
        pulled = 0
        for r in rounds(plan):
            resting = api.rss()
            exact = api.reset_peak_rss() and exact
            seconds, size = await _export(http, person)
            export_s.add(r, seconds)
            if not r.warmup:
                export_growth = max(export_growth, api.peak_rss() - resting)

            device = await client.login(http, person.email)
            resting = api.rss()
            exact = api.reset_peak_rss() and exact
            seconds, pulled = await client.pull_all(
                wire, device, PULL_PAGE, max_pages=n // PULL_PAGE + 5, record=[]
            )
            pull_s.add(r, seconds)
            if not r.warmup:
                pull_growth = max(pull_growth, api.peak_rss() - resting)

            resting = api.rss()
            exact = api.reset_peak_rss() and exact
            await _export(http, small)
            if not r.warmup:
                small_growth = max(small_growth, api.peak_rss() - resting)

    records = n + 1  # and the settings row
    yield Result(
        f"export {records:,} records (one streamed document) vs paged pull",
        export_s.rate(records),
        pull_s.rate(pulled),
        "records/s",
        TIME_TARGET,
        (
            f"export — kith: {export_s.spread()}; document {size / _MIB:.1f} MiB",
            f"export — ceiling (paged pull, pages of {PULL_PAGE:,}): {pull_s.spread()}",
        ),
    )
    # Growths of a few hundred KiB are noise-level; floor both at 1 MiB so the ratio does
    # not swing on allocator jitter.
    e, p = max(export_growth, _MIB) / _MIB, max(pull_growth, _MIB) / _MIB
    yield Result(
        f"export {records:,} records: records per MiB of API peak memory growth vs paged pull",
        records / e,
        pulled / p,
        "records/MiB",
        MEMORY_TARGET,
        (
            f"export memory — API peak RSS above resting: export {export_growth / _MIB:.1f} MiB "
            f"for {records:,} records, {small_growth / _MIB:.1f} MiB for {n // 10 + 1:,}; "
            f"paged pull {pull_growth / _MIB:.1f} MiB"
            + ("" if exact else " (could not reset the high-water mark: peaks since start)"),
        ),
    )

"""WatermelonDB first sync: a fresh app pulls a space of contacts through the adapter
(``GET /v1/watermelon/pull``, one streamed answer), next to Kith's own pull of the same
space (``POST /v1/sync/pull``, pages of 1,000) in the same rounds — what the adapter's
mapping (instants to milliseconds, lists to JSON text, one object per table) costs.

The client reads the whole answer and decodes it, as ``synchronize()`` does. The API's
peak memory is recorded for this pull and for one of ``MEMORY_RECORDS`` records, to show
the streamed answer keeps the server's memory bounded whatever the space's size.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec

from bench import client
from bench.measure import Plan, Result, Samples, rounds
from bench.servers import Stack
from bench.sync_throughput import make_contacts
from bench.wire import Wire

__all__ = ["watermelon_first_sync"]

TARGET = 0.5
MEMORY_RECORDS = 100_000
PUSH_BATCH = 1_000
PULL_PAGE = 1_000

_decode = msgspec.json.decode


async def _seed(wire: Wire, account: client.Account, n: int, seed: int) -> None:
    contacts = make_contacts(n, seed)
    hlcs = client.stamps(account.device_id, n)
    rows = [(c.id, c.fields, h) for c, h in zip(contacts, hlcs, strict=True)]
    bodies = client.push_bodies(account.device_id, "contacts", rows, PUSH_BATCH)
    await client.push_batches(wire, account, bodies, [])


async def _watermelon_pull(wire: Wire, account: client.Account) -> tuple[float, int]:
    """One first sync through the adapter: seconds, and the contacts it brought."""
    request = wire.request_bytes(
        "GET", "/v1/watermelon/pull?last_pulled_at=null", b"", account.headers
    )
    start = time.perf_counter()
    status, content = await wire.send(request)
    if status != 200:
        raise RuntimeError(f"watermelon pull answered {status}: {content[:500]!r}")
    answer: dict[str, Any] = _decode(content)
    seconds = time.perf_counter() - start
    return seconds, len(answer["changes"]["contacts"]["updated"])


async def watermelon_first_sync(stack: Stack, plan: Plan) -> AsyncIterator[Result]:
    mib = 1024 * 1024
    async with (
        httpx.AsyncClient(base_url=stack.base_url, timeout=120.0) as http,
        Wire(stack.base_url) as wire,
    ):
        account = await client.register(http)
        await _seed(wire, account, plan.records, plan.seed)
        adapter, own = Samples(), Samples()
        resting = stack.api.rss()
        exact = stack.api.reset_peak_rss()
        pulled = 0
        for r in rounds(plan):
            seconds, pulled = await _watermelon_pull(wire, account)
            adapter.add(r, seconds)
            own_seconds, _ = await client.pull_all(
                wire, account, PULL_PAGE, max_pages=plan.records // PULL_PAGE + 5, record=[]
            )
            own.add(r, own_seconds)
        peak = stack.api.peak_rss()
        if pulled != plan.records:
            raise RuntimeError(f"the adapter sent {pulled} contacts, expected {plan.records}")

        # The same first sync of a space of MEMORY_RECORDS records, for the API's memory.
        big = await client.register(http)
        await _seed(wire, big, MEMORY_RECORDS, plan.seed + 1)
        before_big = stack.api.rss()
        exact = stack.api.reset_peak_rss() and exact
        big_seconds, big_pulled = await _watermelon_pull(wire, big)
        big_peak = stack.api.peak_rss()
        if big_pulled != MEMORY_RECORDS:
            raise RuntimeError(f"the adapter sent {big_pulled} contacts, not {MEMORY_RECORDS}")

    n = plan.records
    yield Result(
        f"WatermelonDB first sync of {n:,} records (vs Kith's own pull of them)",
        adapter.rate(n),
        own.rate(n),
        "records/s",
        TARGET,
        (
            f"watermelon — adapter: {adapter.spread()}",
            f"watermelon — Kith's own pull (pages of {PULL_PAGE:,}): {own.spread()}",
            f"watermelon — API RSS (Granian supervisor + worker): {resting / mib:.0f} MiB "
            f"before, peak {peak / mib:.0f} MiB during the {n:,}-record pulls; "
            f"{before_big / mib:.0f} MiB before and peak {big_peak / mib:.0f} MiB during one "
            f"{MEMORY_RECORDS:,}-record first sync ({big_seconds:.1f} s, "
            f"{MEMORY_RECORDS / big_seconds:,.0f} records/s)"
            + ("" if exact else " (peaks since start: could not reset the high-water mark)"),
        ),
    )

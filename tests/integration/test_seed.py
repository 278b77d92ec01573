"""``kith seed``: a tiny population lands as synced records the rules engine can evaluate."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from service.insights.service import InsightEvaluator
from service.rules.synthetic import generate_person
from service.store.seed import SEEDED_TABLES
from service.sync.seed import SeedError, SeedOptions, seed_database
from sync.hlc import Clock

NOW = dt.datetime(2026, 11, 1, 6, 0, tzinfo=dt.UTC)
OPTIONS = SeedOptions(
    people=3,
    contacts=12,
    days=365,
    seed=7,
    start=900_000,  # out of the way of anything else in the session's database
    now=NOW,
    chunk=2,  # two chunks: the chunk boundary is exercised too
    argon2_time_cost=1,
    argon2_memory_kib=1024,
)
EMAILS = [f"seed-{OPTIONS.start + i}@example.invalid" for i in range(OPTIONS.people)]


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    yield pool
    await pool.close()


async def test_seed_writes_synced_records_the_rules_evaluate(
    database_url: str, pool: asyncpg.Pool[Any]
) -> None:
    result = await seed_database(database_url, OPTIONS)

    people = [
        generate_person(OPTIONS.seed, OPTIONS.start + i, NOW, contacts=12, days=365)
        for i in range(OPTIONS.people)
    ]
    users = await pool.fetch(
        """
        SELECT u.email, u.time_zone, s.id AS space_id, s.seq FROM users u
        JOIN spaces s ON s.owner_id = u.id WHERE u.email = ANY($1::text[]) ORDER BY u.email
        """,
        EMAILS,
    )
    assert [u["email"] for u in users] == sorted(EMAILS)
    assert len({u["space_id"] for u in users}) == OPTIONS.people
    by_email = {u["email"]: u for u in users}
    space_ids = [by_email[e]["space_id"] for e in EMAILS]

    expected = {
        "settings": OPTIONS.people,
        "contacts": sum(len(p.contacts) for p in people),
        "interactions": sum(len(p.interactions) for p in people),
        "reflections": sum(len(p.reflections) for p in people),
    }
    assert result.rows == expected
    for table in SEEDED_TABLES:
        n = await pool.fetchval(
            f"SELECT count(*) FROM {table} WHERE space_id = ANY($1::text[])",
            space_ids,
        )
        assert n == expected[table], table

    union = " UNION ALL ".join(f"SELECT space_id, seq FROM {t}" for t in SEEDED_TABLES)
    for person, email in zip(people, EMAILS, strict=True):
        user = by_email[email]
        assert user["time_zone"] == person.settings["time_zone"]
        seqs = await pool.fetchrow(
            f"SELECT max(seq) AS top, count(*) AS n, count(DISTINCT seq) AS d "
            f"FROM ({union}) AS r WHERE space_id = $1",
            user["space_id"],
        )
        assert seqs is not None
        # spaces.seq is the last seq handed out, and every row has its own number 1..seq
        assert seqs["top"] == user["seq"] == seqs["n"] == seqs["d"]
        stored = await pool.fetchval(
            "SELECT fields->>'occurred_at' FROM interactions WHERE space_id = $1 AND id = $2",
            user["space_id"],
            next(iter(person.interactions)),
        )
        assert stored == next(iter(person.interactions.values()))["occurred_at"]

    evaluator = InsightEvaluator(pool, Clock("seed-test"))
    evaluated = await evaluator.evaluate_spaces(space_ids, NOW)
    assert evaluated.people == OPTIONS.people
    assert evaluated.created > 0
    insights = await pool.fetchval(
        "SELECT count(*) FROM insights WHERE space_id = ANY($1::text[])", space_ids
    )
    assert insights == evaluated.created

    with pytest.raises(SeedError, match="already exists"):
        await seed_database(database_url, OPTIONS)

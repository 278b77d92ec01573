"""``kith migrate`` places the schema on Citus, and leaves a plain PostgreSQL plain.

Run in every configuration: on plain PostgreSQL (embedded or the machine's) the migrations
must not touch Citus at all; with ``KITH_TEST_CITUS=1`` (a coordinator and two workers)
they must have distributed every table as ``service/store/distribution.py`` says. What an
operator would notice if this broke: a deploy whose tables silently stayed on the
coordinator (no scale-out), or a second `kith migrate` that fails or moves data again.
"""

from __future__ import annotations

import asyncpg

from service.infra.migrate import migrate
from service.store import distribution
from service.store import sync as sync_store
from tests.conftest import CITUS


async def test_the_schema_is_placed_as_the_layout_says(db: asyncpg.Connection) -> None:
    installed = await distribution.citus_installed(db)
    assert installed == CITUS
    if not CITUS:
        # Single node: no Citus catalogue, nothing distributed — the schema as migrated.
        assert await db.fetchval("SELECT to_regclass('pg_dist_partition')") is None
        return
    placed = await distribution.placement(db)
    assert {t: placed.get(t) for t in distribution.BY_SPACE} == dict.fromkeys(
        distribution.BY_SPACE, "distributed"
    )
    assert {t: placed.get(t) for t in distribution.REFERENCE} == dict.fromkeys(
        distribution.REFERENCE, "reference"
    )
    # Coordinator tables: plain, or Citus "local" tables (one copy, on the coordinator).
    assert all(placed.get(t, "local") == "local" for t in distribution.COORDINATOR)
    # One colocation group: a space's rows of every table share a node.
    groups = await db.fetch(
        "SELECT DISTINCT colocationid FROM pg_dist_partition"
        " WHERE logicalrelid = ANY($1::regclass[])",
        list(distribution.BY_SPACE),
    )
    assert len(groups) == 1
    workers = await db.fetchval("SELECT count(*) FROM citus_get_active_worker_nodes()")
    assert workers == 2
    shard_nodes = await db.fetchval(
        "SELECT count(DISTINCT nodeport) FROM citus_shards WHERE table_name = 'spaces'::regclass"
    )
    assert shard_nodes == 2  # the spaces are spread over both workers


async def test_migrating_again_changes_nothing(database_url: str, db: asyncpg.Connection) -> None:
    before = await distribution.placement(db) if CITUS else {}
    assert await migrate(database_url) == []
    assert (await distribution.placement(db) if CITUS else {}) == before


async def test_conflict_ids_follow_insertion_order_across_shards(db: asyncpg.Connection) -> None:
    """The owner pages their conflict history by id (``conflicts_since``): ids must grow in
    the order values were recorded, also when the spaces live on different workers (on
    Citus the identity is drawn on the coordinator every write goes through)."""
    spaces = [f"conflict-order-{i}" for i in range(8)]  # hashed over both workers on Citus
    for round_ in range(3):
        for space in spaces:
            await sync_store.insert_conflicts(
                db,
                space,
                [
                    sync_store.ConflictWrite(
                        "contacts", f"c-{round_}", "display_name", '"x"', "h1", "h2", "lost"
                    )
                ],
            )
    rows = await db.fetch(
        "SELECT space_id, record_id FROM conflicts WHERE space_id = ANY($1::text[]) ORDER BY id",
        spaces,
    )
    assert [(r["space_id"], r["record_id"]) for r in rows] == [
        (s, f"c-{n}") for n in range(3) for s in spaces
    ]
    await db.execute("DELETE FROM conflicts WHERE space_id = ANY($1::text[])", spaces)

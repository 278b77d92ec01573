"""SQL of the Citus distribution step: where each table lives on a Citus cluster.

``kith migrate`` runs this after the numbered migrations when the database has the
``citus`` extension (docs/decisions/0013-distributed-by-space-on-citus.md). Every table of
the schema is named in exactly one of the three groups below — a table a new migration adds
must be placed here too (tests/unit/test_citus_ready.py fails until it is; a synced table
declared in ``schemas/tables.py`` is placed by space without a word here):

* **by space**, hash-distributed and colocated with ``spaces`` (distributed by ``id``):
  everything that belongs to one person, so a push, a pull, an evaluation or a summary
  touches one shard group on one node;
* **reference** (a copy on every node, written with two-phase commit): tables that
  space-scoped statements join on something other than a space id — names, devices, and
  the session check folded into the push's and the pull's first statement — and the
  sign-in identities (Apple, Google), found by the provider's subject;
* **coordinator** (local to the coordinator, the node every Kith process connects to):
  the job queue, claimed with ``FOR UPDATE SKIP LOCKED`` over every person at once, which a
  distributed table cannot do; push credentials, locked while minting; and the secrets
  found by their hash or their person (refresh tokens, one-time account codes, invitations,
  web sessions).

Each step is skipped when the catalogue says it is done, so the step is idempotent and a
re-run after a failure carries on where it stopped.
"""

from __future__ import annotations

from service.store.db import Connection
from service.store.sync import SYNCED_TABLES

__all__ = [
    "BY_SPACE",
    "COORDINATOR",
    "REFERENCE",
    "citus_installed",
    "distribute",
    "placement",
]

#: Hash-distributed by the space id, all in one colocation group with ``spaces``.
BY_SPACE: dict[str, str] = {
    "spaces": "id",
    **{
        t: "space_id"
        for t in (
            *SYNCED_TABLES,  # declared once in schemas/tables.py: a new one is placed too
            # sync and rules bookkeeping
            "sync_batches",
            "conflicts",
            "nudge_requests",
            # the person's data key (decision 0021)
            "space_keys",
            # caregiving, by the older adult's space
            "care_links",
            "care_audit",
            "care_alerts",
            "care_acknowledgements",
        )
    },
}

#: Replicated to every node. Order matters: a table before the tables that reference it.
#: ``identities`` is found by (provider, subject) before anyone's space is known, and that
#: pair must be unique across everyone (decision 0020).
REFERENCE: tuple[str, ...] = ("users", "devices", "token_families", "identities")

#: Stay on the coordinator. The ones with a foreign key to a reference table become Citus
#: "local tables in metadata" (still one copy, on the coordinator).
COORDINATOR: tuple[str, ...] = (
    "jobs",
    "push_credentials",
    "refresh_tokens",
    "account_codes",
    "care_invitations",
    "web_sessions",
    "schema_migrations",
)


async def citus_installed(conn: Connection) -> bool:
    """Whether this database has the Citus extension (then the schema is distributed)."""
    return bool(await conn.fetchval("SELECT true FROM pg_extension WHERE extname = 'citus'"))


async def placement(conn: Connection) -> dict[str, str]:
    """Each Citus table's kind as Citus reports it: ``distributed``, ``reference`` or
    ``local`` (a coordinator table in Citus's metadata); plain tables are absent."""
    rows = await conn.fetch(
        """
        SELECT logicalrelid::regclass::text AS name,
               CASE WHEN partmethod = 'h' THEN 'distributed'
                    WHEN repmodel = 't' THEN 'reference'
                    ELSE 'local' END AS kind
        FROM pg_dist_partition
        """
    )
    return {r["name"]: r["kind"] for r in rows}


async def distribute(conn: Connection) -> list[str]:
    """Place every table as the groups above say; return the tables placed now.

    Reference tables go first (their referencing tables are taken into Citus's metadata
    with them), then ``spaces``, then its colocated tables. ``create_distributed_table``
    copies a table's existing rows to the shards, blocking writes to it meanwhile: on a
    large live database, distribute with ``create_distributed_table_concurrently`` by hand
    first (docs/operations.md); this step then finds the work done."""
    done = await placement(conn)
    placed: list[str] = []
    for table in REFERENCE:
        if done.get(table) != "reference":
            await conn.execute("SELECT create_reference_table($1::regclass)", table)
            placed.append(table)
    for table, column in BY_SPACE.items():
        if done.get(table) != "distributed":
            # colocate_with names spaces for every table but spaces itself ('default' then).
            await conn.execute(
                "SELECT create_distributed_table($1::regclass, $2, colocate_with => $3)",
                table,
                column,
                "default" if table == "spaces" else "spaces",
            )
            placed.append(table)
    return placed

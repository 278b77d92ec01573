"""SQL of the account lifecycle: the erasure of an account, and the export of everything
it holds.

Every statement names the person's space or user id (or, for the caregiver links and the
audit rows they left in other people's spaces, their user id as the caregiver), and no
statement joins across spaces, so each runs on one shard group on Citus — the one spanning
statements are listed in ``tests/unit/test_citus_ready.py`` with their reason.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from schemas.tables import TABLES
from service.store.db import Connection, Executor
from service.store.nudges import lock_plan

__all__ = [
    "ERASED_TABLES_BY_SPACE",
    "ErasureStart",
    "LinkEnd",
    "anonymise_caregiver_audit",
    "begin_erasure",
    "device_ids",
    "drop_care_pushes_about",
    "end_link",
    "erase_account",
    "export_audit",
    "export_conflicts",
    "export_devices",
    "export_identities",
    "export_links",
    "export_nudges",
    "export_profile",
    "export_records",
    "links_as_caregiver",
    "links_as_person",
    "space_of",
]

#: Every table whose rows belong to one space, emptied for the erased space in the last step.
#: The synced tables come from their declaration, so a table added there is erased too.
ERASED_TABLES_BY_SPACE: tuple[str, ...] = (
    *TABLES,
    "conflicts",
    "sync_batches",
    "nudge_requests",
    "care_alerts",
    "care_acknowledgements",
    "care_audit",
    "care_invitations",
    "care_links",
    "jobs",
    "space_keys",  # destroyed first (its own step); again here, in case a push made one since
)

_ERASE = {t: f"DELETE FROM {t} WHERE space_id = $1" for t in ERASED_TABLES_BY_SPACE}
SYNCED_TABLES = tuple(TABLES)
# Keyset pages on the primary key (space_id, id): each page is one index range scan.
_EXPORT_PAGE = {
    t: f"""
    SELECT id, fields::text AS fields, deleted, hlc, created_at, updated_at
    FROM {t} WHERE space_id = $1 AND id > $2 ORDER BY id LIMIT $3
    """
    for t in SYNCED_TABLES
}


@dataclass(frozen=True, slots=True)
class ErasureStart:
    space_id: str
    #: Every device of the person (all now signed out): their streams must end.
    device_ids: list[str]
    #: False if an erasure was already under way (the request changed nothing).
    started: bool


async def space_of(conn: Executor, user_id: str) -> str | None:
    # From users.space_id (migration 0008): on Citus a read of a replicated table. Asking
    # spaces by owner would ask every shard, after which Citus refuses the erasure's writes
    # to the replicated tables in the same transaction.
    value = await conn.fetchval("SELECT space_id FROM users WHERE id = $1", user_id)
    if value is None:  # registered by the release before 0008 during its rollout
        value = await conn.fetchval("SELECT id FROM spaces WHERE owner_id = $1", user_id)
    return None if value is None else str(value)


async def device_ids(conn: Executor, user_id: str) -> list[str]:
    """Every device of the person's, signed out or not."""
    rows = await conn.fetch("SELECT id FROM devices WHERE user_id = $1", user_id)
    return [r["id"] for r in rows]


async def begin_erasure(
    conn: Connection, user_id: str, job_kind: str, *, delay_s: float = 0.0
) -> ErasureStart | None:
    """The request, in one transaction (run it in one): the sign-in is scrubbed (the email
    is free again at once, no password works, the Apple and Google identities are
    unlinked), every device and session of the person
    is signed out, the web sessions end, and the erasure job is queued. None if there is no
    such account. Re-running it changes nothing and queues no second job."""
    space_id = await space_of(conn, user_id)
    if space_id is None:
        return None
    # The row lock serializes two requests; the second sees erasing_at set and only
    # signs out devices again (a no-op) and finds the job queued (deduplicated).
    started = await conn.fetchval(
        """
        UPDATE users SET erasing_at = now(), email = 'erased:' || id, password_hash = ''
        WHERE id = $1 AND erasing_at IS NULL
        RETURNING true
        """,
        user_id,
    )
    # Two statements, not coalesce(revoked_at, now()): Citus refuses a non-immutable
    # function inside COALESCE/CASE when it writes a replicated table (devices).
    await conn.execute(
        "UPDATE devices SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        user_id,
    )
    devices = await conn.fetch(
        """
        UPDATE devices
           SET push_provider = NULL, push_token = NULL, push_keys = NULL,
               push_environment = NULL, push_topic = NULL, push_token_updated_at = NULL
        WHERE user_id = $1
        RETURNING id
        """,
        user_id,
    )
    await conn.execute(
        """
        UPDATE token_families SET revoked_at = now(), revoked_reason = 'account_deleted'
        WHERE user_id = $1 AND revoked_at IS NULL
        """,
        user_id,
    )
    await conn.execute("DELETE FROM web_sessions WHERE user_id = $1", user_id)
    # Apple and Google sign in no more, and may start a new account at once.
    await conn.execute("DELETE FROM identities WHERE user_id = $1", user_id)
    await conn.execute(
        """
        INSERT INTO jobs (kind, space_id, dedupe_key, payload, run_at, max_attempts)
        VALUES ($1, $2, $2, jsonb_build_object('user_id', $3::text),
                now() + make_interval(secs => $4), 100)
        ON CONFLICT (kind, dedupe_key) WHERE state = 'queued' AND dedupe_key IS NOT NULL
        DO NOTHING
        """,
        job_kind,
        space_id,
        user_id,
        delay_s,
    )
    return ErasureStart(space_id, [r["id"] for r in devices], bool(started))


# -- caregiver links -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkEnd:
    space_id: str  # the older adult's space
    id: str
    caregiver_space_id: str
    summary_id: str  # the care_summaries record in the caregiver's space
    label: str  # what the caregiver calls the person


async def links_as_person(conn: Executor, space_id: str) -> list[LinkEnd]:
    """Every link of the person's to a caregiver, ended or not (an ended one may still
    have a push about the person queued in the caregiver's space)."""
    rows = await conn.fetch(
        """
        SELECT space_id, id, caregiver_space_id, generation, label FROM care_links
        WHERE space_id = $1
        """,
        space_id,
    )
    return [_link_end(r) for r in rows]


async def links_as_caregiver(conn: Executor, user_id: str) -> list[LinkEnd]:
    """The links the person holds as a caregiver (rows in the cared-for people's spaces)."""
    rows = await conn.fetch(
        """
        SELECT space_id, id, caregiver_space_id, generation, label FROM care_links
        WHERE caregiver_user_id = $1 AND state <> 'revoked'
        """,
        user_id,
    )
    return [_link_end(r) for r in rows]


def _link_end(r: Any) -> LinkEnd:
    summary_id = f"care-{r['id']}-{r['generation']}"  # as care.Link.summary_id
    return LinkEnd(r["space_id"], r["id"], r["caregiver_space_id"], summary_id, r["label"])


async def end_link(conn: Connection, space_id: str, link_id: str) -> bool:
    """Mark a link ended; False if it already was (a re-run: its caregivers were told)."""
    return bool(
        await conn.fetchval(
            """
            UPDATE care_links SET state = 'revoked', updated_at = now()
            WHERE space_id = $1 AND id = $2 AND state <> 'revoked'
            RETURNING true
            """,
            space_id,
            link_id,
        )
    )


async def drop_care_pushes_about(conn: Connection, caregiver_space_id: str, space_id: str) -> None:
    """Queued caregiver pushes about the erased person (their collapse ids name the
    person's space: ``care-<space>-…``) never go out."""
    await conn.execute(
        """
        DELETE FROM jobs
        WHERE space_id = $1 AND kind = 'care_push' AND state <> 'running'
          AND payload->>'collapse_id' LIKE 'care-' || $2 || '-%'
        """,
        caregiver_space_id,
        space_id,
    )


async def anonymise_caregiver_audit(conn: Executor, user_id: str) -> None:
    """The person's views of other people's summaries stay in those people's audit trail
    (it is their record of who looked) but no longer name the person."""
    await conn.execute(
        "UPDATE care_audit SET caregiver_user_id = '' WHERE caregiver_user_id = $1", user_id
    )


# -- the last step -----------------------------------------------------------------------------


async def erase_account(conn: Connection, user_id: str, space_id: str) -> None:
    """Everything left of the person, in one transaction (run it in one): the space's
    rows of every table (its queued jobs — this erasure's own included — too), the links
    they held as a caregiver, their devices, sessions and refresh tokens, and the user and
    space rows. Re-running it after it committed deletes nothing."""
    # The space's lock: a push or an evaluation in flight finishes first, and any that
    # waits for the lock finds no space afterwards (it fails, and is never retried into
    # an empty space: its job row is deleted here too). The planner's lock likewise.
    # On Citus the caregiver links' delete reaches every shard; made over one connection
    # per node ('sequential'), the transaction may then still write the replicated tables
    # (devices, users), which Citus refuses after a parallel one. On a plain PostgreSQL
    # this is an unused custom setting.
    await conn.execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
    await conn.execute("SELECT 1 FROM spaces WHERE id = $1 FOR UPDATE", space_id)
    await lock_plan(conn, space_id)
    for table in ERASED_TABLES_BY_SPACE:
        await conn.execute(_ERASE[table], space_id)
    await conn.execute("DELETE FROM care_links WHERE caregiver_user_id = $1", user_id)
    await conn.execute("DELETE FROM care_invitations WHERE user_id = $1", user_id)
    await conn.execute("DELETE FROM account_codes WHERE user_id = $1", user_id)
    families = await conn.fetch("SELECT id FROM token_families WHERE user_id = $1", user_id)
    await conn.execute(
        "DELETE FROM refresh_tokens WHERE family_id = ANY($1::text[])",
        [r["id"] for r in families],
    )
    await conn.execute("DELETE FROM token_families WHERE user_id = $1", user_id)
    await conn.execute("DELETE FROM web_sessions WHERE user_id = $1", user_id)
    await conn.execute("DELETE FROM identities WHERE user_id = $1", user_id)
    await conn.execute("DELETE FROM devices WHERE user_id = $1", user_id)
    await conn.execute("DELETE FROM spaces WHERE id = $1", space_id)
    await conn.execute("DELETE FROM users WHERE id = $1", user_id)


# -- export ------------------------------------------------------------------------------------


async def export_profile(conn: Executor, user_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        """
        SELECT id, email, display_name, time_zone, created_at, terms_version,
               terms_accepted_at, wellbeing_consent_at
        FROM users WHERE id = $1 AND erasing_at IS NULL
        """,
        user_id,
    )
    return None if row is None else dict(row)


async def export_devices(conn: Executor, user_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        SELECT id, platform, name, created_at, last_seen_at, revoked_at, push_provider
        FROM devices WHERE user_id = $1 ORDER BY created_at, id
        """,
        user_id,
    )
    return [dict(r) for r in rows]


async def export_identities(conn: Executor, user_id: str) -> list[dict[str, Any]]:
    """The Apple and Google identities linked to the account (never a token)."""
    rows = await conn.fetch(
        """
        SELECT provider, subject, email, private_email, created_at AS linked_at, last_sign_in_at
        FROM identities WHERE user_id = $1 ORDER BY provider
        """,
        user_id,
    )
    return [dict(r) for r in rows]


async def export_records(
    conn: Connection, space_id: str, table: str, *, page: int = 1000
) -> AsyncIterator[list[tuple[str, str, bool, str, dt.datetime, dt.datetime]]]:
    """The table's records of the space, ``page`` at a time, keyed by id: (id, fields JSON
    text, deleted, hlc, created_at, updated_at). Keyset pages on the primary key, so memory
    stays one page whatever the space's size, and each page is one index range scan."""
    after = ""
    while True:
        rows = await conn.fetch(_EXPORT_PAGE[table], space_id, after, page)
        if not rows:
            return
        yield [
            (r["id"], r["fields"], r["deleted"], r["hlc"], r["created_at"], r["updated_at"])
            for r in rows
        ]
        if len(rows) < page:
            return
        after = rows[-1]["id"]


async def export_conflicts(
    conn: Executor, space_id: str, *, page: int = 1000
) -> AsyncIterator[list[dict[str, Any]]]:
    """The whole conflict history of the space, oldest first, a page at a time."""
    after = 0
    while True:
        rows = await conn.fetch(
            """
            SELECT id, tbl, record_id, field, value::text AS value, hlc, winner_hlc, reason,
                   recorded_at
            FROM conflicts WHERE space_id = $1 AND id > $2 ORDER BY id LIMIT $3
            """,
            space_id,
            after,
            page,
        )
        if not rows:
            return
        yield [dict(r) for r in rows]
        if len(rows) < page:
            return
        after = rows[-1]["id"]


async def export_nudges(conn: Executor, space_id: str) -> list[dict[str, Any]]:
    """Every nudge request with what became of it and why."""
    rows = await conn.fetch(
        """
        SELECT id, insight_id, contact_id, rule, level, title, body, state, reason,
               merged_into, created_at, decided_at, sent_at, push_title, push_body,
               feedback, feedback_at
        FROM nudge_requests WHERE space_id = $1 ORDER BY created_at, id
        """,
        space_id,
    )
    return [dict(r) for r in rows]


async def export_links(conn: Executor, space_id: str, user_id: str) -> list[dict[str, Any]]:
    """Caregiver links both ways: the person's caregivers, and the people they care for
    (two statements: the second spans the cared-for people's spaces)."""
    mine = await conn.fetch(
        """
        SELECT id, 'my_caregiver' AS role, label, scopes, state, created_at, updated_at
        FROM care_links WHERE space_id = $1 ORDER BY created_at, id
        """,
        space_id,
    )
    theirs = await conn.fetch(
        """
        SELECT id, 'i_care_for' AS role, label, scopes, state, created_at, updated_at
        FROM care_links WHERE caregiver_user_id = $1 ORDER BY created_at, id
        """,
        user_id,
    )
    return [dict(r) for r in (*mine, *theirs)]


async def export_audit(conn: Executor, space_id: str) -> list[dict[str, Any]]:
    """Every view of the person's summary by a caregiver, and every acknowledgement and
    resolution of their alerts, with who (by link) and how."""
    rows = await conn.fetch(
        """
        SELECT a.link_id, coalesce(u.display_name, '') AS caregiver_name, a.channel,
               a.viewed_at, a.action, a.alert_id
        FROM care_audit a LEFT JOIN users u ON u.id = a.caregiver_user_id
        WHERE a.space_id = $1 ORDER BY a.viewed_at, a.id
        """,
        space_id,
    )
    return [dict(r) for r in rows]

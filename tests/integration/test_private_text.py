"""Private text at rest (decision 0021), through the real API: what a person writes is
sealed in every row that keeps it, and comes back in the clear in every way they read it —
pulls, the conflict history, the WatermelonDB pull, the export; the rules never see it; a
master-key rotation keeps it readable after the old key is gone; erasing the account
destroys the key, so a copy of the text taken before is unreadable; ``kith seal-existing``
seals what was stored in the clear before, as a push would have, with nothing read
differently and no write lost."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from service.config import MasterKey
from service.infra.crypto import SEALED_PREFIX, MasterKeys, Undecryptable, load_or_create_dev_key
from service.jobs import Kind
from service.store import private_text as clear_store
from service.store.insights import load_histories
from service.sync.private_text import PRIVATE_FIELDS, SEALED_PATTERN, PrivateText
from tests.conftest import ApiProcess
from tests.helpers import PASSWORD, Account, login, new_id, pull_all, push, register, stamp
from tests.integration.push_support import drain
from tests.integration.test_account_deletion import erasure, space_of
from tests.integration.test_account_export import export
from tests.integration.test_watermelon import wm_pull

NOTES = "Lost her brother in March; ask gently about the allotment"
NOTE = "Long walk by the canal, she laughed about the ducks"
BODY = "I felt lonely this week and did not tell anyone"
GRATITUDE = "Grateful for Ana's phone call"
CHECK_IN = "Knee is bad again, stayed in"
SECRETS = (NOTES, NOTE, BODY, GRATITUDE, CHECK_IN)


def a_life(who: Account) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """A contact with notes, a meeting with a note, a reflection, a check-in with a note."""
    ids = {t: new_id(t[:4]) for t in ("contacts", "interactions", "reflections", "check_ins")}
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).isoformat()
    fields: dict[str, dict[str, Any]] = {
        "contacts": {"display_name": "Rosa", "notes": NOTES},
        "interactions": {
            "contact_ids": [ids["contacts"]],
            "kind": "in_person",
            "occurred_at": at,
            "note": NOTE,
        },
        "reflections": {"occurred_at": at, "mood": 2, "body": BODY, "gratitude": GRATITUDE},
        "check_ins": {"occurred_at": at, "status": "not_great", "note": CHECK_IN},
    }
    changes = [
        {"table": t, "id": ids[t], "hlc": stamp(who.device_id), "fields": fields[t]} for t in ids
    ]
    return ids, changes


async def rows_of(pool: asyncpg.Pool[Any], space: str) -> dict[str, str]:
    """Every record and conflict row of the space, as its stored text."""
    out = {}
    for table in PRIVATE_FIELDS:
        for r in await pool.fetch(
            f"SELECT id, fields::text AS f FROM {table} WHERE space_id = $1", space
        ):
            out[f"{table}/{r['id']}"] = r["f"]
    for r in await pool.fetch(
        "SELECT id, tbl, value::text AS v FROM conflicts WHERE space_id = $1", space
    ):
        out[f"conflicts/{r['tbl']}/{r['id']}"] = r["v"]
    return out


def assert_no_plain_text(stored: dict[str, str]) -> None:
    for where, text in stored.items():
        for secret in SECRETS:
            for word in secret.split():
                if len(word) > 5:  # "allotment", "laughed", "lonely", ... never in clear
                    assert word not in text, (where, word)


async def test_private_text_is_sealed_at_rest_and_read_back_in_the_clear(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    phone = await register(http)
    tablet = await login(http, phone.email, new_id("dev"))
    ids, changes = a_life(phone)
    await push(http, phone, changes)
    # The tablet, offline for a minute, had written other notes: they lose, and are kept.
    older = [
        {
            "table": "contacts",
            "id": ids["contacts"],
            "hlc": stamp(tablet.device_id, offset_ms=-60_000),
            "fields": {"notes": "tablet's older words about Rosa"},
        }
    ]
    result = await push(http, tablet, older)
    assert [s["field"] for s in result["superseded"]] == ["notes"]
    space = await space_of(pool, phone)

    # At rest: every private value sealed, nothing of it in clear, in records or history.
    stored = await rows_of(pool, space)
    assert_no_plain_text(stored)
    assert "tablet's older" not in stored[next(k for k in stored if k.startswith("conflicts/"))]
    for table, rid in ids.items():
        text = stored[f"{table}/{rid}"]
        for name in PRIVATE_FIELDS[table]:
            assert f'"{name}": "{SEALED_PREFIX}' in text, (table, name, text)
    assert "Rosa" in stored[f"contacts/{ids['contacts']}"]  # a name is not private text

    # Pulled, by either device: in the clear.
    state, _ = await pull_all(http, tablet)
    assert state[("contacts", ids["contacts"])]["fields"]["notes"] == NOTES
    assert state[("interactions", ids["interactions"])]["fields"]["note"] == NOTE
    reflection = state[("reflections", ids["reflections"])]["fields"]
    assert (reflection["body"], reflection["gratitude"]) == (BODY, GRATITUDE)
    assert state[("check_ins", ids["check_ins"])]["fields"]["note"] == CHECK_IN

    # The conflict history gives the lost words back as they were written.
    r = await http.get("/v1/sync/conflicts", headers=phone.headers, params={"id": ids["contacts"]})
    assert r.status_code == 200, r.text
    values = {(c["field"], c["value"], c["reason"]) for c in r.json()["conflicts"]}
    assert ("notes", "tablet's older words about Rosa", "older") in values

    # WatermelonDB's pull, the same.
    wm = (await wm_pull(http, phone))["changes"]
    [contact] = [c for c in wm["contacts"]["updated"] if c["id"] == ids["contacts"]]
    assert contact["notes"] == NOTES
    [reflection_row] = wm["reflections"]["updated"]
    assert reflection_row["body"] == BODY

    # The export, the same, and no sealed value in it.
    doc, raw = await export(http, phone.headers)
    assert SEALED_PREFIX.encode() not in raw
    exported = {(t, x.id): x for t, rows in doc.records.items() for x in rows}
    assert NOTES.encode() in bytes(exported[("contacts", ids["contacts"])].fields)
    assert b"tablet's older words about Rosa" in raw


async def test_a_retried_write_of_the_same_words_is_no_conflict(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    """The same text in the same place seals the same, so the merge sees the same value."""
    ana = await register(http)
    change = {
        "table": "contacts",
        "id": new_id("c"),
        "hlc": stamp(ana.device_id),
        "fields": {"display_name": "Sam", "notes": NOTES},
    }
    first = await push(http, ana, [change])
    again = await push(http, ana, [change])  # a new batch id: not an idempotent replay
    assert again["superseded"] == []
    assert again["seq"] == first["seq"]  # nothing changed, nothing re-sequenced
    space = await space_of(pool, ana)
    assert await pool.fetchval("SELECT count(*) FROM conflicts WHERE space_id = $1", space) == 0


async def test_the_rules_are_handed_no_private_text(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    ana = await register(http)
    ids, changes = a_life(ana)
    await push(http, ana, changes)
    space = await space_of(pool, ana)
    history = (await load_histories(pool, [space]))[space]
    handed = {
        "contacts": history.contacts,
        "interactions": history.interactions,
        "reflections": history.reflections,
    }
    assert ids["contacts"] in history.contacts  # the rules do read the records ...
    assert ids["interactions"] in history.interactions
    for table, rows in handed.items():
        for text in rows.values():
            for name in PRIVATE_FIELDS[table]:
                assert f'"{name}"' not in text, (table, name)  # ... but not their text
            assert SEALED_PREFIX not in text


async def test_erasing_the_account_destroys_its_key(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any], key_dir: Path
) -> None:
    mum = await register(http)
    ids, changes = a_life(mum)
    await push(http, mum, changes)
    space = await space_of(pool, mum)
    # A copy of a sealed note taken before the deletion (a dump, a leaked page, a log).
    copied = await pool.fetchval(
        "SELECT fields->>'notes' FROM contacts WHERE space_id = $1 AND id = $2",
        space,
        ids["contacts"],
    )
    assert copied.startswith(SEALED_PREFIX)
    # With the server's own master key, the copy opens while the account lives.
    keys = MasterKeys([load_or_create_dev_key(key_dir)])
    cipher = await PrivateText(pool, keys).opener(space)
    assert cipher.open_value("contacts", ids["contacts"], "notes", copied) == NOTES

    r = await http.request(
        "DELETE", "/v1/account", headers=mum.headers, json={"password": PASSWORD}
    )
    assert r.status_code == 202, r.text
    await drain(pool, {Kind.ACCOUNT_ERASE: erasure(pool).run}, [space])

    assert await pool.fetchval("SELECT count(*) FROM space_keys WHERE space_id = $1", space) == 0
    # The same master key, a fresh process: the person's key is gone, the copy is noise.
    with pytest.raises(Undecryptable):
        await PrivateText(pool, keys).opener(space)
    # And no late write (a push still in flight) can make the erased space a new key.
    with pytest.raises(LookupError):
        await PrivateText(pool, keys).for_writing(space)
    assert await pool.fetchval("SELECT count(*) FROM space_keys WHERE space_id = $1", space) == 0


def _master(kid: str) -> tuple[MasterKey, str]:
    key = os.urandom(32)
    return MasterKey(kid, key), f"{kid}:{base64.b64encode(key).decode()}"


async def _pulled_notes(base: str, who: Account) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        state, _ = await pull_all(http, who)
        r = await http.get("/v1/sync/conflicts", headers=who.headers)
        assert r.status_code == 200, r.text
    notes = {k[1]: v["fields"].get("notes") for k, v in state.items() if k[0] == "contacts"}
    return {"notes": notes, "conflicts": [c["value"] for c in r.json()["conflicts"]]}


async def test_a_rotation_keeps_everything_readable_without_the_old_master_key(
    api_process: Callable[..., ApiProcess], server_env: dict[str, str], pool: asyncpg.Pool[Any]
) -> None:
    _, old = _master(f"old-{os.urandom(3).hex()}")
    _, new = _master(f"new-{os.urandom(3).hex()}")
    new_kid, old_kid = new.split(":")[0], old.split(":")[0]

    # Before: every process has the old master key only. Ana writes (two devices, a loss).
    before = api_process("keys-old", KITH_MASTER_KEYS=old).wait_ready()
    async with httpx.AsyncClient(base_url=before.base, timeout=30) as http:
        ana = await register(http)
        tablet = await login(http, ana.email, new_id("dev"))
        sam = new_id("sam")
        await push(
            http,
            ana,
            [
                {
                    "table": "contacts",
                    "id": sam,
                    "hlc": stamp(ana.device_id),
                    "fields": {"display_name": "Sam", "notes": NOTES},
                }
            ],
        )
        await push(
            http,
            tablet,
            [
                {
                    "table": "contacts",
                    "id": sam,
                    "hlc": stamp(tablet.device_id, offset_ms=-60_000),
                    "fields": {"notes": "older words"},
                }
            ],
        )
    before.stop()
    expected = {"notes": {sam: NOTES}, "conflicts": ["older words"]}
    ana_space = await space_of(pool, ana)

    # Step 1: every process gets the new key first, the old one after it. Bo is new here:
    # his key is wrapped under the new master key at once; Ana's still opens.
    during = api_process("keys-during", KITH_MASTER_KEYS=f"{new},{old}").wait_ready()
    async with httpx.AsyncClient(base_url=during.base, timeout=30) as http:
        bo = await register(http)
        await push(
            http,
            bo,
            [
                {
                    "table": "contacts",
                    "id": sam,
                    "hlc": stamp(bo.device_id),
                    "fields": {"display_name": "Sam", "notes": NOTE},
                }
            ],
        )
    assert await _pulled_notes(during.base, ana) == expected

    # Step 2: kith rotate-keys, while that process serves.
    others = await pool.fetchval(
        "SELECT count(*) FROM space_keys WHERE master_kid <> ALL($1::text[])", [new_kid, old_kid]
    )
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "service.cli", "rotate-keys", "--batch", "2"),
        env={**server_env, "KITH_MASTER_KEYS": f"{new},{old}"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    said = (await asyncio.wait_for(proc.communicate(), 60))[0].decode()
    assert "re-wrapped" in said, said
    # Other tests' people (the database is shared) have keys under the test server's own
    # master key, which this command does not hold: it says so and fails, so the operator
    # does not drop a key still needed.
    assert proc.returncode == (1 if others else 0), said
    assert ("not configured here" in said) == bool(others), said
    assert (
        await pool.fetchval("SELECT master_kid FROM space_keys WHERE space_id = $1", ana_space)
        == new_kid
    )
    assert not await pool.fetchval("SELECT count(*) FROM space_keys WHERE master_kid = $1", old_kid)
    assert await _pulled_notes(during.base, ana) == expected  # no downtime
    during.stop()

    # Step 3: the old master key is gone from the configuration. Everything still reads.
    after = api_process("keys-new", KITH_MASTER_KEYS=new).wait_ready()
    assert await _pulled_notes(after.base, ana) == expected
    assert (await _pulled_notes(after.base, bo))["notes"] == {sam: NOTE}
    after.stop()


async def test_words_that_look_sealed_are_sealed_like_any_other(http: httpx.AsyncClient) -> None:
    ana = await register(http)
    cid = new_id("c")
    lookalike = f"{SEALED_PREFIX}AAAA my password hint"
    await push(
        http,
        ana,
        [
            {
                "table": "contacts",
                "id": cid,
                "hlc": stamp(ana.device_id),
                "fields": {"display_name": "Sam", "notes": lookalike},
            }
        ],
    )
    state, _ = await pull_all(http, ana)
    assert state[("contacts", cid)]["fields"]["notes"] == lookalike


# -- kith seal-existing: what a release before migration 0011 left in the clear ---------


async def _in_the_clear(
    pool: asyncpg.Pool[Any], space: str, table: str, rid: str, **text: str
) -> None:
    """Write private text into a stored record as a release before 0011 did: in the clear."""
    for name, value in text.items():
        await pool.execute(
            f"UPDATE {table} SET fields = fields || jsonb_build_object($3::text, $4::text) "
            "WHERE space_id = $1 AND id = $2",
            space,
            rid,
            name,
            value,
        )


async def _clear_conflict(pool: asyncpg.Pool[Any], space: str, rid: str, value: str) -> None:
    await pool.execute(
        """
        INSERT INTO conflicts (space_id, tbl, record_id, field, value, hlc, winner_hlc, reason)
        VALUES ($1, 'contacts', $2, 'notes', to_jsonb($3::text), $4, $5, 'older')
        """,
        space,
        rid,
        value,
        stamp("old-dev", offset_ms=-120_000),
        stamp("old-dev", offset_ms=-60_000),
    )


async def _everything(http: httpx.AsyncClient, who: Account) -> dict[str, Any]:
    """All the ways a person reads their records: pull (seqs included), the conflict
    history, WatermelonDB's pull, the export."""
    state, _ = await pull_all(http, who)
    r = await http.get("/v1/sync/conflicts", headers=who.headers)
    assert r.status_code == 200, r.text
    wm = (await wm_pull(http, who))["changes"]
    doc, _ = await export(http, who.headers)
    exported = {
        (t, x.id): (msgspec.json.decode(x.fields), x.hlc, x.updated_at)
        for t, rows in doc.records.items()
        for x in rows
    }
    return {
        "pull": state,
        "conflicts": r.json()["conflicts"],
        "wm": wm,
        "export": (exported, [msgspec.json.encode(c) for c in doc.conflicts]),
    }


async def _seal_existing(env: dict[str, str], batch: int = 2) -> str:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "service.cli", "seal-existing", "--batch", str(batch)),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    said = (await asyncio.wait_for(proc.communicate(), 120))[0].decode()
    assert proc.returncode == 0, said
    return said


async def test_seal_existing_seals_old_clear_text_as_a_push_would_and_reads_the_same(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any], server_env: dict[str, str]
) -> None:
    # Ana wrote after the upgrade (she has a key, her text sealed as pushed) ...
    ana = await register(http)
    tablet = await login(http, ana.email, new_id("dev"))
    ids, changes = a_life(ana)
    await push(http, ana, changes)
    older = {"notes": "tablet's older words about Rosa"}
    change = {"table": "contacts", "id": ids["contacts"], "fields": older}
    await push(http, tablet, [{**change, "hlc": stamp(tablet.device_id, offset_ms=-60_000)}])
    ana_space = await space_of(pool, ana)
    as_pushed = await rows_of(pool, ana_space)
    # ... and her records also hold what she wrote before it, in the clear.
    await _in_the_clear(pool, ana_space, "contacts", ids["contacts"], notes=NOTES)
    await _in_the_clear(pool, ana_space, "interactions", ids["interactions"], note=NOTE)
    await _in_the_clear(
        pool, ana_space, "reflections", ids["reflections"], body=BODY, gratitude=GRATITUDE
    )
    await _in_the_clear(pool, ana_space, "check_ins", ids["check_ins"], note=CHECK_IN)
    await pool.execute(
        "UPDATE conflicts SET value = to_jsonb($2::text) WHERE space_id = $1",
        ana_space,
        older["notes"],
    )
    # Bo wrote only before the upgrade: clear text, a clear conflict, no key.
    bo = await register(http)
    tom, check_in = new_id("c"), new_id("chk")
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    await push(
        http,
        bo,
        [
            {
                "table": "contacts",
                "id": tom,
                "hlc": stamp(bo.device_id),
                "fields": {"display_name": "Tom"},
            },
            {
                "table": "check_ins",
                "id": check_in,
                "hlc": stamp(bo.device_id),
                "fields": {"occurred_at": at, "status": "ok"},
            },
        ],
    )
    bo_space = await space_of(pool, bo)
    await _in_the_clear(pool, bo_space, "contacts", tom, notes=NOTES)
    await _in_the_clear(pool, bo_space, "check_ins", check_in, note=CHECK_IN)
    await _clear_conflict(pool, bo_space, tom, "Bo's older words about Tom")
    assert await pool.fetchval("SELECT count(*) FROM space_keys WHERE space_id = $1", bo_space) == 0
    # Cy wrote before it too, and has asked for his account to be erased (not yet done).
    cy = await register(http)
    sam = new_id("c")
    await push(
        http,
        cy,
        [
            {
                "table": "contacts",
                "id": sam,
                "hlc": stamp(cy.device_id),
                "fields": {"display_name": "Sam"},
            }
        ],
    )
    cy_space = await space_of(pool, cy)
    await _in_the_clear(pool, cy_space, "contacts", sam, notes=NOTES)
    before = {who.user_id: await _everything(http, who) for who in (ana, bo)}
    r = await http.request("DELETE", "/v1/account", headers=cy.headers, json={"password": PASSWORD})
    assert r.status_code == 202, r.text
    seqs = {
        s: await pool.fetchval("SELECT seq FROM spaces WHERE id = $1", s)
        for s in (ana_space, bo_space)
    }

    said = await _seal_existing(server_env)
    assert said.startswith("sealed "), said

    # Nothing of it in the clear any more, in records or in the history ...
    for space in (ana_space, bo_space):
        assert_no_plain_text(await rows_of(pool, space))
    # ... each value sealed exactly as a push of it stored it (the synthetic nonce) ...
    assert await rows_of(pool, ana_space) == as_pushed
    # ... read back the same every way, with no sequence number moved.
    for who in (ana, bo):
        assert await _everything(http, who) == before[who.user_id]
    after = {s: await pool.fetchval("SELECT seq FROM spaces WHERE id = $1", s) for s in seqs}
    assert after == seqs
    # So the merge sees the values a push would store: a retry of Ana's writes is no change.
    again = await push(http, ana, changes)
    assert again["superseded"] == []
    assert again["seq"] == seqs[ana_space]
    # Bo got his key the way a push makes one; Cy, being erased, got none, and was left alone.
    assert await pool.fetchval("SELECT count(*) FROM space_keys WHERE space_id = $1", bo_space) == 1
    assert await pool.fetchval("SELECT count(*) FROM space_keys WHERE space_id = $1", cy_space) == 0
    assert NOTES in (await rows_of(pool, cy_space))[f"contacts/{sam}"]

    # Run again: nothing left to seal.
    assert (await _seal_existing(server_env, batch=500)).startswith("sealed 0 values"), said


async def test_seal_existing_never_overwrites_a_write_made_after_it_read(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any], key_dir: Path
) -> None:
    ana = await register(http)
    rosa = new_id("c")
    first = {"display_name": "Rosa"}
    await push(
        http, ana, [{"table": "contacts", "id": rosa, "hlc": stamp(ana.device_id), "fields": first}]
    )
    space = await space_of(pool, ana)
    await _in_the_clear(pool, space, "contacts", rosa, notes=NOTES)
    # The backfill reads the clear note ...
    [read] = await clear_store.clear_records(
        pool, "contacts", space, ["notes"], SEALED_PATTERN, "", 10
    )
    cipher = await PrivateText(pool, MasterKeys([load_or_create_dev_key(key_dir)])).for_writing(
        space
    )
    sealed = cipher.seal_value("contacts", rosa, "notes", NOTES)
    # ... a phone writes new words meanwhile ...
    newer = {"notes": "new words", "display_name": "Rosa M."}
    await push(
        http, ana, [{"table": "contacts", "id": rosa, "hlc": stamp(ana.device_id), "fields": newer}]
    )
    # ... and the backfill's write, made from what it read, changes nothing.
    clear = msgspec.json.encode({"notes": NOTES}).decode()
    out = msgspec.json.encode({"notes": sealed}).decode()
    async with pool.acquire() as conn:
        assert (
            await clear_store.seal_records(conn, "contacts", space, [(read.id, clear, out)])
            == set()
        )
    state, _ = await pull_all(http, ana)
    fields = state[("contacts", rosa)]["fields"]
    assert {k: fields[k] for k in newer} == newer


async def test_pushes_racing_seal_existing_are_all_kept(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any], key_dir: Path
) -> None:
    ana = await register(http)
    rids = [new_id("c") for _ in range(20)]
    await push(
        http,
        ana,
        [
            {
                "table": "contacts",
                "id": r,
                "hlc": stamp(ana.device_id),
                "fields": {"display_name": r},
            }
            for r in rids
        ],
    )
    space = await space_of(pool, ana)
    for r in rids:
        await _in_the_clear(pool, space, "contacts", r, notes=f"old words about {r}")
    private = PrivateText(pool, MasterKeys([load_or_create_dev_key(key_dir)]))

    async def edits() -> None:
        for n, r in enumerate(rids[::2]):
            change = {
                "table": "contacts",
                "id": r,
                "hlc": stamp(ana.device_id, counter=n),
                "fields": {"notes": f"new words about {r}"},
            }
            await push(http, ana, [change])

    await asyncio.gather(private.seal_existing(batch=3), edits())
    await private.seal_existing(batch=3)  # whatever a lost race left in the clear
    state, _ = await pull_all(http, ana)
    for n, r in enumerate(rids):
        words = "new" if n % 2 == 0 else "old"
        assert state[("contacts", r)]["fields"]["notes"] == f"{words} words about {r}"
    stored = await rows_of(pool, space)
    assert all("words about" not in text for text in stored.values())

"""Deleting an account: every device signed out within a second, then nothing of the person
left in any table — checked against every table PostgreSQL lists — caregivers' summaries
gone from their phones and the caregivers told, and an erasure that survives a worker
dying half way."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from service.care.escalation import Escalation
from service.care.service import CareService
from service.jobs import Kind
from service.lifecycle.erasure import Erasure
from service.sync.service import SyncService
from sync.hlc import Clock
from tests.conftest import CITUS, OUTPUT
from tests.fakes.oidc import FakeIdentityProviders
from tests.helpers import PASSWORD, Account, expect_problem, login, new_id, push, register, stamp
from tests.integration.push_support import (
    Person,
    apns_token,
    drain,
    evaluate,
    fading_friend,
    set_push_token,
)
from tests.integration.signin_support import link as link_identity
from tests.integration.signin_support import new_subject
from tests.integration.test_care import accept, invite, older_adult_with_a_life, summary_rows
from tests.integration.test_events import open_stream

SIGNED_OUT_WITHIN_S = 1.0


def erasure(pool: asyncpg.Pool[Any]) -> Erasure:
    return Erasure(pool, SyncService(pool, Clock("wrk-erase"), max_skew_ms=300_000))


async def space_of(pool: asyncpg.Pool[Any], account: Account) -> str:
    return str(await pool.fetchval("SELECT id FROM spaces WHERE owner_id = $1", account.user_id))


async def identifiers(pool: asyncpg.Pool[Any], account: Account) -> list[str]:
    """Everything that names the person: user, space, email, every device, every session."""
    devices = await pool.fetch("SELECT id FROM devices WHERE user_id = $1", account.user_id)
    families = await pool.fetch("SELECT id FROM token_families WHERE user_id = $1", account.user_id)
    identities = await pool.fetch(
        "SELECT subject, email FROM identities WHERE user_id = $1", account.user_id
    )
    return [
        account.user_id,
        await space_of(pool, account),
        account.email,
        *(r["id"] for r in devices),
        *(r["id"] for r in families),
        *(value for r in identities for value in (r["subject"], r["email"]) if value),
    ]


async def tables_naming(pool: asyncpg.Pool[Any], names: list[str]) -> dict[str, int]:
    """Every base table of the database (from information_schema, so a table added later is
    covered without touching this test) → how many of its rows name any of ``names``, in
    any column (the row as text: ids, JSON documents, HLC stamps, payloads)."""
    tables = [
        r["table_name"]
        for r in await pool.fetch(
            """
            SELECT table_name FROM information_schema.tables
            WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name
            """
        )
    ]
    assert {"users", "devices", "jobs", "contacts", "care_links", "web_sessions"} <= set(tables)
    lowered = [n.lower() for n in names]
    found = {}
    for table in tables:
        count = await pool.fetchval(
            f"""
            SELECT count(*) FROM "{table}" AS t WHERE EXISTS (
                SELECT 1 FROM unnest($1::text[]) AS n WHERE strpos(lower(t::text), n) > 0)
            """,
            lowered,
        )
        if count:
            found[table] = int(count)
    return found


async def web_sign_in(base_url: str, account: Account) -> httpx.AsyncClient:
    """A browser signed in to the caregiver page (a web session row of the person's)."""
    browser = httpx.AsyncClient(base_url=base_url, timeout=30)
    r = await browser.get("/care/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', r.text)
    assert csrf is not None
    r = await browser.post(
        "/care/login", data={"email": account.email, "password": PASSWORD, "csrf": csrf[1]}
    )
    assert r.status_code == 303, r.text
    return browser


async def a_full_life(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool[Any],
    live_server: str,
    providers: FakeIdentityProviders,
) -> tuple[Account, Account, Account, Account]:
    """Mum with records on two devices, a conflict, insights and nudges, push addresses, a
    caregiver (with a push address and a queued alert about her), an open invitation, a
    web session, Apple and Google linked — and she is herself the caregiver of Gran, whose
    summary she has viewed."""
    mum = await older_adult_with_a_life(http)
    # Registering was a sign-in a moment ago: linking needs no password.
    relay = f"{new_id('mum')}@privaterelay.appleid.com"
    for provider, email in ((providers.apple, relay), (providers.google, mum.email)):
        r = await link_identity(http, mum, provider, new_subject(provider), email=email)
        assert r.status_code == 200, r.text
    tablet = await login(http, mum.email, new_id("tablet"))
    await set_push_token(http, mum, {"provider": "apns", "token": apns_token()})
    await set_push_token(http, tablet, {"provider": "apns", "token": apns_token()})
    space = await space_of(pool, mum)
    await fading_friend(http, Person(mum, space, ""))
    assert await evaluate(pool, space) > 0  # insights and nudge requests
    sam = new_id("c")
    await push(http, mum, [_contact(mum, sam, "later")])
    await push(http, tablet, [_contact(tablet, sam, "older", offset_ms=-60_000)])  # a conflict

    carer = await register(http, time_zone="Europe/London")
    await set_push_token(http, carer, {"provider": "apns", "token": apns_token()})
    await accept(http, carer, await invite(http, mum, ["check_ins", "alerts"]), "Mum")
    await invite(http, mum)  # still open
    # A need-help check-in: the escalation queues a push about Mum to the carer's phone.
    now = dt.datetime.now(dt.UTC).isoformat()
    await push(
        http,
        mum,
        [
            {
                "table": "check_ins",
                "id": new_id("k"),
                "hlc": stamp(mum.device_id),
                "fields": {"occurred_at": now, "status": "need_help"},
            }
        ],
    )
    sync = SyncService(pool, Clock("wrk-care"), max_skew_ms=300_000)
    await drain(pool, Escalation(pool, CareService(pool, sync)).handlers(), [space])
    carer_space = await space_of(pool, carer)
    assert await pool.fetchval(
        "SELECT count(*) FROM jobs WHERE space_id = $1 AND kind = 'care_push'", carer_space
    )

    gran = await register(http)
    link = await accept(http, mum, await invite(http, gran, ["check_ins"]), "Gran")
    r = await http.get(f"/v1/care/people/{link['link_id']}/summary", headers=mum.headers)
    assert r.status_code == 200
    browser = await web_sign_in(live_server, mum)
    await browser.aclose()
    r = await http.post("/v1/auth/password-reset", json={"email": mum.email})  # a live code
    assert r.status_code == 202
    return mum, tablet, carer, gran


def _contact(who: Account, record_id: str, notes: str, offset_ms: int = 0) -> dict[str, Any]:
    return {
        "table": "contacts",
        "id": record_id,
        "hlc": stamp(who.device_id, offset_ms=offset_ms),
        "fields": {"display_name": "Sam", "notes": notes},
    }


@pytest.fixture
async def pool(database_url: str) -> Any:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
    yield pool
    await pool.close()


async def test_deleting_an_account_leaves_nothing_of_the_person_in_any_table(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool[Any],
    live_server: str,
    identity_providers: FakeIdentityProviders,
) -> None:
    mum, tablet, carer, gran = await a_full_life(http, pool, live_server, identity_providers)
    names = await identifiers(pool, mum)
    before = await tables_naming(pool, names)
    # The scan sees the person everywhere they are (so its silence afterwards means
    # something): every kind of row this test set up.
    assert {
        "users", "spaces", "devices", "token_families", "refresh_tokens", "web_sessions",
        "contacts", "interactions", "reflections", "check_ins", "settings", "insights",
        "care_summaries", "conflicts", "sync_batches", "nudge_requests", "jobs",
        "care_links", "care_invitations", "care_audit", "care_alerts", "account_codes",
        "identities",
    } <= set(before), before  # fmt: skip
    [summary] = [x for x in await summary_rows(http, carer) if not x["deleted"]]
    carer_space = await space_of(pool, carer)

    async with open_stream(live_server, mum) as phone, open_stream(live_server, tablet) as other:
        started = time.monotonic()
        r = await http.request(
            "DELETE", "/v1/account", headers=mum.headers, json={"password": PASSWORD}
        )
        assert r.status_code == 202, r.text
        assert r.json() == {"state": "erasing"}
        for stream in (phone, other):
            end = await stream.until("end", within_s=SIGNED_OUT_WITHIN_S)
            assert end.json() == {"reason": "session_revoked"}
        assert time.monotonic() - started < SIGNED_OUT_WITHIN_S

    # Signed out everywhere, and no way back in, even before the erasure has run.
    for device in (mum, tablet):
        expect_problem(await http.get("/v1/devices", headers=device.headers), 401)
        r = await http.post("/v1/auth/refresh", json={"refresh_token": device.refresh_token})
        expect_problem(r, 401, "invalid_refresh_token")
    r = await http.post(
        "/v1/auth/login",
        json={
            "email": mum.email,
            "password": PASSWORD,
            "device": {"id": mum.device_id, "platform": "ios", "name": "x"},
        },
    )
    expect_problem(r, 401, "invalid_credentials")

    await drain(pool, {Kind.ACCOUNT_ERASE: erasure(pool).run}, [names[1]])
    assert await tables_naming(pool, names) == {}

    # The caregiver's phone drops the summary on its next pull, and the caregiver is told.
    [gone] = [x for x in await summary_rows(http, carer) if x["id"] == summary["id"]]
    assert gone["deleted"]
    assert not gone.get("fields")
    r = await http.get("/v1/care/people", headers=carer.headers)
    assert r.json()["people"] == []
    told = await pool.fetch(
        "SELECT payload FROM jobs WHERE space_id = $1 AND kind = 'care_push'", carer_space
    )
    assert [t["payload"] for t in told if "stopped sharing" in t["payload"]], told
    assert all("Mum stopped sharing" in t["payload"] for t in told)  # the alert push: dropped
    # Gran no longer has Mum as a caregiver; her record of Mum's views stays, nameless.
    r = await http.get("/v1/care/caregivers", headers=gran.headers)
    assert r.json()["caregivers"] == []
    # The email can start a new account.
    again = await register(http, email=mum.email)
    assert again.user_id != mum.user_id


async def test_deleting_needs_the_password_or_a_fresh_sign_in(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    mum = await register(http)
    # An old session (as if signed in ten minutes ago): the password is required.
    await pool.execute(
        "UPDATE token_families SET created_at = now() - interval '10 minutes' WHERE user_id = $1",
        mum.user_id,
    )
    r = await http.request("DELETE", "/v1/account", headers=mum.headers)
    body = expect_problem(r, 403, "reauthentication_required")
    assert body["errors"][0]["field"] == "password"
    r = await http.request("DELETE", "/v1/account", headers=mum.headers, json={"password": "nope"})
    body = expect_problem(r, 403, "wrong_password")
    assert body["errors"][0]["field"] == "password"
    r = await http.request("DELETE", "/v1/account", headers=mum.headers, json={"password": 5})
    assert expect_problem(r, 422, "invalid_field")["errors"][0]["field"] == "password"
    r = await http.request("DELETE", "/v1/account", headers=mum.headers, json={"pasword": "x"})
    assert expect_problem(r, 422, "invalid_field")["errors"][0]["field"] == "pasword"
    r = await http.request(
        "DELETE",
        "/v1/account",
        headers={**mum.headers, "content-type": "application/json"},
        content=b"{not json",
    )
    expect_problem(r, 400, "malformed_json")
    expect_problem(await http.request("DELETE", "/v1/account"), 401, "unauthenticated")
    # None of that deleted anything.
    assert (await http.get("/v1/devices", headers=mum.headers)).status_code == 200
    assert await pool.fetchval("SELECT erasing_at IS NULL FROM users WHERE id = $1", mum.user_id)

    # A session started by a sign-in within five minutes needs no password.
    fresh = await login(http, mum.email, new_id("dev"))
    r = await http.request("DELETE", "/v1/account", headers=fresh.headers)
    assert r.status_code == 202, r.text
    expect_problem(await http.get("/v1/devices", headers=mum.headers), 401, "session_revoked")


async def test_a_person_can_delete_their_account_from_the_web_page(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any], live_server: str
) -> None:
    mum = await register(http)
    names = await identifiers(pool, mum)
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as browser:
        page = await browser.get("/account/delete")
        assert page.status_code == 200
        assert "Delete your Kith account" in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        form = {"email": mum.email, "password": PASSWORD, "confirm": "yes"}

        # A forged post (no token from the page) and a wrong password delete nothing.
        r = await browser.post("/account/delete", data={**form, "csrf": "forged"})
        assert r.status_code == 403
        csrf = re.search(r'name="csrf" value="([^"]+)"', r.text)  # each form, a new token
        assert csrf is not None
        r = await browser.post(
            "/account/delete", data={**form, "password": "wrong password", "csrf": csrf[1]}
        )
        assert r.status_code == 401
        assert "don&#39;t match" in r.text or "don't match" in r.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', r.text)
        assert csrf is not None
        r = await browser.post("/account/delete", data={**form, "confirm": "", "csrf": csrf[1]})
        assert r.status_code == 422
        assert (await http.get("/v1/devices", headers=mum.headers)).status_code == 200

        csrf = re.search(r'name="csrf" value="([^"]+)"', r.text)
        assert csrf is not None
        r = await browser.post("/account/delete", data={**form, "csrf": csrf[1]})
        assert r.status_code == 200, r.text
        assert "Your account is being deleted" in r.text
        assert r.headers["cache-control"] == "no-store"
    expect_problem(await http.get("/v1/devices", headers=mum.headers), 401, "session_revoked")
    await drain(pool, {Kind.ACCOUNT_ERASE: erasure(pool).run}, [names[1]])
    assert await tables_naming(pool, names) == {}


async def test_a_cross_site_post_cannot_delete_an_account(
    live_server: str, http: httpx.AsyncClient
) -> None:
    """A page elsewhere can make the browser post the form, but cannot read the token the
    form carries, and the cookie is SameSite=Strict."""
    mum = await register(http)
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as browser:
        page = await browser.get("/account/delete")
        cookie = page.headers["set-cookie"].lower()
        for attribute in ("samesite=strict", "httponly", "path=/account"):
            assert attribute in cookie
        r = await browser.post(
            "/account/delete",
            data={"email": mum.email, "password": PASSWORD, "confirm": "yes"},
        )
        assert r.status_code == 403
    assert (await http.get("/v1/devices", headers=mum.headers)).status_code == 200
    await asyncio.sleep(0)


async def test_deleting_from_the_web_page_in_a_real_browser(
    http: httpx.AsyncClient, live_server: str
) -> None:
    """The store's web link, as a person uses it: a phone-sized Chromium, the labelled
    form and its tick box."""
    from playwright.async_api import async_playwright

    from tests.integration.test_care_page import _chromium

    mum = await register(http)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 390, "height": 844})
            await page.goto(f"{live_server}/account/delete")
            await page.get_by_label("Email").fill(mum.email)
            await page.get_by_label("Password").fill(PASSWORD)
            await page.get_by_role("button", name="Delete my account").click()
            # Without the tick nothing is deleted (the browser holds the form back).
            assert (await http.get("/v1/devices", headers=mum.headers)).status_code == 200
            await page.get_by_label("I understand").check()
            await page.get_by_role("button", name="Delete my account").click()
            heading = page.get_by_role("heading", level=1)
            await heading.filter(has_text="being deleted").wait_for()
        finally:
            await browser.close()
    expect_problem(await http.get("/v1/devices", headers=mum.headers), 401, "session_revoked")


def _worker(env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    """``kith worker`` in its own process, taking only erasures, with a short lease."""
    OUTPUT.mkdir(exist_ok=True)
    log = (OUTPUT / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", "worker"],
        env={**env, "KITH_WORKER_KINDS": "account_erase", "KITH_WORKER_LEASE_S": "3"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def _until(check: Callable[[], Awaitable[bool]], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, f"not within {within_s} s: {what}"
        await asyncio.sleep(0.1)


async def test_a_worker_killed_half_way_through_an_erasure_is_taken_over(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any], server_env: dict[str, str]
) -> None:
    """A real ``kith worker`` is SIGKILLed while the erasure's last step waits (the test
    holds the space's lock, as a long push would): the caregivers have been told, nothing
    else is gone. Another worker takes the job when the lease expires and finishes it."""
    mum = await older_adult_with_a_life(http)
    carers = [await register(http) for _ in range(2)]
    for carer in carers:
        await set_push_token(http, carer, {"provider": "apns", "token": apns_token()})
        await accept(http, carer, await invite(http, mum, ["check_ins"]))
    names = await identifiers(pool, mum)
    space = names[1]
    r = await http.request(
        "DELETE", "/v1/account", headers=mum.headers, json={"password": PASSWORD}
    )
    assert r.status_code == 202

    async def links_ended() -> bool:
        return not await pool.fetchval(
            "SELECT count(*) FROM care_links WHERE space_id = $1 AND state <> 'revoked'", space
        )

    async def step_three_waits() -> bool:
        if CITUS:
            # The space's row lock is taken on the worker node that holds the space, so the
            # coordinator's backend waits on that node, not on a lock of its own: Citus's
            # cluster-wide view of lock waits shows it.
            return bool(
                await pool.fetchval(
                    """
                    SELECT count(*) FROM citus_lock_waits
                    WHERE blocked_statement LIKE '%FROM spaces WHERE id = $1 FOR UPDATE%'
                    """
                )
            )
        return bool(
            await pool.fetchval(
                """
                SELECT count(*) FROM pg_stat_activity
                WHERE application_name = 'kith' AND wait_event_type = 'Lock'
                  AND query LIKE '%FROM spaces WHERE id = $1 FOR UPDATE%'
                """
            )
        )

    async with pool.acquire() as holder:
        lock = holder.transaction()
        await lock.start()
        await holder.execute("SELECT 1 FROM spaces WHERE id = $1 FOR UPDATE", space)
        first = _worker(server_env, "worker-erase-killed")
        try:
            await _until(links_ended, 30, "the first worker ends the links")
            await _until(step_three_waits, 30, "the first worker waits in the last step")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        await lock.rollback()

    # Killed half way: the sharing has ended, everything else is still there.
    assert await pool.fetchval("SELECT count(*) FROM contacts WHERE space_id = $1", space) > 0
    assert await pool.fetchval("SELECT count(*) FROM users WHERE id = $1", mum.user_id) == 1

    second = _worker(server_env, "worker-erase-takeover")
    try:

        async def erased() -> bool:
            return not await pool.fetchval("SELECT count(*) FROM users WHERE id = $1", mum.user_id)

        await _until(erased, 30, "the second worker finishes the erasure")
    finally:
        second.terminate()
        second.wait(15)
    assert await tables_naming(pool, names) == {}
    for carer in carers:
        told = await pool.fetchval(
            """
            SELECT count(*) FROM jobs
            WHERE space_id = $1 AND kind = 'care_push' AND payload->>'title' LIKE '%stopped sharing'
            """,
            await space_of(pool, carer),
        )
        assert told == 1  # once, though two workers ran the first step

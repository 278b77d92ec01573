"""The caregiver web page: sign-in with a cookie session and CSRF, exactly the granted
sections, nothing private anywhere, nothing at all once sharing stops — and a real
browser (Debian's Chromium, driven by Playwright) reading it."""

from __future__ import annotations

import itertools
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.helpers import PASSWORD, Account
from tests.integration.test_care import ALL_SCOPES, SECRETS, linked
from tests.integration.test_care_alerts import circle

OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
SECTIONS = {
    "check_ins": 'id="check-ins"',
    "contact_trend": 'id="contact-trend"',
    "alerts": 'id="alerts"',
}


async def sign_in(base_url: str, who: Account) -> httpx.AsyncClient:
    """A browser-like client (it keeps cookies) signed in to the caregiver page."""
    web = httpx.AsyncClient(base_url=base_url, timeout=30)
    form = await web.get("/care/login")
    assert form.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    r = await web.post(
        "/care/login", data={"email": who.email, "password": PASSWORD, "csrf": csrf.group(1)}
    )
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "path=/care" in cookie
    return web


async def test_the_page_shows_exactly_the_granted_sections_and_nothing_private(
    http: httpx.AsyncClient, live_server: str
) -> None:
    mum, carer, link_id = await linked(http, [])
    web = await sign_in(live_server, carer)
    try:
        listing = await web.get("/care")
        assert f'href="/care/{link_id}"' in listing.text
        assert ">Mum<" in listing.text
        for n in range(len(ALL_SCOPES) + 1):
            for combo in itertools.combinations(ALL_SCOPES, n):
                r = await http.put(
                    f"/v1/care/caregivers/{link_id}/scopes",
                    headers=mum.headers,
                    json={"scopes": list(combo)},
                )
                assert r.status_code == 200
                page = await web.get(f"/care/{link_id}")
                assert page.status_code == 200
                assert page.headers["cache-control"] == "no-store"
                for scope, marker in SECTIONS.items():
                    assert (marker in page.text) == (scope in combo), (combo, scope)
                assert ("nothing-shared" in page.text) == (not combo)
                for secret in SECRETS:
                    assert secret not in page.text
        assert "<svg" in page.text  # the chart, with its table alternative
        assert "<caption>Each week</caption>" in page.text
        # Every page view was audited, as a web view.
        audit = await http.get("/v1/care/audit", headers=mum.headers)
        channels = {v["channel"] for v in audit.json()["views"]}
        assert channels == {"web"}
    finally:
        await web.aclose()


async def test_a_revoked_caregiver_sees_nothing(http: httpx.AsyncClient, live_server: str) -> None:
    mum, carer, link_id = await linked(http, list(ALL_SCOPES))
    web = await sign_in(live_server, carer)
    try:
        assert (await web.get(f"/care/{link_id}")).status_code == 200
        await http.delete(f"/v1/care/caregivers/{link_id}", headers=mum.headers)
        page = await web.get(f"/care/{link_id}")
        assert page.status_code == 404
        assert 'id="gone"' in page.text
        assert "Mum" not in page.text
        listing = await web.get("/care")
        assert 'id="nobody"' in listing.text
    finally:
        await web.aclose()


async def test_forms_refuse_requests_without_their_csrf_token(
    http: httpx.AsyncClient, live_server: str
) -> None:
    _, carer, link_id = await linked(http, ["check_ins"])
    async with httpx.AsyncClient(base_url=live_server) as web:
        r = await web.post("/care/login", data={"email": carer.email, "password": PASSWORD})
        assert r.status_code == 403
        assert "set-cookie" not in r.headers or "kith_care=" not in r.headers["set-cookie"]
    web = await sign_in(live_server, carer)
    try:
        r = await web.post("/care/logout", data={"csrf": "forged"})
        assert r.status_code == 303
        # The forged sign-out did not end the session on the server (the browser dropped
        # its cookie; a replay of the cookie still works).
        token = r.request.headers["cookie"].split("kith_care=")[1].split(";")[0]
        async with httpx.AsyncClient(base_url=live_server, cookies={"kith_care": token}) as again:
            assert (await again.get(f"/care/{link_id}")).status_code == 200
        # Not signed in: to the sign-in form.
        async with httpx.AsyncClient(base_url=live_server) as anonymous:
            r = await anonymous.get(f"/care/{link_id}")
            assert (r.status_code, r.headers["location"]) == (303, "/care/login")
    finally:
        await web.aclose()


def _chromium() -> str:
    found = (
        os.environ.get("KITH_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    if not found:
        pytest.fail(
            "the browser test needs Chromium: `apt-get install chromium` (what `make test` "
            "does as root) or set KITH_CHROMIUM to a Chromium/Chrome binary"
        )
    return found


async def test_a_caregiver_reads_the_page_in_a_real_browser(
    http: httpx.AsyncClient, live_server: str
) -> None:
    from playwright.async_api import async_playwright

    _, carer, link_id = await linked(http, ["check_ins", "contact_trend"])
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 390, "height": 844})  # a phone
            await page.goto(f"{live_server}/care/{link_id}")
            assert page.url.endswith("/care/login")  # not signed in yet
            await page.get_by_label("Email").fill(carer.email)
            await page.get_by_label("Password").fill(PASSWORD)
            await page.get_by_role("button", name="Sign in").click()
            await page.get_by_role("link", name="Mum").click()
            await page.wait_for_url(f"**/care/{link_id}")
            assert await page.get_by_role("heading", level=1).inner_text() == "Mum"
            assert await page.locator("#check-ins").is_visible()
            days = await page.locator("#days-since").inner_text()
            assert re.fullmatch(r"Last met someone in person \d+ days? ago", days)
            assert (
                await page.get_by_role("img", name=re.compile("In-person and remote")).count() == 1
            )
            assert await page.locator("#alerts").count() == 0  # not granted
            text = await page.locator("body").inner_text()
            for secret in SECRETS:
                assert secret not in text
            OUTPUT.mkdir(exist_ok=True)
            await page.screenshot(path=str(OUTPUT / "care-page.png"), full_page=True)
            # Sign out: back to the form, and the page is gone for this browser.
            await page.get_by_role("button", name="Sign out").click()
            await page.wait_for_url("**/care/login")
            await page.goto(f"{live_server}/care/{link_id}")
            assert page.url.endswith("/care/login")
        finally:
            await browser.close()


# -- answering an alert from the page (issue 17) ----------------------------------------------


async def _raised(pool: asyncpg.Pool[Any], space_id: str) -> str:
    """A need-help alert as the worker raises it (the ladder is not under test here)."""
    alert_id = f"help:k-{secrets.token_hex(6)}"
    await pool.execute(
        "INSERT INTO care_alerts (space_id, id, kind, priority, local_date, raised_at) "
        "VALUES ($1, $2, 'need_help', 'high', current_date, now())",
        space_id,
        alert_id,
    )
    return alert_id


def _form_token(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def test_a_caregiver_answers_an_alert_with_one_button_guarded_by_csrf(
    http: httpx.AsyncClient, live_server: str, pool: asyncpg.Pool[Any]
) -> None:
    c = await circle(http, pool)
    alert_id = await _raised(pool, c.space_id)
    carol = await sign_in(live_server, c.carol.account)
    dan = await sign_in(live_server, c.dan.account)
    try:
        page = await carol.get(f"/care/{c.carol.link_id}")
        assert f'action="/care/{c.carol.link_id}/acknowledge"' in page.text
        assert f'name="alert_id" value="{alert_id}"' in page.text
        assert '<button type="submit" class="big">I\'m on it</button>' in page.text
        # A forged form does nothing.
        r = await carol.post(
            f"/care/{c.carol.link_id}/acknowledge", data={"csrf": "forged", "alert_id": alert_id}
        )
        assert r.status_code == 403
        assert not await pool.fetchval(
            "SELECT count(*) FROM care_acknowledgements WHERE space_id = $1", c.space_id
        )
        # The real one: acknowledged, back on the page, which says so.
        r = await carol.post(
            f"/care/{c.carol.link_id}/acknowledge",
            data={"csrf": _form_token(page.text), "alert_id": alert_id},
        )
        assert (r.status_code, r.headers["location"]) == (303, f"/care/{c.carol.link_id}#alerts")
        page = await carol.get(f"/care/{c.carol.link_id}")
        assert "You are on it since" in page.text
        assert "I'm on it</button>" not in page.text  # answered: the button is gone
        # Dan's page: Carol is on it.
        other = await dan.get(f"/care/{c.dan.link_id}")
        assert "Carol is on it since" in other.text
        # Dan resolves it from his page; both pages show how it ended.
        r = await dan.post(
            f"/care/{c.dan.link_id}/resolve",
            data={"csrf": _form_token(other.text), "alert_id": alert_id},
        )
        assert r.status_code == 303
        page = await carol.get(f"/care/{c.carol.link_id}")
        assert "No open alerts." in page.text
        assert "Dan marked it resolved" in page.text
        audit = (await http.get("/v1/care/audit", headers=c.mum.headers)).json()["views"]
        acted = sorted((v["caregiver_name"], v["action"], v["channel"]) for v in audit)
        assert ("Carol", "acknowledged", "web") in acted
        assert ("Dan", "resolved", "web") in acted
    finally:
        await carol.aclose()
        await dan.aclose()


async def test_the_alert_button_is_reached_and_pressed_with_the_keyboard(
    http: httpx.AsyncClient, live_server: str, pool: asyncpg.Pool[Any]
) -> None:
    from playwright.async_api import async_playwright

    c = await circle(http, pool)
    await _raised(pool, c.space_id)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 390, "height": 844})
            await page.goto(f"{live_server}/care/login")
            await page.get_by_label("Email").fill(c.carol.account.email)
            await page.get_by_label("Password").fill(PASSWORD)
            await page.get_by_role("button", name="Sign in").click()
            await page.goto(f"{live_server}/care/{c.carol.link_id}")
            button = page.get_by_role("button", name="I'm on it")
            box = await button.bounding_box()
            assert box is not None
            assert box["height"] >= 48  # one large target, thumb-sized
            for _ in range(20):  # Tab from the top of the page until it has focus
                await page.keyboard.press("Tab")
                if await button.evaluate("b => b === document.activeElement"):
                    break
            else:
                raise AssertionError("the I'm on it button is not reachable with Tab")
            await page.keyboard.press("Enter")
            await page.wait_for_url(f"**/care/{c.carol.link_id}#alerts")
            await page.get_by_text("You are on it since").wait_for()
            OUTPUT.mkdir(exist_ok=True)
            await page.screenshot(path=str(OUTPUT / "care-page-on-it.png"), full_page=True)
        finally:
            await browser.close()
    r = await http.get("/v1/care/alerts", headers=c.mum.headers)
    [mine] = r.json()["alerts"]
    assert mine["acknowledged_by"] == "Carol"
